/**
 * Live restore on a simulated node with real QEMU (both of qemu-server's disk layouts): a VM with a
 * qcow2 and a raw disk is backed up, then restored with --live as a new VMID. The VM starts on
 * qcow2 overlays over pve-cbt's NBD export with each mirror job held at 1 KiB/s, so the test reads
 * both disks through the guest devices (HMP qemu-io, on a second QMP monitor: the restore keeps the
 * VM's own) while every job is provably still running, gets the backup's bytes, and writes from the
 * "guest" into data already copied and not yet copied. Then the limit is lifted: the VM ends on its
 * volumes with no block node left on the export, the overlays and sockets gone, the config written
 * last with the new volids, and each volume equals the backup plus the guest's writes byte for byte.
 * A corrupt chunk makes the mirror fail, and so do an abort (Ctrl-C) during the move and a QEMU that
 * does not start: the VM is stopped, the volumes freed, no config written.
 * Through the CLI (a daemon in this process runs the restore as its task, daemonized QEMU, --json):
 * the result and the refusals (running VM, existing VMID, --live with --disk, --bwlimit or --detach
 * without --live, no daemon running); `--detach` answers with the task id at once.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';
import { simNodeConfig } from '../../../daemon/demo/sim-node-config';
import { validateConfig } from '../../../daemon/config/load-config';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { runDaemon } from '../../../daemon/service/run-daemon';
import { TASK_REQUESTS, type TaskOutcome } from '../../../daemon/service/task-handlers';
import { ipcRequest } from '../../../shared/ipc/ipc-client';
import { acquirePveLock } from '../../../daemon/pve/pve-lock';
import { processStartTime, readQemuProcess } from '../../../daemon/pve/qemu-process';
import { sha256Hex } from '../../../daemon/repository/digest';
import { liveRestore, type LiveRestoreDeps, type LiveRestoreEvent } from '../../../daemon/restore/live-restore';
import { stopLiveVm } from '../../../daemon/restore/live-restore-launch';
import type { DiskLayout } from '../../../daemon/sim/qemu-command';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, KiB, MiB, type EngineEnv } from '../backup/backup-helpers';
import { ForegroundQemu } from '../nbd/foreground-qemu';
import { flipBlobByte, readBlob, writeBlobInPlace } from '../repository/blob-files';

const execFileP = promisify(execFile);
const sim = usePveNode();
let env: EngineEnv;
let configFile: string;
const SIZE = 4 * MiB;
const backups: Record<DiskLayout, { id: string; refs: Record<string, Buffer> }> = {} as never;
const started: number[] = [];

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  configFile = path.join(env.dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...simNodeConfig(sim.node, env.dir), repository: env.repo.dir }));
  for (const [vmid, layout] of [[600, 'drive'], [610, 'blockdev']] as const) {
    const vm = await sim.node.addVm({ vmid, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
    await vm.start();
    await vm.write('scsi0', { pattern: 0x41, offset: 0, length: 1536 * KiB });
    await vm.write('scsi0', { pattern: 0x42, offset: 3 * MiB, length: 192 * KiB });
    await vm.write('scsi1', { pattern: 0x43, offset: 256 * KiB, length: 3 * MiB });
    await vm.stop();
    const refs = { scsi0: fs.readFileSync(await vm.snapshotReference('scsi0')), scsi1: fs.readFileSync(await vm.snapshotReference('scsi1')) };
    backups[layout] = { id: (await env.backup(vmid)).id, refs };
  }
});

afterEach(async () => {
  // A restored VM's QEMU is not the simulator's: stop what a test left running.
  for (const vmid of started.splice(0)) await stopLiveVm(sim.node.runDir, vmid, path.join(sim.node.runDir, `${vmid}.qmp`), 5_000);
});
afterAll(() => env?.close());

const confOf = (vmid: number): string => path.join(sim.node.configDir, `${vmid}.conf`);
const images = (vmid: number): string[] => {
  const dir = path.join(sim.node.storageDir, 'images', String(vmid));
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
};
const volPath = (volid: string): string => path.join(sim.node.storageDir, 'images', volid.replace(/^local:/, ''));
const liveDirs = (vmid: number): string[] => fs.readdirSync(sim.node.runDir).filter((n) => n.startsWith(`${vmid}.live-restore-`));

async function contents(image: string, format: string): Promise<Buffer> {
  const out = path.join(env.dir, `contents-${path.basename(image)}.raw`);
  await execFileP('qemu-img', ['convert', '-f', format, '-O', 'raw', image, out]);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return data;
}

function deps(extra: Partial<LiveRestoreDeps> = {}): LiveRestoreDeps {
  return { repo: env.repo, repositoryDir: env.repo.dir, node: { qemuServerConfigDir: sim.node.configDir, qemuServerRunDir: sim.node.runDir, qemuServerLockDir: sim.node.lockDir, pvesmPath: sim.node.pvesmPath }, ...extra };
}

type Job = { id: string; status: string; 'current-progress': number; 'total-progress': number };

test.each(['drive', 'blockdev'] as const)('%s layout: the guest reads the backup before the data has moved, its writes land in the volumes', async (layout) => {
  const vmid = layout === 'drive' ? 700 : 710;
  const { id, refs } = backups[layout];
  let qemu: ForegroundQemu | undefined;
  const events: LiveRestoreEvent[] = [];
  let moving!: () => void;
  const allMoving = new Promise<void>((resolve) => (moving = resolve));
  const testQmp = path.join(env.dir, `test-${vmid}.qmp`);
  started.push(vmid);
  const restore = liveRestore(
    { backupId: id, vmid, storage: 'local', force: false, unique: false, speed: 1024 },
    deps({
      launcher: async (args) => {
        qemu = await ForegroundQemu.fromArgs(args, testQmp, true);
      },
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'progress') moving();
      },
    }),
  );
  restore.catch(() => undefined);
  await Promise.race([allMoving, restore]);
  if (!qemu) throw new Error('QEMU was not started');
  const q = qemu.qmp;
  const running = (await q.execute<Job[]>('query-jobs')).filter((j) => j.id.startsWith('restore-drive-'));
  expect(running.map((j) => [j.id, j.status]).sort()).toEqual([['restore-drive-scsi0', 'running'], ['restore-drive-scsi1', 'running']]);
  expect(fs.existsSync(confOf(vmid))).toBe(false);
  // Proxmox's flock on the VMID is held: `qm start` would wait.
  await expect(acquirePveLock(sim.node.lockDir, vmid, 200)).rejects.toMatchObject({ code: 'CBT_PVE_LOCK_TIMEOUT' });

  // Every byte of both disks through the guest devices: the backup's.
  for (const disk of ['scsi0', 'scsi1']) {
    const parts: Buffer[] = [];
    for (let off = 0; off < SIZE; off += 512 * KiB) parts.push(await qemu.read(disk, off, 512 * KiB));
    expect(Buffer.concat(parts).equals(refs[disk])).toBe(true);
  }
  // Guest writes: into what the mirror copied first and into what it has not reached.
  const want = { scsi0: Buffer.from(refs.scsi0), scsi1: Buffer.from(refs.scsi1) };
  for (const [disk, pattern, offset, length] of [['scsi0', 0x5a, 64 * KiB, 128 * KiB], ['scsi0', 0x5b, 3 * MiB + 64 * KiB, 256 * KiB], ['scsi1', 0x5c, 3 * MiB + 512 * KiB, 512 * KiB]] as const) {
    await qemu.write(disk, pattern, offset, length);
    want[disk].fill(pattern, offset, offset + length);
  }
  // The reads and writes came before the end: both jobs still run, neither has copied everything.
  const still = (await q.execute<Job[]>('query-jobs')).filter((j) => j.id.startsWith('restore-drive-'));
  expect(still.map((j) => j.status)).toEqual(['running', 'running']);
  for (const j of still) expect(j['current-progress']).toBeLessThan(j['total-progress']);
  expect(events.some((e) => e.type === 'switched')).toBe(false);

  for (const j of still) await q.execute('block-job-set-speed', { device: j.id, speed: 0 });
  const result = await restore;
  expect(result).toMatchObject({
    vmid,
    disks: [
      { disk: 'scsi0', volid: `local:${vmid}/vm-${vmid}-disk-0.qcow2`, format: 'qcow2', size: SIZE },
      { disk: 'scsi1', volid: `local:${vmid}/vm-${vmid}-disk-1.raw`, format: 'raw', size: SIZE },
    ],
    live: { state: 'complete', layout },
  });
  expect(result.live.guestRunningMs).toBeLessThan(result.live.totalMs);
  expect(events.map((e) => e.type).filter((t) => t !== 'progress')).toEqual(['allocated', 'allocated', 'serving', 'serving', 'running', 'moving', 'moving', 'switched', 'switched', 'export-closed', 'config']);

  // The VM runs on, on the plain volumes: no NBD node, no overlay, no socket, no job.
  expect(readQemuProcess(sim.node.runDir, vmid)?.pid).toBe(result.live.pid);
  const blocks = await q.execute<{ device: string; qdev?: string; inserted?: { file: string; drv: string; backing_file?: string } }[]>('query-block');
  const files = blocks.filter((b) => b.inserted && /scsi\d$/.test(b.qdev ?? b.device)).map((b) => b.inserted!.file);
  if (layout === 'drive') expect(files.sort()).toEqual([volPath(result.disks[0].volid), volPath(result.disks[1].volid)].sort());
  const named = await q.execute<{ 'node-name': string; drv: string; file: string; backing_file?: string }[]>('query-named-block-nodes', { flat: true });
  expect(named.filter((n) => n.drv === 'nbd' || n.file.includes('nbd') || n.file.includes('live-restore') || n.backing_file)).toEqual([]);
  for (const d of result.disks) expect(named.some((n) => n.file === volPath(d.volid) && n.drv === d.format)).toBe(true);
  expect((await q.execute<Job[]>('query-jobs')).length).toBe(0);
  expect(liveDirs(vmid)).toEqual([]);
  const conf = fs.readFileSync(confOf(vmid), 'utf8');
  expect(conf).toContain(`scsi0: local:${vmid}/vm-${vmid}-disk-0.qcow2,`);
  expect(conf).toContain(`scsi1: local:${vmid}/vm-${vmid}-disk-1.raw,`);
  // The guest still sees its writes, now from the volume.
  expect((await qemu.read('scsi1', 3 * MiB + 512 * KiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 0x5c))).toBe(true);
  await qemu.quit();
  const after = await acquirePveLock(sim.node.lockDir, vmid, 1_000);
  await after.release();

  expect((await contents(volPath(result.disks[0].volid), 'qcow2')).equals(want.scsi0)).toBe(true);
  expect((await contents(volPath(result.disks[1].volid), 'raw')).equals(want.scsi1)).toBe(true);
});

test('a corrupt chunk fails the move: the VM is stopped, the allocated volumes freed, no config, nothing of the export left', async () => {
  const vmid = 720;
  const { id, refs } = backups.drive;
  const m = await env.repo.readManifest(id);
  const entry = m.disks.find((d) => d.name === 'scsi1')!;
  const offset = 2 * MiB;
  const digest = sha256Hex(refs.scsi1.subarray(offset, offset + entry.chunkSize));
  // Found through the repository's own layout (a format-1 file or a blob inside a pack).
  const original = await readBlob(env.repo, 'chunk', digest);
  await flipBlobByte(env.repo, 'chunk', digest, 10, 0xff);
  const events: LiveRestoreEvent[] = [];
  started.push(vmid);
  try {
    const err = await liveRestore({ backupId: id, vmid, storage: 'local', force: false, unique: false }, deps({ onEvent: (e) => events.push(e) })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({
      code: 'CBT_RESTORE_LIVE_FAILED',
      details: { vmid, phase: 'mirror', disk: 'scsi1', causeCode: 'CBT_RESTORE_LIVE_JOB_FAILED', vmStarted: true, vmStopped: true, vmPid: null, leftover: [] },
    });
    expect((err as { details: { freed: string[] } }).details.freed).toEqual([`local:${vmid}/vm-${vmid}-disk-0.qcow2`, `local:${vmid}/vm-${vmid}-disk-1.raw`]);
    expect((err as Error).message).toContain('the VM was stopped');
    const ran = events.find((e) => e.type === 'running') as { pid: number } | undefined;
    expect(ran).toBeDefined();
    expect(processStartTime(ran!.pid)).toBeUndefined();
    expect(events.map((e) => e.type).slice(-2)).toEqual(['failed', 'stopped']);
  } finally {
    await writeBlobInPlace(env.repo, 'chunk', digest, original);
  }
  expect(readQemuProcess(sim.node.runDir, vmid)).toBeUndefined();
  expect(images(vmid)).toEqual([]);
  expect(fs.existsSync(confOf(vmid))).toBe(false);
  expect(liveDirs(vmid)).toEqual([]);
});

test.each([
  ['Ctrl-C (the abort signal) while the data moves', 'mirror'],
  ['QEMU that does not start', 'start'],
] as const)('%s: the VM is stopped, the volumes freed, no config', async (_what, phase) => {
  const vmid = phase === 'mirror' ? 740 : 741;
  const { id } = backups.blockdev;
  const ctrl = new AbortController();
  const events: LiveRestoreEvent[] = [];
  started.push(vmid);
  const err = await liveRestore(
    { backupId: id, vmid, storage: 'local', force: false, unique: false, speed: 1024 },
    deps({
      signal: ctrl.signal,
      ...(phase === 'start' ? { launcher: () => Promise.reject(new Error('qemu-system-x86_64: -machine accel=tcg: gone')) } : {}),
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'progress') ctrl.abort();
      },
    }),
  ).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toMatchObject({
    code: 'CBT_RESTORE_LIVE_FAILED',
    details: { vmid, phase, vmStarted: true, vmStopped: true, leftover: [], freed: [`local:${vmid}/vm-${vmid}-disk-0.qcow2`, `local:${vmid}/vm-${vmid}-disk-1.raw`] },
  });
  if (phase === 'start') expect(err).toMatchObject({ details: { causeCode: 'CBT_RESTORE_LIVE_START_FAILED', reason: expect.stringContaining('gone') } });
  else expect(events.some((e) => e.type === 'running')).toBe(true);
  expect(readQemuProcess(sim.node.runDir, vmid)).toBeUndefined();
  expect(images(vmid)).toEqual([]);
  expect(fs.existsSync(confOf(vmid))).toBe(false);
  expect(liveDirs(vmid)).toEqual([]);
});

function sink(): PassThrough & { text(): string } {
  const s = new PassThrough() as PassThrough & { text(): string };
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

type Json = { error?: { code: string; details: Record<string, unknown> } } & Record<string, unknown>;

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string; json: () => Json }> {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: configFile, PATH: process.env.PATH ?? '' } });
  return { code, stdout: stdout.text(), stderr: stderr.text(), json: () => JSON.parse(stdout.text()) as Json };
}

/** A pve-cbt daemon in this process on the test's config, for `fn`; stopped after it. */
async function withDaemon<T>(fn: (socketPath: string) => Promise<T>): Promise<T> {
  const config = validateConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')), configFile);
  const logger = createLogger({ console: false });
  const abort = new AbortController();
  let done!: Promise<void>;
  await new Promise<void>((resolve, reject) => {
    done = runDaemon({ config, logger, signal: abort.signal, onReady: () => resolve() });
    done.catch(reject);
  });
  try {
    return await fn(config.socketPath);
  } finally {
    abort.abort(new Error('test done'));
    await done;
    await closeLogger(logger);
  }
}

