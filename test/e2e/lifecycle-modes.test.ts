/**
 * Issue 6 acceptance: every row of the lifecycle table in shared/docs/pve-qemu-facts.md, driven by the
 * simulator on two VMs (qcow2 and raw disk) with pve-cbt's real hooks attached, the real daemon, real
 * SQLite and real QEMU. After each step the daemon's `status` shows the ledger state the rules promise;
 * the next backup has the promised mode per format, and every backup restores byte-exact to the disk
 * as it was when the backup was asked for.
 *
 * Rows run in order on the same VMs; each ends with a backup, so the next row starts from valid
 * bitmaps on both disks.
 */
import type { BackupMode } from '../../daemon/backup/mode-decision';
import type { BitmapState } from '../../daemon/ledger/ledger-rules';
import { hmp } from '../../daemon/qmp/hmp';
import type { SimVm } from '../../daemon/sim/pve-node';
import { addVm, createStack, diskOf, MiB, type Stack } from './e2e-harness';

type Format = 'qcow2' | 'raw';

interface Step {
  what: string;
  run: (vm: SimVm) => Promise<void>;
  /** Ledger state per format once the step is done (status request). */
  ledger: Record<Format, BitmapState>;
}

interface Row {
  name: string;
  steps: Step[];
  modes: Record<Format, BackupMode>;
  /** Reason codes of the next backup (the decision's `code: sentence`). */
  reasons?: Partial<Record<Format, RegExp>>;
  /** vzdump guest phases pve-cbt's registered vzdump hook must have delivered to the daemon, per VM. */
  vzdump?: string[];
}

const BOTH_VALID: Record<Format, BitmapState> = { qcow2: 'valid', raw: 'valid' };
const RAW_INVALID: Record<Format, BitmapState> = { qcow2: 'valid', raw: 'invalid' };

/** A guest `sync`: without it a kill -9 loses qcow2 allocations still in QEMU's metadata cache, as on a real host. */
const flush = (vm: SimVm): Promise<string> => vm.qmp((q) => hmp(q, 'qemu-io -d scsi0 "flush"'));

