/**
 * The startup decision for a live restore the previous daemon left unfinished (`recoveryAction`,
 * live-restore-recovery.ts): every journal phase × whether the journal has the config to write ×
 * what runs (the VM on its volumes, still on the export, gone, or a foreign QEMU). The switch
 * counts as proven when the VM runs on its volumes, or when the journal reached `config` (the
 * switch was checked and the export closed before the kill). FINISH only then and with the config
 * in the journal; UNDO everywhere else, in particular for a VM that died before the proof.
 */
import { recoveryAction, type VmFound } from '../../../daemon/restore/live-restore-recovery';
import type { LivePhase } from '../../../daemon/restore/live-restore-errors';

type Row = [LivePhase, boolean, VmFound, 'finish' | 'undo'];

const VMS: VmFound[] = ['on-volumes', 'on-export', 'gone', 'foreign'];
const undoAll = (phase: LivePhase, hasFinish: boolean): Row[] => VMS.map((vm): Row => [phase, hasFinish, vm, 'undo']);

const table: Row[] = [
  // Without the config in the journal nothing can be finished, whatever runs.
  ...(['allocate', 'serve', 'start', 'mirror', 'switch', 'config'] as const).flatMap((p) => undoAll(p, false)),
  // Before the switch: undone even with a config (a journal is not expected to have one then).
  ...(['allocate', 'serve', 'start', 'mirror'] as const).flatMap((p) => undoAll(p, true)),
  // `switch`: proven only by the VM being on its volumes.
  ['switch', true, 'on-volumes', 'finish'],
  ['switch', true, 'on-export', 'undo'],
  ['switch', true, 'gone', 'undo'],
  ['switch', true, 'foreign', 'undo'],
  // `config`: the switch was proven before the kill; a gone VM is finished too (its volumes hold
  // the backup plus the guest's writes), a VM still on the export or a foreign QEMU is not.
  ['config', true, 'on-volumes', 'finish'],
  ['config', true, 'on-export', 'undo'],
  ['config', true, 'gone', 'finish'],
  ['config', true, 'foreign', 'undo'],
];

describe('recoveryAction', () => {
  it('the table covers every phase × config × VM state once', () => {
    expect(new Set(table.map(([p, f, vm]) => `${p}/${f}/${vm}`)).size).toBe(6 * 2 * 4);
    expect(table.length).toBe(6 * 2 * 4);
  });

  test.each(table)('phase %s, config in journal %s, VM %s -> %s', (phase, hasFinish, vm, want) => {
    expect(recoveryAction(phase, hasFinish, vm)).toBe(want);
  });
});