test('CLI: no daemon running: --live is refused before anything is done', async () => {
  const r = await cli('restore', backups.blockdev.id, '--vmid', '732', '--storage', 'local', '--live', '--json');
  expect(r.code).toBe(4);
  expect(r.json().error).toMatchObject({ code: 'CBT_IPC_UNAVAILABLE', details: { hint: expect.stringContaining('task of the pve-cbt daemon') } });
  expect(images(732)).toEqual([]);
});

test('CLI: --live with a daemonized QEMU, --json; then refusals: running VM (also --force), existing VMID, --live --disk, --bwlimit alone', () => withDaemon(async (socketPath) => {
  const vmid = 730;
  const { id, refs } = backups.blockdev;
  started.push(vmid);
  const r = await cli('restore', id, '--vmid', String(vmid), '--storage', 'local', '--live', '--json');
  expect(r.code).toBe(0);
  const out = r.json();
  expect(out).toMatchObject({ vmid, conf: confOf(vmid), live: { state: 'complete', layout: 'blockdev' }, disks: [{ disk: 'scsi0', volid: `local:${vmid}/vm-${vmid}-disk-0.qcow2` }, { disk: 'scsi1', volid: `local:${vmid}/vm-${vmid}-disk-1.raw` }] });
  const pid = (out.live as { pid: number }).pid;
  expect(readQemuProcess(sim.node.runDir, vmid)?.pid).toBe(pid);
  expect(liveDirs(vmid)).toEqual([]);

  // It runs: never restored over, not even with --force.
  for (const extra of [[], ['--force']]) {
    const again = await cli('restore', id, '--vmid', String(vmid), '--storage', 'local', '--live', '--json', ...extra);
    expect(again.code).toBe(1);
    expect(again.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_RUNNING', details: { vmid, pid } });
  }
  expect(await stopLiveVm(sim.node.runDir, vmid, path.join(sim.node.runDir, `${vmid}.qmp`))).toBe(true);
  expect((await contents(volPath(`local:${vmid}/vm-${vmid}-disk-0.qcow2`), 'qcow2')).equals(refs.scsi0)).toBe(true);
  expect((await contents(volPath(`local:${vmid}/vm-${vmid}-disk-1.raw`), 'raw')).equals(refs.scsi1)).toBe(true);

  const exists = await cli('restore', id, '--vmid', String(vmid), '--storage', 'local', '--live', '--json');
  expect(exists.code).toBe(2);
  expect(exists.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_EXISTS', details: { vmid } });
  for (const argv of [['--live', '--disk', 'scsi0', '--force'], ['--bwlimit', '100'], ['--detach']]) {
    const bad = await cli('restore', id, '--vmid', String(vmid), '--storage', 'local', '--json', ...argv);
    expect(bad.code).toBe(2);
    expect(bad.json().error).toMatchObject({ code: 'CBT_CLI_USAGE' });
  }
  expect(images(vmid)).toEqual([`vm-${vmid}-disk-0.qcow2`, `vm-${vmid}-disk-1.raw`]);

  // For people: a line per step on stderr, the summary on stdout.
  const vmid2 = 731;
  started.push(vmid2);
  const text = await cli('restore', id, '--vmid', String(vmid2), '--storage', 'local', '--live');
  expect(text.code).toBe(0);
  const steps = text.stderr.split('\n').filter((l) => l.startsWith('live restore: '));
  expect(steps.map((l) => l.replace(/ \(pid \d+, .* after the start\)/, ' (pid)').replace(/socket=\S+/, 'socket=S').replace(/task \S+ \(.*\)$/, 'task T'))).toEqual([
    'live restore: task T',
    `live restore: scsi0 -> local:${vmid2}/vm-${vmid2}-disk-0.qcow2`,
    `live restore: scsi1 -> local:${vmid2}/vm-${vmid2}-disk-1.raw`,
    'live restore: serving scsi0 at nbd+unix:///scsi0?socket=S',
    'live restore: serving scsi1 at nbd+unix:///scsi1?socket=S',
    `live restore: VM ${vmid2} runs on the backup (pid); moving the data into its volumes`,
    `live restore: scsi0 is on local:${vmid2}/vm-${vmid2}-disk-0.qcow2`,
    `live restore: scsi1 is on local:${vmid2}/vm-${vmid2}-disk-1.raw`,
    'live restore: export closed, overlays removed',
    `live restore: config written: ${confOf(vmid2)}`,
  ]);
  expect(text.stdout.split('\n')[0]).toBe(`restored VM ${vmid2} live from ${id}: scsi0=local:${vmid2}/vm-${vmid2}-disk-0.qcow2, scsi1=local:${vmid2}/vm-${vmid2}-disk-1.raw`);
  expect(text.stdout).toContain(`config: ${confOf(vmid2)}`);
  expect(await stopLiveVm(sim.node.runDir, vmid2, path.join(sim.node.runDir, `${vmid2}.qmp`))).toBe(true);

  // --detach: the task id at once; the task runs to its end in the daemon.
  const vmid3 = 733;
  started.push(vmid3);
  const detached = await cli('restore', id, '--vmid', String(vmid3), '--storage', 'local', '--live', '--detach', '--json');
  expect(detached.code).toBe(0);
  const task = (detached.json().task as { taskId: string; vmid: number });
  expect(task.vmid).toBe(vmid3);
  const [ended] = await ipcRequest<TaskOutcome[]>(socketPath, TASK_REQUESTS.wait, { ids: [task.taskId] }, { timeoutMs: 60_000 });
  expect(ended).toMatchObject({ id: task.taskId, kind: 'live-restore', status: 'ok', result: { vmid: vmid3, live: { state: 'complete' } } });
  expect(fs.existsSync(confOf(vmid3))).toBe(true);

  // The restored VM starts from the config the live restore wrote.
  const vm = await sim.node.adoptVm(vmid);
  await vm.start();
  await vm.stop();
}));
