/**
 * `pve-cbt restore --to` on a simulated node with real QEMU: a running VM's images (directly or
 * through a symlink) and files another process has open are never written, not even with --force,
 * and stay as they were while the VM keeps working; a stopped VM's volume and an existing file are
 * replaced only with --force, byte-exact; a missing directory has its own code; restored files
 * (and their temporary files) are 0600 under umask 000.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';
import { simNodeConfig } from '../../../daemon/demo/sim-node-config';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, KiB, MiB, type EngineEnv } from '../backup/backup-helpers';

const execFileP = promisify(execFile);
const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
let backupId: string;
let refs: Record<string, string>;
let configFile: string;
const VMID = 300;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  configFile = path.join(env.dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...simNodeConfig(sim.node, env.dir), repository: path.join(env.dir, 'repo') }));
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
  await vm.writeData('scsi0', 256 * KiB, Buffer.alloc(512 * KiB, 0x31));
  await vm.writeData('scsi1', 1 * MiB, Buffer.alloc(300 * KiB, 0x32));
  refs = { scsi0: await vm.snapshotReference('scsi0'), scsi1: await vm.snapshotReference('scsi1') };
  backupId = (await env.backup(VMID)).id;
});
afterAll(() => env?.close());

function sink(): PassThrough & { text(): string } {
  const s = new PassThrough() as PassThrough & { text(): string };
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

async function restore(disk: string, to: string, ...extra: string[]): Promise<{ code: number; json: { ok?: false; error?: { code: string; details: Record<string, unknown> } } & Record<string, unknown>; stderr: string }> {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli({ argv: ['restore', backupId, '--disk', disk, '--to', to, '--json', ...extra], commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: configFile } });
  return { code, json: JSON.parse(stdout.text() || '{}'), stderr: stderr.text() };
}

/** The guest-visible bytes of an image, as raw. */
async function contents(image: string, format: string): Promise<Buffer> {
  const out = path.join(env.dir, `contents-${path.basename(image)}.raw`);
  await execFileP('qemu-img', ['convert', '-f', format, '-O', 'raw', image, out]);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return data;
}

function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('.restore-'));
}

test('a running VM: its images are never written, directly, through a symlink, or with --force', async () => {
  await vm.start();
  const pid = vm.pid();
  for (const d of vm.disks) {
    const ino = fs.statSync(d.path).ino;
    const link = path.join(env.dir, `link-to-${d.key}`);
    fs.symlinkSync(d.path, link);
    for (const [to, force] of [[d.path, []], [d.path, ['--force']], [link, []], [link, ['--force']]] as const) {
      const r = await restore(d.key, to, ...force);
      expect(r.code).toBe(1);
      expect(r.json.error).toMatchObject({ code: 'CBT_RESTORE_TARGET_VM_RUNNING', details: { vmid: VMID, disk: d.key, pid } });
    }
    expect(fs.statSync(d.path).ino).toBe(ino);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(leftovers(path.dirname(d.path))).toEqual([]);
  }
  // The VM keeps working on the same images, and they hold exactly what the guest wrote.
  await vm.write('scsi0', { pattern: 0x41, offset: 2 * MiB, length: 64 * KiB });
  await vm.write('scsi1', { pattern: 0x42, offset: 0, length: 64 * KiB });
  await vm.stop();
  for (const d of vm.disks) expect((await contents(d.path, d.format)).equals(fs.readFileSync(d.reference))).toBe(true);
});

