/**
 * Whole-VM restore on a simulated node with real QEMU: a VM with a qcow2 and a raw disk, a NIC and
 * a firewall file is backed up (its config travels in the manifest: `show`, `--vm-config`,
 * `--firewall`), restored as new VMIDs through `pvesm alloc` on dir storage `local`, every new
 * volume compared byte for byte with the disks at backup time, the new config checked line by line
 * and the VM started from it. Refusals (existing VMID, running VM, unknown disk or storage) change
 * nothing; a corrupt chunk in the second disk frees both allocated volumes and writes no config;
 * --force replaces a VM and frees its old volumes; --disk replaces one disk of a stopped VM.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';
import { simNodeConfig } from '../../../daemon/demo/sim-node-config';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import { readBlob, writeBlobInPlace } from '../repository/blob-files';
import { displayBackupId } from '../../../daemon/repository/backup-id';
import { sha256Hex } from '../../../daemon/repository/digest';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, KiB, MiB, type EngineEnv } from '../backup/backup-helpers';
import { backupImage } from '../repository/repo-test-helpers';

const execFileP = promisify(execFile);
const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
let backupId: string;
let refs: Record<string, Buffer>;
let configFile: string;
let savedConf: string;
const VMID = 400;
const FIREWALL = '[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 22\n';

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  configFile = path.join(env.dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...simNodeConfig(sim.node, env.dir), repository: path.join(env.dir, 'repo') }));
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
  // A NIC in the current section (before the snapshot section the simulator writes).
  const text = fs.readFileSync(vm.confPath, 'utf8');
  fs.writeFileSync(vm.confPath, text.replace(/^name: /m, 'net0: virtio=AA:BB:CC:00:04:00,bridge=vmbr0,firewall=1\nname: '));
  fs.mkdirSync(path.join(sim.node.root, 'etc/pve/firewall'), { recursive: true });
  fs.writeFileSync(path.join(sim.node.root, 'etc/pve/firewall', `${VMID}.fw`), FIREWALL);
  savedConf = fs.readFileSync(vm.confPath, 'utf8').split(/^\[/m)[0].replace(/\n+$/, '\n');
  await vm.start();
  await vm.write('scsi0', { pattern: 0x31, offset: 256 * KiB, length: 512 * KiB });
  await vm.write('scsi1', { pattern: 0x32, offset: 1 * MiB, length: 320 * KiB });
  await vm.stop();
  refs = { scsi0: fs.readFileSync(await vm.snapshotReference('scsi0')), scsi1: fs.readFileSync(await vm.snapshotReference('scsi1')) };
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

type Json = { error?: { code: string; details: Record<string, unknown> } } & Record<string, unknown>;

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string; json: () => Json }> {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: configFile } });
  return { code, stdout: stdout.text(), stderr: stderr.text(), json: () => JSON.parse(stdout.text()) as Json };
}

/** The guest-visible bytes of an image, as raw. */
async function contents(image: string, format: string): Promise<Buffer> {
  const out = path.join(env.dir, `contents-${path.basename(image)}.raw`);
  await execFileP('qemu-img', ['convert', '-f', format, '-O', 'raw', image, out]);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return data;
}

async function imageFormat(image: string): Promise<string> {
  const { stdout } = await execFileP('qemu-img', ['info', '--output=json', image]);
  return (JSON.parse(stdout) as { format: string }).format;
}

const images = (vmid: number): string[] => {
  const dir = path.join(sim.node.storageDir, 'images', String(vmid));
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
};
const confOf = (vmid: number): string => path.join(sim.node.configDir, `${vmid}.conf`);
const fwOf = (vmid: number): string => path.join(sim.node.root, 'etc/pve/firewall', `${vmid}.fw`);
const volPath = (volid: string): string => path.join(sim.node.storageDir, 'images', volid.replace(/^local:/, ''));
const confLines = (vmid: number): Record<string, string> =>
  Object.fromEntries(fs.readFileSync(confOf(vmid), 'utf8').split('\n').filter((l) => /^[a-z]/.test(l)).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));