const ROWS: Row[] = [
  {
    name: 'qm stop, then qm start',
    steps: [
      { what: 'qm stop', run: (vm) => vm.stop(), ledger: RAW_INVALID },
      { what: 'qm start', run: (vm) => vm.start(), ledger: RAW_INVALID },
    ],
    modes: { qcow2: 'incremental', raw: 'full-compare' },
    reasons: { qcow2: /^bitmap-valid/, raw: /^ledger-invalid/ },
  },
  {
    name: 'qm shutdown, then qm start',
    steps: [
      { what: 'qm shutdown', run: (vm) => vm.shutdown(), ledger: RAW_INVALID },
      { what: 'qm start', run: (vm) => vm.start(), ledger: RAW_INVALID },
    ],
    modes: { qcow2: 'incremental', raw: 'full-compare' },
  },
  {
    name: 'qm reboot (a new QEMU process)',
    steps: [{ what: 'qm reboot', run: (vm) => vm.reboot(), ledger: RAW_INVALID }],
    modes: { qcow2: 'incremental', raw: 'full-compare' },
  },
  {
    name: 'qm reset (same QEMU, no hooks)',
    steps: [{ what: 'qm reset', run: (vm) => vm.reset(), ledger: BOTH_VALID }],
    modes: { qcow2: 'incremental', raw: 'incremental' },
  },
  {
    name: 'reboot inside the guest (same QEMU, no hooks)',
    steps: [{ what: 'guest reboot', run: (vm) => vm.guestReboot(), ledger: BOTH_VALID }],
    modes: { qcow2: 'incremental', raw: 'incremental' },
  },
  {
    // The clean stop parks the qcow2 bitmap and the start puts it back, so the QEMU that is killed
    // has loaded it (marked in use); the crash's post-stop parks again, removes the inconsistent
    // bitmap instead of keeping it and invalidates the disk. Full-compare either way.
    name: 'QEMU crash (kill -9, post-stop only), then qm start',
    steps: [
      { what: 'qm stop', run: (vm) => vm.stop(), ledger: RAW_INVALID },
      { what: 'qm start', run: (vm) => vm.start(), ledger: RAW_INVALID },
      {
        what: 'kill -9',
        run: async (vm) => {
          await flush(vm);
          await vm.crash();
        },
        // post-stop parks the bitmaps (daemon/parking): the inconsistent one is removed, not kept.
        ledger: { qcow2: 'invalid', raw: 'invalid' },
      },
      { what: 'qm start', run: (vm) => vm.start(), ledger: { qcow2: 'invalid', raw: 'invalid' } },
    ],
    modes: { qcow2: 'full-compare', raw: 'full-compare' },
    reasons: { qcow2: /^ledger-invalid: .*inconsistent/, raw: /^ledger-invalid/ },
  },
  {
    name: 'live migration target (pre-start with PVE_MIGRATED_FROM)',
    steps: [
      { what: 'QEMU leaves (qm stop)', run: (vm) => vm.stop(), ledger: RAW_INVALID },
      { what: 'pre-start with PVE_MIGRATED_FROM', run: (vm) => vm.start({ migratedFrom: 'pve-other' }), ledger: { qcow2: 'unknown', raw: 'invalid' } },
    ],
    modes: { qcow2: 'full-compare', raw: 'full-compare' },
    reasons: { qcow2: /^ledger-no-record/ },
  },
  {
    name: 'vzdump stop mode (QEMU restarted by vzdump)',
    steps: [{ what: 'vzdump --mode stop', run: (vm) => vm.vzdump('stop'), ledger: RAW_INVALID }],
    modes: { qcow2: 'incremental', raw: 'full-compare' },
    vzdump: ['backup-start', 'pre-stop', 'backup-end', 'pre-restart', 'post-restart', 'log-end'],
  },
];

