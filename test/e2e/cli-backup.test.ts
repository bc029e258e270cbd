/**
 * `pve-cbt backup` from the compiled CLI against the real daemon, simulator (real QEMU) and SQLite:
 * VMs named by id, `--pool` (user.cfg as PVE writes it), `--all`, `--mode full` (recorded in the
 * manifest, and the next backup is incremental again), a VM named twice (usage error, nothing backed
 * up), and one JSON shape for one VM or many, also when the only VM fails. Every backup is
 * restored through the CLI and compared byte for byte with the disk at backup time.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SimVm } from '../../daemon/sim/pve-node';
import { addVm, CLI, createStack, firstDifference, MiB, requireDist, type Stack } from './e2e-harness';

const execFileP = promisify(execFile);
const PBS_ID = /^vm\/\d+\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

interface DiskOut {
  disk: string;
  mode: string;
  reason: string;
}
interface VmOut {
  vmid: number;
  ok: boolean;
  id?: string;
  disks?: DiskOut[];
  error?: { code: string; message: string };
}
interface Envelope {
  ok: boolean;
  backups?: VmOut[];
  disks?: (DiskOut & { vmid: number })[];
  error?: { code: string; message: string; details: Record<string, unknown> };
}

let stack: Stack;
let cfg: string[];
let vms: Map<number, SimVm>;

async function cli(args: string[], timeout = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [CLI, ...args, ...cfg], { timeout, maxBuffer: 64 * MiB });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `backup ... --json`, with each disk's reference taken just before; every disk restored and compared. */
async function backup(args: string[], expectVmids: number[]): Promise<{ code: number; env: Envelope; stderr: string }> {
  const refs = new Map<number, string>();
  for (const v of expectVmids) refs.set(v, await vms.get(v)!.snapshotReference('scsi0'));
  try {
    const r = await cli(['backup', ...args, '--json']);
    const env = JSON.parse(r.stdout) as Envelope;
    for (const b of env?.backups ?? []) {
      if (!b.ok) continue;
      expect(b.id).toMatch(PBS_ID);
      const target = path.join(stack.work, `restore-${b.vmid}.raw`);
      try {
        const restore = await cli(['restore', b.id!, '--disk', 'scsi0', '--to', target]);
        expect(restore.code).toBe(0);
        expect(restore.stderr).not.toMatch(/pve-cbt:/); // progress lines only
        expect(restore.stdout).toBe(`restored scsi0 of ${b.id} to ${target} (raw, 8.0 MiB)\n`);
        expect(firstDifference(fs.readFileSync(target), fs.readFileSync(refs.get(b.vmid)!))).toBe(-1);
      } finally {
        fs.rmSync(target, { force: true });
      }
    }
    return { code: r.code, env, stderr: r.stderr };
  } finally {
    for (const f of refs.values()) fs.rmSync(f, { force: true });
  }
}

const listIds = async (): Promise<string[]> => (JSON.parse((await cli(['list', '--all', '--json'])).stdout) as { backups: { id: string }[] }).backups.map((b) => b.id);

beforeAll(async () => {
  requireDist();
  stack = await createStack();
  cfg = ['--config', stack.configFile];
  await stack.startDaemon();
  vms = new Map();
  for (const [vmid, format] of [[121, 'qcow2'], [122, 'raw'], [123, 'raw']] as const) vms.set(vmid, await addVm(stack, vmid, format));
  await vms.get(121)!.start();
  await vms.get(122)!.start(); // 123 stays stopped
  stack.node.setPool('prod', { vmids: [121, 122, 999] }); // 999 is in the pool but not on this node
  stack.node.setPool('empty', { vmids: [] });
}, 120_000);
afterAll(async () => {
  await stack?.cleanup();
});

test('user.cfg has the pool lines as PVE writes them', () => {
  const text = fs.readFileSync(path.join(stack.node.root, 'etc/pve/user.cfg'), 'utf8');
  expect(text.split('\n').filter((l) => l.startsWith('pool:'))).toEqual(['pool:empty::::', 'pool:prod::121,122,999::']);
});

