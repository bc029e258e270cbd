/**
 * The local commands (list, show, verify, prune, forget, gc, restore) through the real CLI in-process,
 * on a real repository and catalog in a temporary directory: the JSON envelope and each command's
 * documented `data` shape, ids printed as PBS writes them, times in ISO 8601, no internal text
 * (0 B progress lines, byte units for counts), restores byte for byte, `restore --to -` refused on
 * a terminal (also a real one, through script(1)), and read-only commands that create nothing.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ExitCode } from '../../../daemon/cli/exit-codes';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, tempDir } from '../repository/repo-test-helpers';

const CHUNK = 64 * 1024;
const SIZE = 8 * CHUNK;
const T1 = new Date('2026-11-25T02:00:03Z');
const T2 = new Date('2026-11-26T02:00:03Z');
const T3 = new Date('2026-11-26T03:00:00Z');
const ID1 = 'vm/101/2026-11-25T02:00:03Z';
const ID2 = 'vm/101/2026-11-26T02:00:03Z';
const ID3 = 'vm/102/2026-11-26T03:00:00Z';
const PBS_ID = /^vm\/\d+\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

type Sink = PassThrough & { text(): string; bytes(): Buffer; isTTY?: boolean };
function sink(isTTY = false): Sink {
  const s = new PassThrough() as Sink;
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.bytes = () => Buffer.concat(chunks);
  s.text = () => s.bytes().toString('utf8');
  if (isTTY) s.isTTY = true;
  return s;
}

let tmp: string;
let configFile: string;
let images: { a1: string; a2: string; b: string };

async function run(argv: string[], opts: { stdoutTTY?: boolean; config?: string } = {}) {
  const stdout = sink(opts.stdoutTTY);
  const stderr = sink();
  const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: opts.config ?? configFile } });
  return { code, stdout: stdout.text(), raw: stdout.bytes(), stderr: stderr.text() };
}
async function json<T = Record<string, unknown>>(argv: string[]) {
  const r = await run([...argv, '--json']);
  return { ...r, env: JSON.parse(r.stdout) as { ok: boolean; error?: { code: string; message: string; details: Record<string, unknown> } } & T };
}

beforeEach(async () => {
  tmp = tempDir();
  const config = { repository: path.join(tmp, 'repo'), stateDir: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), socketPath: path.join(tmp, 'run', 's.sock'), chunkSize: CHUNK };
  configFile = path.join(tmp, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  images = { a1: path.join(tmp, 'a1.raw'), a2: path.join(tmp, 'a2.raw'), b: path.join(tmp, 'b.raw') };
  const a1 = seededBytes('a1', SIZE);
  const a2 = Buffer.from(a1);
  seededBytes('a2', CHUNK).copy(a2, 3 * CHUNK);
  fs.writeFileSync(images.a1, a1);
  fs.writeFileSync(images.a2, a2);
  fs.writeFileSync(images.b, seededBytes('b', SIZE));
  const repo = await Repository.open(config.repository, { create: true, chunkSize: CHUNK });
  const m1 = await backupImage(repo, images.a1, { vmid: 101, time: T1 });
  await backupImage(repo, images.a2, { vmid: 101, time: T2, base: { backupId: m1.id, disk: 'scsi0' }, parent: m1.id, dirty: [3] });
  await backupImage(repo, images.b, { vmid: 102, time: T3 });
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('list --all: {ok, backups} for all, one VM or none; PBS ids and ISO times, also in the table', async () => {
  const all = await json<{ backups: { id: string; vmid: number; time: string; parent: string | null; disks: unknown[]; verifyState: string }[] }>(['list', '--all']);
  expect(all.code).toBe(0);
  expect(all.env.ok).toBe(true);
  expect(all.env.backups.map((b) => [b.id, b.vmid, b.time, b.parent])).toEqual([
    [ID1, 101, '2026-11-25T02:00:03Z', null],
    [ID2, 101, '2026-11-26T02:00:03Z', ID1],
    [ID3, 102, '2026-11-26T03:00:00Z', null],
  ]);
  const one = await json<{ backups: { id: string }[] }>(['list', '102']);
  expect(one.env).toEqual({ ok: true, backups: [expect.objectContaining({ id: ID3 })] });
  const none = await json(['list', '999']);
  expect(none.env).toEqual({ ok: true, backups: [] }); // never a bare []
  const text = await run(['list', '--all']);
  expect(text.stdout).toContain(`${ID1}  101   2026-11-25T02:00:03Z`);
  expect(text.stdout).not.toMatch(/T\d\d_\d\d_\d\dZ|[AP]M\b|\d+\/\d+\/\d{4}/);
});

test('list without a VMID: one row per VM (count, first, last, bytes), the same numbers as its backups; kept after forget', async () => {
  type Group = { vmid: number; backups: number; first: string; last: string; lastId: string; bytesRead: number; bytesStored: number };
  const all = (await json<{ backups: { id: string; vmid: number; disks: { bytesRead: number; bytesStored: number }[] }[] }>(['list', '--all'])).env.backups;
  const sum = (vmid: number, k: 'bytesRead' | 'bytesStored') => all.filter((b) => b.vmid === vmid).reduce((n, b) => n + b.disks.reduce((m, d) => m + d[k], 0), 0);
  const groups = await json<{ groups: Group[] }>(['list']);
  expect(groups.code).toBe(0);
  expect(groups.env).toEqual({
    ok: true,
    groups: [
      { vmid: 101, backups: 2, first: '2026-11-25T02:00:03Z', last: '2026-11-26T02:00:03Z', lastId: ID2, bytesRead: sum(101, 'bytesRead'), bytesStored: sum(101, 'bytesStored') },
      { vmid: 102, backups: 1, first: '2026-11-26T03:00:00Z', last: '2026-11-26T03:00:00Z', lastId: ID3, bytesRead: sum(102, 'bytesRead'), bytesStored: sum(102, 'bytesStored') },
    ],
  });
  expect(sum(101, 'bytesStored')).toBeGreaterThan(0);
  const text = (await run(['list'])).stdout.split('\n');
  expect(text[0]).toMatch(/^VMID\s+BACKUPS\s+FIRST\s+LAST\s+READ\s+STORED$/);
  expect(text[1]).toMatch(new RegExp(`^101\\s+2\\s+2026-11-25T02:00:03Z\\s+${ID2}\\s`));
  // Forgetting the newest of VM 101 moves its group's last backup back and takes its bytes off.
  expect((await json(['forget', ID2])).code).toBe(0);
  const after = (await json<{ groups: Group[] }>(['list'])).env.groups;
  expect(after[0]).toMatchObject({ vmid: 101, backups: 1, first: '2026-11-25T02:00:03Z', last: '2026-11-25T02:00:03Z', lastId: ID1 });
  const left = (await json<{ backups: { disks: { bytesStored: number }[] }[] }>(['list', '101'])).env.backups;
  expect(after[0].bytesStored).toBe(left.reduce((n, b) => n + b.disks.reduce((m, d) => m + d.bytesStored, 0), 0));
  expect((await json(['forget', ID3])).code).toBe(0);
  expect((await json<{ groups: Group[] }>(['list'])).env.groups.map((g) => g.vmid)).toEqual([101]);
});

test('list skips the catalog quick_check; a damaged page it reads sets the catalog aside, and the answer comes from the repository', async () => {
  expect((await json(['prune', '--vm', '101', '--keep-last', '5'])).code).toBe(0); // creates the catalog file
  const before = await json<{ backups: { id: string }[] }>(['list', '--all']);
  expect(before.env.backups.map((b) => b.id)).toEqual([ID1, ID2, ID3]);
  const stateDir = path.join(tmp, 'state');
  const file = path.join(stateDir, 'catalog.sqlite');
  // The closed catalog has no WAL left; overwrite the root page of the backups table.
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(file, { readonly: true });
  const root = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'backups'").pluck().get() as number;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.close();
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, (root - 1) * pageSize);
  fs.closeSync(fd);
  const after = await json<{ backups: { id: string }[] }>(['list', '--all']);
  expect(after.code).toBe(0);
  expect(after.env).toEqual(before.env);
  expect(fs.readdirSync(stateDir).some((f) => f.startsWith('catalog.sqlite.corrupt-'))).toBe(true);
});

test('show: the manifest with PBS ids, ISO time and verify state; the folder form is still read', async () => {
  const shown = await json<{ id: string; parent: string; time: string; vmid: number; disks: { name: string }[]; verify: unknown }>(['show', ID2]);
  expect(shown.env.ok).toBe(true);
  expect(shown.env).toMatchObject({ id: ID2, parent: ID1, time: '2026-11-26T02:00:03Z', vmid: 101, verify: null, disks: [expect.objectContaining({ name: 'scsi0' })] });
  expect((await json(['show', 'vm/101/2026-11-26T02_00_03Z'])).env).toEqual(shown.env);
  const text = await run(['show', ID2]);
  expect(text.stdout.split('\n').slice(0, 2)).toEqual([`backup ${ID2} of VM 101 at 2026-11-26T02:00:03Z`, expect.stringMatching(new RegExp(`^parent: ${ID1} .*verify: never$`))]);
  await run(['verify', ID2]);
  const after = await json<{ verify: { state: string; time: string } }>(['show', ID2]);
  expect(after.env.verify).toMatchObject({ state: 'ok', time: expect.stringMatching(ISO) });
  expect((await run(['show', ID2])).stdout).toMatch(/verify: ok \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/m);
});

test('verify: {ok, backups: [{id, ok, problems}], ...}; a bad chunk is exit 5 with ok false and the data', async () => {
  const good = await json<{ ok: boolean; backups: { id: string; ok: boolean }[]; chunksChecked: number; pagesChecked: number; durationMs: number }>(['verify']);
  expect(good.code).toBe(0);
  expect(good.env.ok).toBe(true);
  expect(good.env).toMatchObject({ ok: true, chunksChecked: expect.any(Number), pagesChecked: expect.any(Number), durationMs: expect.any(Number) });
  expect(good.env.backups.map((b) => b.id)).toEqual([ID1, ID2, ID3]);
  // Format 2: a byte in the middle of a pack file lies inside one of its blobs.
  const packDir = path.join(tmp, 'repo', '.packs');
  const files = execFileSync('find', [packDir, '-type', 'f', '-name', '*.pack'], { encoding: 'utf8' }).trim().split('\n');
  const victim = files[0];
  const bytes = fs.readFileSync(victim);
  bytes[bytes.length >> 1] ^= 0x5a;
  fs.writeFileSync(victim, bytes);
  const bad = await json<{ ok: boolean; backups: { id: string; ok: boolean; problems: { backupId: string }[] }[] }>(['verify']);
  expect(bad.code).toBe(ExitCode.Partial);
  expect(bad.env.ok).toBe(false);
  expect(bad.env.error).toBeUndefined();
  const problems = bad.env.backups.flatMap((b) => b.problems);
  expect(problems.length).toBeGreaterThan(0);
  for (const p of problems) expect(p.backupId).toMatch(PBS_ID);
});

test('prune: {dryRun, removed, backups: [{id, keep, reason}]} with PBS ids', async () => {
  const dry = await json(['prune', '--vm', '101', '--keep-last', '1', '--dry-run']);
  expect(dry.env).toEqual({ ok: true, dryRun: true, removed: 1, backups: [{ id: ID2, keep: true, reason: 'keep-last' }, { id: ID1, keep: false, reason: 'remove' }] });
  const text = await run(['prune', '--vm', '101', '--keep-last', '1', '--dry-run']);
  expect(text.stdout).toContain(`${ID1}  would remove  remove`);
  expect((await json<{ backups: unknown[] }>(['list', '101'])).env.backups).toHaveLength(2);
});

test('forget: removes one backup, the others restore byte for byte; gc after it counts no bytes in its progress', async () => {
  const forgot = await json(['forget', ID1]);
  expect(forgot.code).toBe(0);
  expect(forgot.env).toEqual({ ok: true, id: ID1, vmid: 101, removed: true });
  expect((await json<{ backups: { id: string }[] }>(['list', '--all'])).env.backups.map((b) => b.id)).toEqual([ID2, ID3]);
  // The incremental cloned its index from the forgotten backup: it still restores by itself.
  const target = path.join(tmp, 'restored.raw');
  const restored = await json(['restore', ID2, '--disk', 'scsi0', '--to', target]);
  expect(restored.env).toEqual({ ok: true, backup: ID2, disk: 'scsi0', to: target, format: 'raw', bytes: SIZE });
  expect(fs.readFileSync(target).equals(fs.readFileSync(images.a2))).toBe(true);

  const gc = await run(['gc']);
  expect(gc.code).toBe(0);
  expect(gc.stdout).toMatch(/^removed \d+ chunks \(.*\), \d+ pages \(.*\), 0 partial backups in \d+s\n$/);
  expect(gc.stderr).not.toMatch(/\d B in \d|B\/s/); // counts are not bytes
  const gcJson = await json(['gc']);
  expect(gcJson.env.ok).toBe(true);
  expect(Object.keys(gcJson.env).sort()).toEqual(
    ['ok', 'chunkBytesRemoved', 'chunksMarked', 'chunksRemoved', 'cutoff', 'durationMs', 'manifests', 'pageBytesRemoved', 'pagesMarked', 'pagesRemoved', 'partialsRemoved', 'tempFilesRemoved', 'unreadablePages', 'packsRemoved', 'packBytesRemoved', 'repackCandidates', 'packsRepacked', 'packsWritten', 'blobsCopied', 'bytesReclaimed', 'repackRefused'].sort(),
  );
  fs.rmSync(target);
  expect((await run(['restore', ID2, '--disk', 'scsi0', '--to', target])).code).toBe(0);
  expect(fs.readFileSync(target).equals(fs.readFileSync(images.a2))).toBe(true);

  const again = await json(['forget', ID1]);
  expect(again.code).toBe(ExitCode.Failure);
  expect(again.env).toMatchObject({ ok: false, error: { code: 'CBT_REPO_BACKUP_NOT_FOUND', message: `backup ${ID1} not found (no committed manifest)` } });
  expect((await run(['forget', 'vm/101/yesterday'])).code).toBe(ExitCode.Usage);
});

test('restore of a disk the backup does not have: the error first and only, naming the disks it has', async () => {
  const target = path.join(tmp, 'x.raw');
  const r = await run(['restore', ID1, '--disk', 'scsi1', '--to', target]);
  expect(r.code).toBe(ExitCode.Failure);
  expect(r.stderr.split('\n')).toEqual([`pve-cbt: backup ${ID1} has no disk scsi1`, `  hint: this backup has scsi0 ('pve-cbt show ${ID1}')`, '  (CBT_REPO_DISK_NOT_FOUND)', '']);
  expect(fs.existsSync(target)).toBe(false);
  const j = await json(['restore', ID1, '--disk', 'scsi1', '--to', target]);
  expect(j.env).toMatchObject({ ok: false, error: { code: 'CBT_REPO_DISK_NOT_FOUND', details: { backupId: ID1, disk: 'scsi1', has: ['scsi0'] } } });
});

test('restore --to -: raw bytes into a pipe, refused (exit 2, nothing written) onto a terminal', async () => {
  const piped = await run(['restore', ID3, '--disk', 'scsi0', '--to', '-']);
  expect(piped.code).toBe(0);
  expect(piped.raw.equals(fs.readFileSync(images.b))).toBe(true);
  const tty = await run(['restore', ID3, '--disk', 'scsi0', '--to', '-'], { stdoutTTY: true });
  expect(tty.code).toBe(ExitCode.Usage);
  expect(tty.raw.length).toBe(0);
  expect(tty.stderr).toMatch(/^pve-cbt: restore --to - would write a raw disk image to the terminal\n  hint: pipe it .*\n  \(CBT_CLI_STDOUT_TTY\)\n$/);
});

test('restore --to - in a real terminal (script(1) gives the CLI a pty): refused, no disk bytes on it', () => {
  const main = path.resolve(__dirname, '..', '..', '..', 'dist', 'daemon', 'cli', 'main.js');
  const cmd = `PVE_CBT_CONFIG=${configFile} ${process.execPath} ${main} restore ${ID3} --disk scsi0 --to -; echo "exit=$?"`;
  const out = execFileSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'latin1', timeout: 60_000 });
  expect(out).toMatch(/would write a raw disk image to the terminal/);
  expect(out).toMatch(/exit=2/);
  expect(out.length).toBeLessThan(2000); // the 512 KiB image did not go to the terminal
});

test('a config whose repository, stateDir and logDir do not exist: every local command refuses, nothing is created', async () => {
  // Parents exist (a missing parent is already refused as config, exit 3): only the leaves are typos.
  const typo = (leaf: string) => path.join(tmp, `typo-${leaf}`);
  const cfg = path.join(tmp, 'typo.json');
  fs.writeFileSync(cfg, JSON.stringify({ repository: typo('repo'), stateDir: typo('state'), logDir: typo('log'), socketPath: path.join(tmp, 'run', 's.sock') }));
  const created = () => ['repo', 'state', 'log'].filter((l) => fs.existsSync(typo(l)));
  for (const argv of [['list'], ['show', ID1], ['verify'], ['restore', ID1, '--disk', 'scsi0', '--to', path.join(tmp, 'r.raw')], ['prune', '--keep-last', '1'], ['forget', ID1], ['gc']]) {
    const r = await run([...argv, '--json'], { config: cfg });
    expect([argv[0], r.code]).toEqual([argv[0], ExitCode.Failure]);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_CLI_NO_REPOSITORY', details: { repository: typo('repo'), configFile: cfg } } });
    expect(created()).toEqual([]);
  }
  const human = await run(['list'], { config: cfg });
  expect(human.stderr.split('\n')[0]).toBe(`pve-cbt: no pve-cbt repository at ${typo('repo')}`);
});

test('read-only commands on a repository of a node without state: they answer and create no stateDir, catalog or logDir', async () => {
  const cfg = path.join(tmp, 'fresh.json');
  const fresh = path.join(tmp, 'fresh');
  fs.writeFileSync(cfg, JSON.stringify({ repository: path.join(tmp, 'repo'), stateDir: path.join(fresh, 'state'), logDir: path.join(fresh, 'log'), socketPath: path.join(tmp, 'run', 's.sock') }));
  const target = path.join(tmp, 'ro.raw');
  for (const argv of [['list'], ['show', ID1], ['verify', ID1], ['restore', ID1, '--disk', 'scsi0', '--to', target]]) {
    const r = await run(argv, { config: cfg });
    expect([argv[0], r.code]).toEqual([argv[0], 0]);
    expect(r.stderr).not.toMatch(/pve-cbt:/); // progress lines only, no warning or error
  }
  expect(fs.existsSync(fresh)).toBe(false);
  expect(fs.readFileSync(target).equals(fs.readFileSync(images.a1))).toBe(true);
});
