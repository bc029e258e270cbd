/**
 * A catalog holding garbage (catalog.sqlite and its WAL) must not stop pve-cbt: the real daemon
 * process sets it aside, rebuilds the backups from the repository, logs it at error level and
 * serves; `list`, `verify` and `restore` (the CLI as its own process) work; and since the ledger is
 * lost, the next backup of a running VM whose QEMU still has the bitmap is a full-compare, not an
 * incremental, and restores byte-exact. `pve-cbt catalog rebuild` rebuilds on demand.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type BackupOutcome } from '../../daemon/service/requests';
import { catalogFile } from '../../daemon/service/services';
import { displayBackupId } from '../../daemon/repository/backup-id';
import { addVm, createStack, diskOf, firstDifference, MiB, runCli, startChildDaemon, killChildDaemon, type ChildDaemon, type Stack } from './e2e-harness';

const cli = (stack: Stack, args: string[]) => runCli(['--config', stack.configFile, ...args]);

function logEntries(logDir: string): Record<string, unknown>[] {
  return fs
    .readdirSync(logDir)
    .filter((f) => f.endsWith('.log'))
    .flatMap((f) => fs.readFileSync(path.join(logDir, f), 'utf8').split('\n'))
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('a catalog holding garbage', () => {
  let stack: Stack;
  let child: ChildDaemon | undefined;
  beforeAll(async () => {
    stack = await createStack();
  }, 60_000);
  afterAll(async () => {
    killChildDaemon(child);
    await stack?.cleanup();
  });

  test('is set aside and rebuilt; list, verify, restore work; the next backup is a full-compare and byte-exact', async () => {
    const vmid = 831;
    const vm = await addVm(stack, vmid, 'raw', { sizeMiB: 16 });
    await vm.start();
    await stack.startDaemon();
    expect(diskOf((await stack.backupAndCheck([vm])).get(vmid)).mode).toBe('full');
    await vm.write('scsi0', { pattern: 0x21, offset: 5 * MiB, length: MiB });
    const second = (await stack.backupAndCheck([vm])).get(vmid)!;
    expect(diskOf(second).mode).toBe('incremental');
    await stack.stopDaemon();
    const atSecond = await vm.snapshotReference('scsi0');

    const file = catalogFile(stack.config.stateDir);
    fs.writeFileSync(file, crypto.randomBytes(256 * 1024));
    fs.writeFileSync(`${file}-wal`, crypto.randomBytes(64 * 1024));

    child = await startChildDaemon(stack);
    const aside = fs.readdirSync(stack.config.stateDir).filter((f) => f.includes('.corrupt-'));
    expect(aside.map((f) => f.replace(/corrupt-.*/, 'corrupt-')).sort()).toEqual(['catalog.sqlite-wal.corrupt-', 'catalog.sqlite.corrupt-']);
    const loud = logEntries(stack.config.logDir).filter((e) => e.code === 'CBT_CATALOG_REBUILT');
    expect(loud).toHaveLength(1);
    expect(loud[0]).toMatchObject({ level: 'error', backups: 2, component: 'daemon' });

    const list = await cli(stack, ['list', '--all', '--json']);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { backups: { id: string }[] }).backups.map((b) => b.id)).toContain(displayBackupId(second.id));
    const verify = await cli(stack, ['verify', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
    const target = path.join(stack.work, 'restored-831.raw');
    const restore = await cli(stack, ['restore', second.id, '--disk', 'scsi0', '--to', target, '--json']);
    expect([restore.code, restore.stderr]).toEqual([0, '']);
    expect(firstDifference(fs.readFileSync(target), fs.readFileSync(atSecond))).toBe(-1);
    fs.rmSync(target, { force: true });
    fs.rmSync(atSecond, { force: true });

    // QEMU still has the bitmap the last manifest names, recording: only the lost ledger stands
    // between it and an incremental that no witness vouches for.
    await vm.write('scsi0', { pattern: 0x22, offset: 9 * MiB, length: MiB });
    const ref = await vm.snapshotReference('scsi0');
    const [outcome] = await ipcRequest<BackupOutcome[]>(stack.config.socketPath, REQUESTS.backup, { vmids: [vmid] }, { timeoutMs: 120_000 });
    expect(outcome.error).toBeUndefined();
    const third = diskOf(outcome.result);
    expect(third.mode).toBe('full-compare');
    expect(third.reason).toMatch(/^ledger-no-record/);
    expect(await stack.compareRestore(outcome.result!.id, 'scsi0', ref)).toBe(-1);
    fs.rmSync(ref, { force: true });

    const rebuilt = await cli(stack, ['catalog', 'rebuild', '--json']);
    expect(rebuilt.code).toBe(0);
    expect(JSON.parse(rebuilt.stdout)).toEqual({ ok: true, backups: 3, setAside: [], ledgerLost: false });

    child.proc.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    child = undefined;
  });
});