describe('lifecycle table: ledger state and next backup mode, qcow2 and raw', () => {
  let stack: Stack;
  let vms: Record<Format, SimVm>;
  let writeNo = 0;

  const guestWrites = async (): Promise<void> => {
    writeNo++;
    await Promise.all(Object.values(vms).map((vm) => vm.write('scsi0', { pattern: 0x20 + writeNo, offset: (writeNo % 7) * MiB + 4 * 65536, length: 65536 })));
  };

  const ledgerStates = async (): Promise<Record<Format, string>> => {
    const out = {} as Record<Format, string>;
    for (const f of ['qcow2', 'raw'] as Format[]) {
      const st = await stack.status(vms[f].vmid);
      expect(st.disks).toHaveLength(1);
      expect(st.disks[0].format).toBe(f);
      // The ledger's own record (status's `state` also asks QEMU, see status-qemu-check.test.ts).
      out[f] = st.disks[0].ledgerState;
      if (st.disks[0].state === 'invalid' || st.disks[0].state === 'suspect') expect(st.disks[0].reason).toEqual(expect.any(String));
    }
    return out;
  };

  const backupModes = async (): Promise<Record<Format, { mode: string; reason: string; bytesRead: number }>> => {
    const results = await stack.backupAndCheck(Object.values(vms));
    const out = {} as Record<Format, { mode: string; reason: string; bytesRead: number }>;
    for (const f of ['qcow2', 'raw'] as Format[]) out[f] = diskOf(results.get(vms[f].vmid));
    return out;
  };

  beforeAll(async () => {
    stack = await createStack();
    await stack.startDaemon();
    vms = { qcow2: await addVm(stack, 301, 'qcow2'), raw: await addVm(stack, 302, 'raw') };
    await Promise.all(Object.values(vms).map((vm) => vm.start()));
  }, 60_000);
  afterAll(async () => {
    await stack?.cleanup();
  });

  test('qm start, first backup: full on both, then incrementals', async () => {
    // A VM never backed up has no record yet.
    expect(await ledgerStates()).toEqual({ qcow2: 'unknown', raw: 'unknown' });
    const first = await backupModes();
    expect([first.qcow2.mode, first.raw.mode]).toEqual(['full', 'full']);
    expect(await ledgerStates()).toEqual(BOTH_VALID);
    await guestWrites();
    const second = await backupModes();
    expect([second.qcow2.mode, second.raw.mode]).toEqual(['incremental', 'incremental']);
    // Only the written block (and its chunk) is read.
    for (const f of ['qcow2', 'raw'] as Format[]) expect(second[f].bytesRead).toBeLessThanOrEqual(2 * 131072);
  });

  /** The vzdump hook installed by installHooks ran from vzdump.conf, exited 0, and the daemon recorded its events. */
  const expectVzdumpEvents = (vm: SimVm, sinceEventId: number, phases: string[]): void => {
    const recorded = stack.services.ledger.events(vm.vmid, 200).filter((e) => e.id > sinceEventId && e.source === 'vzdump').map((e) => `${e.phase} ${e.mode}`);
    const mode = recorded[0]?.split(' ')[1];
    expect(recorded).toEqual(phases.map((p) => `${p} ${mode}`));
  };

  test.each(ROWS.map((r) => [r.name, r] as const))('%s', async (_name, row) => {
    const sinceEventId = stack.services.ledger.lastEventId();
    const hookRuns = stack.node.hookLog.length;
    for (const step of row.steps) {
      // Both VMs at once, like two VMs on one node: their hooks reach the daemon concurrently.
      await Promise.all(Object.values(vms).map((vm) => step.run(vm)));
      expect({ step: step.what, ...(await ledgerStates()) }).toEqual({ step: step.what, ...step.ledger });
    }
    if (row.vzdump) {
      const runs = stack.node.hookLog.slice(hookRuns).filter((r) => r.kind === 'vzdump');
      expect(runs.length).toBeGreaterThan(0);
      expect(runs.filter((r) => r.exitCode !== 0)).toEqual([]);
      for (const vm of Object.values(vms)) expectVzdumpEvents(vm, sinceEventId, row.vzdump);
    }
    await guestWrites();
    const modes = await backupModes();
    expect({ qcow2: modes.qcow2.mode, raw: modes.raw.mode }).toEqual(row.modes);
    for (const [f, re] of Object.entries(row.reasons ?? {}) as [Format, RegExp][]) expect(modes[f].reason).toMatch(re);
    // Whatever happened before, the backup just made leaves valid bitmaps behind.
    expect(await ledgerStates()).toEqual(BOTH_VALID);
  });

  test('vzdump snapshot mode: busy while vzdump runs, no pve-cbt backup meanwhile, bitmaps untouched', async () => {
    const sinceEventId = stack.services.ledger.lastEventId();
    for (const vm of Object.values(vms)) {
      await vm.vzdump('snapshot', async () => {
        const st = await stack.status(vm.vmid);
        expect(st.vzdumpBusy).toBe(true);
        const outcomes = await stack.request<{ vmid: number; error?: { code: string } }[]>('backup', { vmids: [vm.vmid] });
        expect(outcomes[0].error?.code).toBe('CBT_BACKUP_VZDUMP_BUSY');
      });
      expect((await stack.status(vm.vmid)).vzdumpBusy).toBe(false);
      expectVzdumpEvents(vm, sinceEventId, ['backup-start', 'pre-stop', 'pre-restart', 'post-restart', 'backup-end', 'log-end']);
    }
    expect(await ledgerStates()).toEqual(BOTH_VALID);
    await guestWrites();
    const modes = await backupModes();
    expect({ qcow2: modes.qcow2.mode, raw: modes.raw.mode }).toEqual({ qcow2: 'incremental', raw: 'incremental' });
  });
});