test('the backup keeps the config and the firewall file: show, --vm-config, --firewall, --json', async () => {
  const show = await cli('show', backupId);
  expect(show.code).toBe(0);
  expect(show.stdout).toContain(`config (${VMID}.conf at backup time):\n  ${savedConf.split('\n')[0]}`);
  expect(show.stdout).toContain('  net0: virtio=AA:BB:CC:00:04:00,bridge=vmbr0,firewall=1');
  expect(show.stdout).toContain(`firewall (${VMID}.fw):\n  [OPTIONS]`);
  expect(show.stdout).not.toContain('[before-upgrade]');
  expect((await cli('show', backupId, '--vm-config')).stdout).toBe(savedConf);
  expect(savedConf).toContain('parent: before-upgrade');
  expect(savedConf).not.toContain('scsi30');
  expect((await cli('show', backupId, '--firewall')).stdout).toBe(FIREWALL);
  expect((await cli('show', backupId, '--vm-config', '--firewall')).stdout).toBe(`${savedConf}#### firewall: /etc/pve/firewall/${VMID}.fw ####\n${FIREWALL}`);
  const json = (await cli('show', backupId, '--json')).json();
  expect(json.config).toEqual({ conf: savedConf, firewall: FIREWALL });
});

test('restore as a new VMID: volumes via pvesm alloc, byte-exact, config written with the new volids, the VM starts', async () => {
  const r = await cli('restore', backupId, '--vmid', '901', '--storage', 'local', '--json');
  expect(r.code).toBe(0);
  const out = r.json();
  expect(out).toMatchObject({
    backup: backupId,
    vmid: 901,
    conf: confOf(901),
    disks: [
      { disk: 'scsi0', volid: 'local:901/vm-901-disk-0.qcow2', format: 'qcow2', size: 4 * MiB },
      { disk: 'scsi1', volid: 'local:901/vm-901-disk-1.raw', format: 'raw', size: 4 * MiB },
    ],
    freed: [],
    leftover: [],
  });
  expect((out.dropped as { key: string }[]).map((d) => d.key).sort()).toEqual(['parent', 'unused0']);
  expect(images(901)).toEqual(['vm-901-disk-0.qcow2', 'vm-901-disk-1.raw']);
  for (const [disk, file, format] of [['scsi0', 'vm-901-disk-0.qcow2', 'qcow2'], ['scsi1', 'vm-901-disk-1.raw', 'raw']]) {
    const image = path.join(sim.node.storageDir, 'images/901', file);
    expect(await imageFormat(image)).toBe(format);
    expect((await contents(image, format)).equals(refs[disk])).toBe(true);
  }
  const conf = fs.readFileSync(confOf(901), 'utf8');
  expect(conf).not.toMatch(/^\[/m);
  expect(conf).not.toContain('vm-400-');
  const lines = confLines(901);
  const old = Object.fromEntries(savedConf.split('\n').filter((l) => l).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
  expect(lines.scsi0).toBe('local:901/vm-901-disk-0.qcow2,size=4M');
  expect(lines.scsi1).toBe('local:901/vm-901-disk-1.raw,size=4M');
  expect(lines.parent).toBeUndefined();
  expect(lines.unused0).toBeUndefined();
  expect(lines.vmgenid).not.toBe(old.vmgenid);
  expect(lines.vmgenid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // Without --unique: same MAC and smbios uuid; everything else as it was.
  for (const key of ['net0', 'smbios1', 'name', 'boot', 'ide2', 'memory', 'meta', 'scsihw']) expect(lines[key]).toBe(old[key]);
  expect(Object.keys(lines).sort()).toEqual(Object.keys(old).filter((k) => k !== 'parent' && k !== 'unused0').sort());
  expect(fs.readFileSync(fwOf(901), 'utf8')).toBe(FIREWALL);
  expect(fs.readdirSync(sim.node.configDir).filter((n) => n.includes('.tmp'))).toEqual([]);

  // The restored VM starts from its config, on the new volumes, and the guest sees the backup's bytes.
  const restored = await sim.node.adoptVm(901);
  expect(restored.disks.map((d) => d.path)).toEqual([volPath('local:901/vm-901-disk-0.qcow2'), volPath('local:901/vm-901-disk-1.raw')]);
  await restored.start();
  try {
    const blocks = await restored.qmp((q) => q.execute<{ device: string; inserted?: { file: string } }[]>('query-block'));
    const files = blocks.filter((b) => b.inserted).map((b) => b.inserted!.file);
    for (const d of restored.disks) expect(files).toContain(d.path);
    await restored.write('scsi1', { pattern: 0x55, offset: 0, length: 64 * KiB });
  } finally {
    await restored.stop();
  }
  expect((await contents(restored.disks[1].path, 'raw')).equals(fs.readFileSync(restored.disks[1].reference))).toBe(true);
});

test('--unique gives new MACs and a new smbios1 uuid; --format overrides the disks own', async () => {
  const r = await cli('restore', backupId, '--vmid', '902', '--storage', 'local', '--unique', '--format', 'raw', '--json');
  expect(r.code).toBe(0);
  expect(r.json().disks).toMatchObject([{ volid: 'local:902/vm-902-disk-0.raw', format: 'raw' }, { volid: 'local:902/vm-902-disk-1.raw', format: 'raw' }]);
  const lines = confLines(902);
  expect(lines.net0).toMatch(/^virtio=BC:24:11:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2},bridge=vmbr0,firewall=1$/);
  expect(lines.smbios1).toMatch(/^uuid=[0-9a-f-]{36}$/);
  expect(lines.smbios1).not.toBe(confLines(901).smbios1);
  expect((await contents(volPath('local:902/vm-902-disk-0.raw'), 'raw')).equals(refs.scsi0)).toBe(true);
  expect((await contents(volPath('local:902/vm-902-disk-1.raw'), 'raw')).equals(refs.scsi1)).toBe(true);
});

test('refusals change nothing: existing VMID, running VM (also with --force), unknown storage, disk or VM', async () => {
  const before = { images: images(901), conf: fs.readFileSync(confOf(901), 'utf8') };
  const exists = await cli('restore', backupId, '--vmid', '901', '--storage', 'local', '--json');
  expect(exists.code).toBe(2);
  expect(exists.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_EXISTS', details: { vmid: 901, conf: confOf(901) } });

  const running = sim.node.vm(901);
  await running.start();
  try {
    for (const extra of [[], ['--force'], ['--force', '--disk', 'scsi1']]) {
      const r = await cli('restore', backupId, '--vmid', '901', '--storage', 'local', '--json', ...extra);
      expect(r.code).toBe(1);
      expect(r.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_RUNNING', details: { vmid: 901, pid: running.pid() } });
    }
  } finally {
    await running.stop();
  }
  expect({ images: images(901), conf: fs.readFileSync(confOf(901), 'utf8') }).toEqual(before);

  const noStorage = await cli('restore', backupId, '--vmid', '903', '--storage', 'nfs-gone', '--json');
  expect(noStorage.code).toBe(1);
  expect(noStorage.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_ALLOC_FAILED', details: { storage: 'nfs-gone', vmid: 903, disk: 'scsi0', name: 'vm-903-disk-0.qcow2' } });
  const unknownDisk = await cli('restore', backupId, '--vmid', '901', '--storage', 'local', '--disk', 'scsi7', '--force', '--json');
  expect(unknownDisk.code).toBe(2);
  expect(unknownDisk.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_DISK_UNKNOWN', details: { disk: 'scsi7', where: 'backup' } });
  const noVm = await cli('restore', backupId, '--vmid', '904', '--storage', 'local', '--disk', 'scsi1', '--json');
  expect(noVm.code).toBe(2);
  expect(noVm.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_MISSING', details: { vmid: 904 } });
  for (const argv of [['--vmid', '905'], ['--vmid', '905', '--storage', 'local', '--to', '/tmp/x'], ['--disk', 'scsi0', '--to', '/tmp/x', '--storage', 'local']]) {
    const r = await cli('restore', backupId, '--json', ...argv);
    expect(r.code).toBe(2);
    expect(r.json().error).toMatchObject({ code: 'CBT_CLI_USAGE' });
  }
  for (const vmid of [903, 904, 905]) {
    expect(images(vmid)).toEqual([]);
    expect(fs.existsSync(confOf(vmid))).toBe(false);
  }
  expect({ images: images(901), conf: fs.readFileSync(confOf(901), 'utf8') }).toEqual(before);
});

test('--force replaces a stopped VM: new volumes, byte-exact, old volumes freed after the config', async () => {
  // For people this time: what was restored where, and what was freed.
  const r = await cli('restore', backupId, '--vmid', '902', '--storage', 'local', '--force');
  expect(r.code).toBe(0);
  // 0 and 1 are the old config's: the new ones take the next free names.
  expect(r.stdout).toBe(
    [
      `restored VM 902 from ${backupId}: scsi0=local:902/vm-902-disk-2.qcow2, scsi1=local:902/vm-902-disk-3.raw`,
      `config: ${confOf(902)}`,
      'not restored: parent: before-upgrade (snapshot parent)',
      'not restored: unused0: local:400/vm-400-disk-99.raw (unused volume)',
      'freed old volume local:902/vm-902-disk-0.raw',
      'freed old volume local:902/vm-902-disk-1.raw',
      '',
    ].join('\n'),
  );
  expect(images(902)).toEqual(['vm-902-disk-2.qcow2', 'vm-902-disk-3.raw']);
  expect((await contents(volPath('local:902/vm-902-disk-2.qcow2'), 'qcow2')).equals(refs.scsi0)).toBe(true);
  expect((await contents(volPath('local:902/vm-902-disk-3.raw'), 'raw')).equals(refs.scsi1)).toBe(true);
  expect(confLines(902).scsi0).toBe('local:902/vm-902-disk-2.qcow2,size=4M');
});

test('--disk replaces one disk of a stopped VM; the old volume stays as unusedN, the other disk is untouched', async () => {
  const restored = sim.node.vm(901);
  const scsi0Before = fs.readFileSync(restored.disks[0].path);
  const r = await cli('restore', backupId, '--vmid', '901', '--storage', 'local', '--disk', 'scsi1', '--force', '--json');
  expect(r.code).toBe(0);
  expect(r.json()).toMatchObject({ disks: [{ disk: 'scsi1', volid: 'local:901/vm-901-disk-2.raw' }], keptAsUnused: { key: 'unused0', volid: 'local:901/vm-901-disk-1.raw' }, freed: [] });
  const lines = confLines(901);
  expect(lines.scsi1).toBe('local:901/vm-901-disk-2.raw,size=4M');
  expect(lines.unused0).toBe('local:901/vm-901-disk-1.raw');
  expect(lines.scsi0).toBe('local:901/vm-901-disk-0.qcow2,size=4M');
  expect(fs.readFileSync(restored.disks[0].path).equals(scsi0Before)).toBe(true);
  // The guest's write to the old scsi1 is gone from the new one: it holds the backup's bytes.
  expect((await contents(volPath('local:901/vm-901-disk-2.raw'), 'raw')).equals(refs.scsi1)).toBe(true);
  expect(images(901)).toEqual(['vm-901-disk-0.qcow2', 'vm-901-disk-1.raw', 'vm-901-disk-2.raw']);
});

test('a corrupt chunk in the second disk: both allocated volumes are freed, no config and no firewall file are written', async () => {
  const m = await env.repo.readManifest(backupId);
  const entry = m.disks.find((d) => d.name === 'scsi1')!;
  const offset = Math.floor((1 * MiB) / entry.chunkSize) * entry.chunkSize;
  const digest = sha256Hex(refs.scsi1.subarray(offset, offset + entry.chunkSize));
  const original = await readBlob(env.repo, 'chunk', digest);
  const bad = Buffer.from(original);
  bad[bad.length - 10] ^= 0xff;
  await writeBlobInPlace(env.repo, 'chunk', digest, bad);
  try {
    const r = await cli('restore', backupId, '--vmid', '906', '--storage', 'local', '--json');
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({
      code: 'CBT_RESTORE_VM_FAILED',
      details: { vmid: 906, disk: 'scsi1', causeCode: 'CBT_REPO_RESTORE_FAILED', freed: ['local:906/vm-906-disk-0.qcow2', 'local:906/vm-906-disk-1.raw'], leftover: [] },
    });
    expect(images(906)).toEqual([]);
    expect(fs.existsSync(confOf(906))).toBe(false);
    expect(fs.existsSync(fwOf(906))).toBe(false);
    expect(fs.readdirSync(sim.node.configDir).filter((n) => !/^\d+\.conf$/.test(n))).toEqual([]);
    const human = await cli('restore', backupId, '--vmid', '906', '--storage', 'local');
    expect(human.code).toBe(1);
    expect(human.stderr).toContain('nothing was left behind');
  } finally {
    await writeBlobInPlace(env.repo, 'chunk', digest, original);
  }
});

test('a backup made before configs were kept: show says so, --vm-config and a VM restore refuse (usage), nothing is allocated', async () => {
  const image = path.join(env.dir, 'old-style.raw');
  fs.writeFileSync(image, refs.scsi1);
  const old = await backupImage(env.repo, image, { vmid: 410, disk: 'scsi0' });
  expect(old.config).toBeUndefined();
  const show = await cli('show', old.id);
  expect(show.code).toBe(0);
  expect(show.stdout).toContain('config: not kept');
  const raw = await cli('show', old.id, '--vm-config', '--json');
  expect(raw.code).toBe(2);
  expect(raw.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_NO_CONFIG', details: { backupId: displayBackupId(old.id), file: 'conf' } });
  const r = await cli('restore', old.id, '--vmid', '907', '--storage', 'local', '--json');
  expect(r.code).toBe(2);
  expect(r.json().error).toMatchObject({ code: 'CBT_RESTORE_VM_NO_CONFIG', details: { backupId: displayBackupId(old.id) } });
  expect(images(907)).toEqual([]);
  // Its disk still restores the old way.
  const to = path.join(env.dir, 'old-style-restored.raw');
  expect((await cli('restore', old.id, '--disk', 'scsi0', '--to', to)).code).toBe(0);
  expect(fs.readFileSync(to).equals(refs.scsi1)).toBe(true);
});

test('the storage fills up at the second disk (a real tmpfs, real ENOSPC): what was allocated is freed, no config', async () => {
  const small = await sim.node.addVm({ vmid: 420, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'virtio1', format: 'raw', sizeMiB: 4 }] });
  await small.writeData('scsi0', 0, Buffer.alloc(64 * KiB, 0x61));
  await small.writeData('virtio1', 0, Buffer.alloc(3 * MiB, 0x62));
  const id = (await env.backup(420)).id;
  const dir = path.join(sim.node.storageDir, 'images', '908');
  fs.mkdirSync(dir, { recursive: true });
  await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'cbt-test-vm-restore-full', dir]);
  try {
    const r = await cli('restore', id, '--vmid', '908', '--storage', 'local', '--json');
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({
      code: 'CBT_RESTORE_VM_FAILED',
      details: { vmid: 908, disk: 'virtio1', causeCode: 'CBT_REPO_NO_SPACE', freed: ['local:908/vm-908-disk-0.qcow2', 'local:908/vm-908-disk-1.raw'], leftover: [] },
    });
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(fs.existsSync(confOf(908))).toBe(false);
  } finally {
    await execFileP('umount', ['-l', dir]);
  }
  // With room, the same restore is exact.
  expect((await cli('restore', id, '--vmid', '908', '--storage', 'local')).code).toBe(0);
  expect((await contents(volPath('local:908/vm-908-disk-0.qcow2'), 'qcow2')).equals(fs.readFileSync(small.disks[0].reference))).toBe(true);
  expect((await contents(volPath('local:908/vm-908-disk-1.raw'), 'raw')).equals(fs.readFileSync(small.disks[1].reference))).toBe(true);
});

test('a PVE 9 (-blockdev) VM backed up while running restores byte-exact and starts in the same layout', async () => {
  const pve9 = await sim.node.addVm({ vmid: 430, layout: 'blockdev', disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'virtio1', format: 'raw', sizeMiB: 4 }] });
  await pve9.start();
  try {
    await pve9.write('scsi0', { pattern: 0x71, offset: 512 * KiB, length: 256 * KiB });
    await pve9.write('virtio1', { pattern: 0x72, offset: 2 * MiB, length: 128 * KiB });
    const want = { scsi0: fs.readFileSync(await pve9.snapshotReference('scsi0')), virtio1: fs.readFileSync(await pve9.snapshotReference('virtio1')) };
    const id = (await env.backup(430)).id;
    const r = await cli('restore', id, '--vmid', '909', '--storage', 'local', '--unique', '--json');
    expect(r.code).toBe(0);
    expect(confLines(909).machine).toBe('pc-i440fx-10.0+pve0');
    const restored = await sim.node.adoptVm(909);
    expect(restored.layout).toBe('blockdev');
    for (const d of restored.disks) expect((await contents(d.path, d.format)).equals(want[d.key as 'scsi0' | 'virtio1'])).toBe(true);
    await restored.start();
    try {
      const disks = await restored.qmp(queryDisks);
      expect(disks.map((d) => [d.drive, d.file])).toEqual(restored.disks.map((d) => [d.key, d.path]));
    } finally {
      await restored.stop();
    }
  } finally {
    await pve9.stop();
  }
});
