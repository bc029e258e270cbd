/**
 * `pve-cbt key …` through the real CLI in-process, and the local commands on an encrypted
 * repository named by the config's `encryption.keyFile`: list, verify and a byte-exact restore with
 * the key; the clear error codes without it, with another key and with a wrong passphrase.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';
import { loadRepositoryKeys } from '../../../daemon/repository/key-file';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, tempDir } from '../repository/repo-test-helpers';

const CHUNK = 64 * 1024;

type Sink = PassThrough & { text(): string };
function sink(): Sink {
  const s = new PassThrough() as Sink;
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

let tmp: string;

async function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: path.join(tmp, 'config.json'), ...env } });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
async function json<T = Record<string, unknown>>(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const r = await run([...argv, '--json'], env);
  return { ...r, env: JSON.parse(r.stdout) as { ok: boolean; error?: { code: string; details: Record<string, unknown> } } & T };
}

function writeConfig(encryption: Record<string, string>): void {
  const config = { repository: path.join(tmp, 'repo'), stateDir: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), socketPath: path.join(tmp, 'run', 's.sock'), chunkSize: CHUNK, encryption };
  fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(config));
}

beforeEach(() => {
  tmp = tempDir();
  writeConfig({});
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('key create/show/export/import: one fingerprint throughout; refusals by code', async () => {
  const key = path.join(tmp, 'repo.key');
  const pass = { PVE_CBT_ENCRYPTION_PASSWORD: 'long passphrase' };
  const created = await json<{ path: string; kdf: string; fingerprint: string }>(['key', 'create', key], pass);
  expect(created.code).toBe(0);
  expect(created.env).toMatchObject({ ok: true, path: key, kdf: 'scrypt', fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/) });
  expect(fs.statSync(key).mode & 0o777).toBe(0o600);
  const fp = created.env.fingerprint;
  expect((await json(['key', 'show', key])).env).toMatchObject({ ok: true, kdf: 'scrypt', fingerprint: fp });
  expect((await run(['key', 'show', key])).stdout).toContain(fp.match(/../g)?.join(':'));

  const exported = await json<{ keyFile: unknown }>(['key', 'export', key]);
  expect(exported.env.keyFile).toEqual(JSON.parse(fs.readFileSync(key, 'utf8')));
  const paper = await run(['key', 'export', key, '--paperkey']);
  expect(paper.stdout).toContain('-----BEGIN PVE-CBT KEY FILE-----');
  const paperFile = path.join(tmp, 'paper.txt');
  fs.writeFileSync(paperFile, paper.stdout);
  const copy = path.join(tmp, 'copy.key');
  expect((await json(['key', 'import', paperFile, copy], { PVE_CBT_ENCRYPTION_PASSWORD: 'wrong' })).env.error?.code).toBe('CBT_KEY_PASSPHRASE_WRONG');
  expect(fs.existsSync(copy)).toBe(false);
  const passFile = path.join(tmp, 'pass');
  fs.writeFileSync(passFile, 'long passphrase\n');
  const imported = await json(['key', 'import', paperFile, copy, '--passphrase-file', passFile]);
  expect(imported.env).toMatchObject({ ok: true, fingerprint: fp });
  expect(loadRepositoryKeys(copy, 'long passphrase')).toEqual(loadRepositoryKeys(key, 'long passphrase'));

  const again = await json(['key', 'create', key], pass);
  expect(again.code).toBe(1);
  expect(again.env.error?.code).toBe('CBT_KEY_FILE_EXISTS');
  expect((await json(['key', 'create', path.join(tmp, 'nopass.key')])).env.error?.code).toBe('CBT_KEY_PASSPHRASE_MISSING');
  const none = await json<{ kdf: string }>(['key', 'create', '--kdf', 'none', path.join(tmp, 'none.key')]);
  expect(none.env).toMatchObject({ ok: true, kdf: 'none' });
  expect((await json(['key', 'show', path.join(tmp, 'absent.key')])).env.error?.code).toBe('CBT_KEY_FILE_UNREADABLE');
});

test('local commands on an encrypted repository: with the configured key they work; without, with another key or passphrase they say why', async () => {
  const key = path.join(tmp, 'repo.key');
  const pass = { PVE_CBT_ENCRYPTION_PASSWORD: 'pw' };
  expect((await run(['key', 'create', key], pass)).code).toBe(0);
  const img = path.join(tmp, 'disk.raw');
  fs.writeFileSync(img, seededBytes('cli-enc', 6 * CHUNK + 99));
  const repo = await Repository.open(path.join(tmp, 'repo'), { create: true, chunkSize: CHUNK, keys: loadRepositoryKeys(key, 'pw') });
  const m = await backupImage(repo, img, { vmid: 101 });
  const id = m.id.replace(/_/g, ':');

  writeConfig({ keyFile: key });
  expect((await json<{ backups: { id: string }[] }>(['list', '--all'], pass)).env.backups.map((b) => b.id)).toEqual([id]);
  expect((await json(['verify'], pass)).env).toMatchObject({ ok: true });
  const out = path.join(tmp, 'restored.raw');
  expect((await json(['restore', id, '--disk', 'scsi0', '--to', out], pass)).env).toMatchObject({ ok: true, bytes: 6 * CHUNK + 99 });
  expect(crypto.createHash('sha256').update(fs.readFileSync(out)).digest('hex')).toBe(crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex'));

  expect((await json(['list'], { PVE_CBT_ENCRYPTION_PASSWORD: 'not it' })).env.error?.code).toBe('CBT_KEY_PASSPHRASE_WRONG');
  expect((await json(['list'])).env.error?.code).toBe('CBT_KEY_PASSPHRASE_MISSING');
  const other = path.join(tmp, 'other.key');
  expect((await run(['key', 'create', '--kdf', 'none', other])).code).toBe(0);
  writeConfig({ keyFile: other });
  expect((await json(['list'])).env.error?.code).toBe('CBT_REPO_KEY_WRONG');
  writeConfig({});
  const missing = await json(['restore', id, '--disk', 'scsi0', '--to', path.join(tmp, 'never.raw')]);
  expect(missing.env.error?.code).toBe('CBT_REPO_KEY_MISSING');
  expect(fs.existsSync(path.join(tmp, 'never.raw'))).toBe(false);
});