test('a file another process has open is never written, also through a symlink and with --force', async () => {
  const file = path.join(env.dir, 'held.raw');
  fs.writeFileSync(file, 'held');
  const link = path.join(env.dir, 'held-link.raw');
  fs.symlinkSync(file, link);
  const fd = fs.openSync(file, 'a');
  const holder = spawn('sleep', ['600'], { stdio: ['ignore', fd, 'ignore'] });
  fs.closeSync(fd);
  try {
    await new Promise((resolve, reject) => holder.once('spawn', resolve).once('error', reject));
    for (const [to, force] of [[file, []], [file, ['--force']], [link, ['--force']]] as const) {
      const r = await restore('scsi1', to, ...force);
      expect(r.code).toBe(1);
      expect(r.json.error).toMatchObject({ code: 'CBT_RESTORE_TARGET_IN_USE', details: { pid: holder.pid, command: 'sleep' } });
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('held');
  } finally {
    holder.kill('SIGKILL');
  }
});

test("a stopped VM's volume: refused without --force, restored byte-exact with it", async () => {
  for (const d of vm.disks) {
    const before = fs.readFileSync(d.path);
    const r = await restore(d.key, d.path, '--format', d.format);
    expect(r.code).toBe(1);
    expect(r.json.error).toMatchObject({ code: 'CBT_RESTORE_TARGET_IS_VM_VOLUME', details: { vmid: VMID, disk: d.key } });
    expect(fs.readFileSync(d.path).equals(before)).toBe(true);
    const ok = await restore(d.key, d.path, '--format', d.format, '--force');
    expect(ok.code).toBe(0);
    expect(ok.json).toMatchObject({ ok: true, disk: d.key, to: d.path, format: d.format });
    expect((await contents(d.path, d.format)).equals(fs.readFileSync(refs[d.key]))).toBe(true);
  }
  // The VM starts on its restored images.
  await vm.start();
  await vm.stop();
});

test('an existing file: refused without --force (usage, exit 2), replaced byte-exact with it', async () => {
  const file = path.join(env.dir, 'existing.raw');
  fs.writeFileSync(file, 'precious');
  const r = await restore('scsi1', file);
  expect(r.code).toBe(2);
  expect(r.json.error).toMatchObject({ code: 'CBT_RESTORE_TARGET_EXISTS', details: { target: file, kind: 'file' } });
  expect(fs.readFileSync(file, 'utf8')).toBe('precious');
  expect((await restore('scsi1', file, '--force')).code).toBe(0);
  expect(fs.readFileSync(file).equals(fs.readFileSync(refs.scsi1))).toBe(true);

  // The repository's own no-clobber commit: the name appearing during the restore is kept.
  const late = path.join(env.dir, 'late.raw');
  await expect(
    env.repo.restoreDisk(backupId, 'scsi1', { path: late, format: 'raw', overwrite: false }, { beforeCommit: async () => fs.writeFileSync(late, 'late') }),
  ).rejects.toMatchObject({ code: 'CBT_RESTORE_TARGET_EXISTS' });
  expect(fs.readFileSync(late, 'utf8')).toBe('late');
  expect(leftovers(env.dir)).toEqual([]);
});

test('a missing directory has its own code, from the CLI and from the repository', async () => {
  const dir = path.join(env.dir, 'no', 'such');
  const to = path.join(dir, 'x.raw');
  const r = await restore('scsi0', to);
  expect(r.code).toBe(2);
  expect(r.json.error).toMatchObject({ code: 'CBT_RESTORE_TARGET_DIR_MISSING', details: { target: to, dir } });
  await expect(env.repo.restoreDisk(backupId, 'scsi0', { path: to, format: 'raw' })).rejects.toMatchObject({ code: 'CBT_RESTORE_TARGET_DIR_MISSING', details: { dir } });
  const human = await runCli({ argv: ['restore', backupId, '--disk', 'scsi0', '--to', to], commands: COMMANDS, stdout: sink(), stderr: sink(), env: { PVE_CBT_CONFIG: configFile } });
  expect(human).toBe(2);
});

test('restored files and their temporary files are 0600 under umask 000', async () => {
  const old = process.umask(0o000);
  try {
    for (const format of ['raw', 'qcow2'] as const) {
      const to = path.join(env.dir, `private.${format}`);
      const tempModes: number[] = [];
      const beforeCommit = async (): Promise<void> => {
        for (const n of leftovers(env.dir)) tempModes.push(fs.statSync(path.join(env.dir, n)).mode & 0o777);
      };
      await env.repo.restoreDisk(backupId, 'scsi0', { path: to, format }, { beforeCommit });
      expect(tempModes.length).toBeGreaterThan(0);
      expect(tempModes.every((m) => m === 0o600)).toBe(true);
      expect(fs.statSync(to).mode & 0o777).toBe(0o600);
      expect((await contents(to, format)).equals(fs.readFileSync(refs.scsi0))).toBe(true);
      const viaCli = path.join(env.dir, `cli-private.${format}`);
      expect((await restore('scsi0', viaCli, '--format', format)).code).toBe(0);
      expect(fs.statSync(viaCli).mode & 0o777).toBe(0o600);
    }
  } finally {
    process.umask(old);
  }
});
