/**
 * A QEMU frozen (SIGSTOP) mid-read stays frozen through the failed backup's teardown: the export,
 * copy-before-write job, scratch node and scratch file cannot be removed then. Once QEMU answers
 * again, the teardown retried in the background removes them and merges the bitmaps back, without
 * waiting for the next backup; the next backup then reads exactly what changed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { fleeceNames } from '../../../daemon/backup/bitmap-names';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
const VMID = 321;
let env: EngineEnv;
afterAll(() => env?.close());

/** A logger that keeps the messages it is given. */
function recordingLogger(): { logger: winston.Logger; messages: string[] } {
  const messages: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      messages.push(String((JSON.parse(String(chunk)) as { message: string }).message));
      done();
    },
  });
  return { logger: winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] }), messages };
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What of pve-cbt's fleecing is still in QEMU and in the work dir. */
async function leftovers(vm: SimVm, workDir: string): Promise<string[]> {
  const n = fleeceNames(VMID, 'scsi0');
  return vm.qmp(async (q) => {
    const found: string[] = [];
    const exps = await q.execute<{ id: string }[]>('query-block-exports');
    if (exps.some((e) => e.id === n.exportId)) found.push('export');
    const jobs = await q.execute<{ device: string }[]>('query-block-jobs');
    if (jobs.some((j) => j.device === n.job)) found.push('job');
    const nodes = await q.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
    if (nodes.some((x) => x['node-name'] === n.node)) found.push('node');
    if (fs.existsSync(path.join(workDir, n.scratchFile))) found.push('scratch file');
    return found;
  });
}

test('QEMU frozen through the failed teardown: once it answers, the teardown finishes in the background', async () => {
  env = await createEngineEnv(sim.node);
  const workDir = path.join(env.dir, 'work');
  const vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 32 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x21, offset: 0, length: 8 * MiB });
  expect((await env.backup(VMID)).disks[0].mode).toBe('full');

  const writes = [{ offset: 1 * MiB, length: 4 * MiB }, { offset: 20 * MiB, length: 4 * MiB }, { offset: 30 * MiB, length: 64 * KiB }];
  for (const w of writes) await vm.write('scsi0', { pattern: 0x42, ...w });
  const pid = vm.pid()!;
  const { logger, messages } = recordingLogger();
  let frozen = false;
  try {
    const err = await env
      .backup(VMID, {
        logger,
        onProgress: () => {
          if (frozen) return;
          frozen = true;
          process.kill(pid, 'SIGSTOP');
        },
      }, { nbdTimeoutMs: 1500, nbdRequestSize: 64 * KiB, nbdInFlight: 1, nbdConnections: 1 })
      .then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
    expect(frozen).toBe(true);
    expect(err?.code).toMatch(/^CBT_(NBD_TIMEOUT|BACKUP_READ)$/);
    expect(messages).toContain('fleece teardown step failed');
    // Still frozen: the background retry fails at least once before QEMU answers again.
    await waitFor('a failed background retry', () => messages.includes('cleanup of the failed backup failed; retrying'), 60_000);
  } finally {
    process.kill(pid, 'SIGCONT');
  }

  await waitFor('the leftovers gone', async () => (await leftovers(vm, workDir)).length === 0, 90_000);
  await waitFor('the retry done', () => messages.includes('leftovers of the failed backup cleaned in the background'), 30_000);
  expect((await env.repo.listBackups(VMID)).length).toBe(1);
  // Bitmaps merged back: one pve-cbt bitmap, recording, holding every change since the full.
  const own = (await vm.qmp((q) => queryDisks(q)))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-'));
  expect(own).toHaveLength(1);
  expect(own[0]).toMatchObject({ recording: true, busy: false });
  expect(own[0].count).toBeGreaterThanOrEqual(dirtyBytes(writes));

  const ref = await vm.snapshotReference('scsi0');
  const next = await env.backup(VMID);
  expect(next.disks[0]).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(writes) });
  await env.expectRestoreEquals(next.id, 'scsi0', ref);
});