test('usage errors name the problem plainly and back up nothing', async () => {
  for (const [args, problem] of [
    [['121', '121'], 'VM 121 is named more than once'],
    [['121', '--all'], 'VM ids and --all cannot be combined: give one of them'],
    [['--all', '--pool', 'prod'], '--all and --pool cannot be combined: give one of them'],
    [[], 'name the VMs to back up: VM ids, --all or --pool NAME'],
  ] as const) {
    const human = await cli(['backup', ...args]);
    expect(human.code).toBe(2);
    expect(human.stderr.split('\n')[0]).toBe(`pve-cbt: ${problem}`);
    expect(human.stderr).not.toMatch(/payload|must NOT|items ##/);
    const json = await cli(['backup', ...args, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_CLI_USAGE', message: problem } });
  }
  const mode = await cli(['backup', '121', '--mode', 'snapshot']);
  expect(mode.code).toBe(2);
  expect(mode.stderr).toMatch(/Allowed choices are auto, full/);
  expect(await listIds()).toEqual([]);
});

test('--pool: the pool members on this node, one entry each; an unknown or empty pool is an error', async () => {
  const r = await backup(['--pool', 'prod'], [121, 122]);
  expect(r.code).toBe(0);
  expect(r.env.ok).toBe(true);
  expect(r.env.backups!.map((b) => [b.vmid, b.ok, b.disks![0].mode])).toEqual([[121, true, 'full'], [122, true, 'full']]);
  expect(r.env.disks!).toEqual(r.env.backups!.flatMap((b) => b.disks!.map((d) => ({ vmid: b.vmid, ...d }))));
  for (const [pool, reason] of [['nosuch', /no pool 'nosuch' in .*user\.cfg/], ['empty', /the pool has no VM/]] as const) {
    const bad = await cli(['backup', '--pool', pool, '--json']);
    expect(bad.code).toBe(1);
    const env = JSON.parse(bad.stdout) as Envelope;
    expect(env).toMatchObject({ ok: false, error: { code: 'CBT_BACKUP_SELECTION_EMPTY' } });
    expect(env.error!.message).toMatch(reason);
  }
});

test('one VM has the same shape as many; the text ends with the backup id as PBS writes it', async () => {
  await vms.get(121)!.write('scsi0', { pattern: 0x5c, offset: 3 * MiB, length: 64 * 1024 });
  const one = await backup(['121'], [121]);
  expect(one.code).toBe(0);
  expect(one.env).toEqual({
    ok: true,
    backups: [expect.objectContaining({ vmid: 121, ok: true, id: expect.stringMatching(PBS_ID) })],
    // every disk of every VM at the top level too, with its VM (the peers bench reads `.disks`)
    disks: [{ vmid: 121, ...one.env.backups![0].disks![0] }],
  });
  expect(one.env.backups![0].disks![0].mode).toBe('incremental');
  const text = await cli(['backup', '122']);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/^VM 122: backup vm\/122\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n/);
  expect(text.stdout).not.toMatch(/T\d\d_\d\d_\d\dZ/);
});

test('--mode full: every disk read in full, the reason recorded in the manifest; the next backup is incremental again', async () => {
  await vms.get(121)!.write('scsi0', { pattern: 0x6d, offset: 5 * MiB, length: 64 * 1024 });
  const full = await backup(['121', '--mode', 'full'], [121]);
  expect(full.code).toBe(0);
  const d = full.env.backups![0].disks![0];
  expect(d.mode).toBe('full');
  expect(d.reason).toMatch(/^forced-full: full backup requested \(--mode full\); otherwise incremental \(bitmap-valid\)$/);
  const shown = JSON.parse((await cli(['show', full.env.backups![0].id!, '--json'])).stdout) as { disks: { mode: string; reason: string }[] };
  expect(shown.disks[0]).toMatchObject({ mode: 'full', reason: d.reason });
  await vms.get(121)!.write('scsi0', { pattern: 0x6e, offset: 6 * MiB, length: 64 * 1024 });
  const next = await backup(['121'], [121]);
  expect(next.env.backups![0].disks![0].mode).toBe('incremental');
});

test('forget the newest backup of a disk: the next backup is a full-compare (its bitmap went with it), byte-exact', async () => {
  const before = (await listIds()).filter((id) => id.startsWith('vm/121/'));
  const newest = before[before.length - 1];
  const forgot = await cli(['forget', newest]);
  expect([forgot.code, forgot.stdout]).toEqual([0, `removed backup ${newest}; its data is freed by the next 'pve-cbt gc'\n`]);
  expect(await listIds()).not.toContain(newest);
  await vms.get(121)!.write('scsi0', { pattern: 0x7f, offset: 2 * MiB, length: 64 * 1024 });
  const next = await backup(['121'], [121]);
  expect(next.code).toBe(0);
  expect(next.env.backups![0].disks![0]).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^ledger-mismatch: /) });
});

test('--all: every VM of the node, running or stopped', async () => {
  const r = await backup(['--all'], [121, 122, 123]);
  expect(r.code).toBe(0);
  expect(r.env.backups!.map((b) => [b.vmid, b.ok])).toEqual([[121, true], [122, true], [123, true]]);
});

test('the only VM fails: exit 1, the error for people, and for scripts the same data shape with the error beside it', async () => {
  const human = await cli(['backup', '777']);
  expect(human.code).toBe(1);
  expect(human.stdout).toBe('');
  expect(human.stderr).toMatch(/^pve-cbt: .*777/);
  expect(human.stderr).not.toMatch(/ B in \d+s/);
  const json = await cli(['backup', '777', '--json']);
  expect(json.code).toBe(1);
  const env = JSON.parse(json.stdout) as Envelope;
  expect(env.ok).toBe(false);
  expect(env.backups!).toEqual([{ vmid: 777, ok: false, error: expect.objectContaining({ code: env.error!.code }) }]);
  const partial = await backup(['122', '777'], [122]);
  expect(partial.code).toBe(5);
  expect(partial.env.ok).toBe(false);
  expect(partial.env.error).toBeUndefined();
  expect(partial.env.backups!.map((b) => [b.vmid, b.ok])).toEqual([[122, true], [777, false]]);
});
