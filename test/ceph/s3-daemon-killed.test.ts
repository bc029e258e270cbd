/**
 * kill -9 of a real daemon process (compiled CLI) while it uploads a backup to an S3 repository on
 * radosgw: nothing it left is trusted. The backup has no manifest; every manifest in the bucket
 * references only packs whose objects (pack and index) exist; verify is clean; the next daemon
 * backs up again and that restores byte-exact; GC then removes what the killed writer left.
 */
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type BackupOutcome } from '../../daemon/service/requests';
import { addVm, createStack, diskOf, killChildDaemon, MiB, startChildDaemon, type ChildDaemon, type Stack } from '../e2e/e2e-harness';
import { freezeQemu, type QemuFreeze } from '../e2e/qemu-hold';
import { allObjects, dropBucket, makeBucket, s3Env } from './s3-test-env';

const env = s3Env();

describe('a daemon killed while uploading to S3', () => {
  let stack: Stack;
  let bucket: string;
  let child: ChildDaemon | undefined;
  beforeAll(async () => {
    bucket = await makeBucket(env);
    stack = await createStack({
      config: { repository: `s3://${bucket}/repo`, s3: { endpoint: env.endpoint, accessKey: env.accessKey, secretKey: env.secretKey } },
    });
  }, 60_000);
  afterAll(async () => {
    killChildDaemon(child);
    await stack?.cleanup();
    if (bucket) await dropBucket(env, bucket);
  });

  test('SIGKILL mid-upload: no manifest, no manifest referencing a missing pack, verify ok, next backup byte-exact', async () => {
    const vm = await addVm(stack, 810, 'raw', { sizeMiB: 48 });
    await vm.start();
    for (let i = 0; i < 40; i++) await vm.write('scsi0', { pattern: 0x40 + i, offset: i * MiB, length: MiB });

    child = await startChildDaemon(stack);
    const exited = child.exited;
    // QEMU is frozen before the kill, so the backup cannot finish (and commit) however slowly a
    // loaded machine delivers it; it thaws once the process is gone (as in daemon-interrupted).
    let freeze: QemuFreeze | undefined;
    try {
      await ipcRequest<BackupOutcome[]>(stack.config.socketPath, REQUESTS.backup, { vmids: [810] }, {
        timeoutMs: 120_000,
        onProgress: () => {
          if (freeze) return;
          freeze = freezeQemu(vm.pid()!);
          child!.proc.kill('SIGKILL');
          exited.then(() => freeze!.thaw(), () => freeze!.thaw());
        },
      }).catch(() => undefined);
      expect(freeze).toBeDefined();
      expect((await exited).signal).toBe('SIGKILL');
    } finally {
      freeze?.thaw();
    }
    child = undefined;

    const s = await stack.startDaemon();
    expect(await s.repo.listBackups(810)).toEqual([]);
    const names = new Set((await allObjects(env, bucket)).map((o) => o.name.slice('repo/'.length)));
    expect([...names].filter((n) => n.endsWith('/manifest.json'))).toEqual([]);
    const report = await s.repo.verify();
    expect(report.ok).toBe(true);

    const next = diskOf((await stack.backupAndCheck([vm])).get(810));
    expect(next.mode).toBe('full');
    // Every pack a manifest may reference exists with its index.
    const after = (await allObjects(env, bucket)).map((o) => o.name.slice('repo/'.length));
    for (const idx of after.filter((n) => n.endsWith('.idx'))) expect(after).toContain(idx.replace(/\.idx$/, '.pack'));
    expect((await s.repo.verify()).ok).toBe(true);
    await s.repo.gc({ graceMs: 0 });
    expect((await s.repo.verify()).ok).toBe(true);
    const final = (await allObjects(env, bucket)).map((o) => o.name.slice('repo/'.length));
    for (const p of final.filter((n) => n.endsWith('.pack'))) expect(final).toContain(p.replace(/\.pack$/, '.idx'));
    await stack.stopDaemon();
  });
});
