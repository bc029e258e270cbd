/**
 * One daemon per state directory: a second `pve-cbt daemon` started while the first one is in the
 * middle of a backup of a running QEMU must refuse before it recovers anything (recovery would take
 * the live backup's export, job and scratch node away and merge its bitmap back).
 *
 * The first daemon (a real process) is paused with SIGSTOP on the first progress frame of its backup,
 * so the second one runs to its end while the backup is certainly in flight; then the first resumes.
 * Its backup must complete and restore byte-exact.
 */
import fs from 'node:fs';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type BackupOutcome } from '../../daemon/service/requests';
import { daemonLockFile } from '../../daemon/service/daemon-lock';
import { addVm, createStack, runCli, MiB, startChildDaemon, type ChildDaemon, type Stack } from './e2e-harness';

describe('a second daemon on the same state', () => {
  let stack: Stack;
  let first: ChildDaemon | undefined;
  beforeAll(async () => {
    stack = await createStack();
  }, 60_000);
  afterAll(async () => {
    if (first && first.proc.exitCode === null && first.proc.signalCode === null) {
      first.proc.kill('SIGCONT');
      first.proc.kill('SIGKILL');
    }
    await stack?.cleanup();
  });

  test('refuses with CBT_DAEMON_ALREADY_RUNNING before touching anything; the live backup completes byte-exact', async () => {
    const vm = await addVm(stack, 821, 'raw', { sizeMiB: 16 });
    for (let i = 0; i < 10; i++) await vm.write('scsi0', { pattern: 0x40 + i, offset: (4 + i) * MiB, length: MiB });
    await vm.start();
    first = await startChildDaemon(stack);
    const pid = first.proc.pid!;
    const reference = await vm.snapshotReference('scsi0');

    let second: Promise<{ code: number | null; stdout: string; stderr: string }> | undefined;
    const outcomes = await ipcRequest<BackupOutcome[]>(stack.config.socketPath, REQUESTS.backup, { vmids: [vm.vmid] }, {
      timeoutMs: 120_000,
      onProgress: () => {
        if (second) return;
        process.kill(pid, 'SIGSTOP');
        second = runCli(['daemon', '--config', stack.configFile, '--json']).finally(() => process.kill(pid, 'SIGCONT'));
      },
    });
    expect(second).toBeDefined();
    const refused = await second!;
    // The live backup was not disturbed: it completed and restores byte-exact.
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0].error).toBeUndefined();
    const result = outcomes[0].result!;
    expect(await stack.compareRestore(result.id, 'scsi0', reference)).toBe(-1);
    fs.rmSync(reference, { force: true });
    expect(refused.code).toBe(1);
    const last = refused.stdout.trim().split('\n').pop()!;
    expect(JSON.parse(last)).toMatchObject({ ok: false, error: { code: 'CBT_DAEMON_ALREADY_RUNNING', details: { holderPid: pid } } });
    // The refusing daemon ran no recovery and left the lock to its holder.
    expect(refused.stdout).not.toContain('startup recovery');
    expect(JSON.parse(fs.readFileSync(daemonLockFile(stack.config.stateDir), 'utf8'))).toMatchObject({ pid });

    first.proc.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    first = undefined;
    // A clean stop releases the lock.
    expect(fs.existsSync(daemonLockFile(stack.config.stateDir))).toBe(false);
  });
});
