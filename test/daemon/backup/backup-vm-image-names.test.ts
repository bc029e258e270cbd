/**
 * Image names that reach QEMU's tools: what the simulator's `pvesm path` prints is refused unless it
 * is an absolute path or a real storage's protocol form (a json: name pointing at /etc/hostname was
 * once backed up as the disk), and file names are passed after `--`, so even a name that starts with
 * `-` is read as a file by real qemu-img and qemu-nbd, never as an option.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addImageBitmap, imageInfo, ImageExport, removeImageBitmap } from '../../../daemon/backup/image-export';
import { run } from '../../../daemon/proc/run-process';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
let answerFile: string;
const VMID = 310;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 4 }] });
  await vm.write('scsi0', { pattern: 0x5a, offset: 0, length: 1 * MiB });
  // Wrap the simulator's pvesm stub: while ANSWER exists, `pvesm path` prints its content instead.
  answerFile = path.join(sim.node.root, 'pvesm-answer');
  const real = `${sim.node.pvesmPath}.sim`;
  fs.renameSync(sim.node.pvesmPath, real);
  fs.writeFileSync(
    sim.node.pvesmPath,
    `#!/bin/bash\nif [ "$1" = path ] && [ -f '${answerFile}' ]; then cat '${answerFile}'; exit 0; fi\nexec '${real}' "$@"\n`,
    { mode: 0o755 },
  );
});
afterAll(() => env?.close());

test.each([
  ['--help', 'option-like'],
  ['-U', 'option-like'],
  ['json:{"driver":"file","filename":"/etc/hostname"}', 'json-pseudo-filename'],
  ['nbd:unix:/x', 'protocol'],
  ['relative/path', 'relative'],
])('pvesm path printing %j: the backup is refused (%s) before any tool opens it', async (printed, refusal) => {
  fs.writeFileSync(answerFile, `${printed}\n`);
  try {
    await expect(env.backup(VMID)).rejects.toMatchObject({
      code: 'CBT_PVE_PATH_REFUSED',
      details: { vmid: VMID, volid: vm.disks[0].volid, path: printed, refusal },
    });
  } finally {
    fs.rmSync(answerFile);
  }
  expect(await env.repo.listBackups(VMID)).toEqual([]);
  expect(await env.repo.listBackupDirs(VMID)).toEqual([]);
});

test('with the stub answering normally again, the same VM backs up and restores byte for byte', async () => {
  const r = await env.backup(VMID);
  expect(r.disks[0].mode).toBe('full');
  await env.expectRestoreEquals(r.id, 'scsi0', vm.disks[0].reference);
});

describe('file names after -- in real qemu-img and qemu-nbd', () => {
  let dir: string;
  let cwd: string;
  beforeAll(async () => {
    cwd = process.cwd();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-names-'));
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, '--help'), String(2 * MiB)]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, '-U'), String(3 * MiB)]);
    // Only relative names can start with '-'; the check lets none through, `--` is the second line.
    process.chdir(dir);
  });
  afterAll(() => {
    process.chdir(cwd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('qemu-img info and bitmap read "--help" and "-U" as files', async () => {
    expect((await imageInfo('--help', 'qcow2')).virtualSize).toBe(2 * MiB);
    expect((await imageInfo('-U', 'qcow2')).virtualSize).toBe(3 * MiB);
    await addImageBitmap('-U', 'pve-cbt-scsi0-1', 65536);
    expect((await imageInfo('-U', 'qcow2')).bitmaps.map((b) => b.name)).toEqual(['pve-cbt-scsi0-1']);
    await removeImageBitmap('-U', 'pve-cbt-scsi0-1');
    expect((await imageInfo('-U', 'qcow2')).bitmaps).toEqual([]);
  });

  test('qemu-nbd exports a file named "--help"', async () => {
    const exp = await ImageExport.open({ vmid: 999, drive: 'scsi0', file: '--help', format: 'qcow2', workDir: path.join(dir, 'work') });
    try {
      expect(fs.statSync(exp.socketPath).isSocket()).toBe(true);
    } finally {
      await exp.close();
    }
  });
});
