/**
 * An encrypted repository end to end: the config names a scrypt key file and its passphrase file,
 * the real daemon creates the repository encrypted at its first start and backs up a running VM
 * (full, then incremental) through its socket; every backup restores byte-exact through the daemon's
 * repository and through the compiled CLI; the CLI with a config lacking the key says
 * CBT_REPO_KEY_MISSING and restores nothing.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SimVm } from '../../daemon/sim/pve-node';
import { generateMasterKey, loadRepositoryKeys, sealKeyFile, writeNewKeyFile } from '../../daemon/repository/key-file';
import { REPOSITORY_MARKER } from '../../daemon/repository/repository';
import { addVm, CLI, createStack, firstDifference, MiB, requireDist, type Stack } from './e2e-harness';

const execFileP = promisify(execFile);

let stack: Stack;
let vm: SimVm;
const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-e2e-key-'));
const keyFile = path.join(keyDir, 'repository.key');
const passFile = path.join(keyDir, 'repository.pass');

async function cli(args: string[], config: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [CLI, ...args, '--config', config], { timeout: 120_000, maxBuffer: 64 * MiB, env: { ...process.env, PVE_CBT_ENCRYPTION_PASSWORD: '' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  requireDist();
  fs.writeFileSync(passFile, 'e2e passphrase\n', { mode: 0o600 });
  writeNewKeyFile(keyFile, sealKeyFile(generateMasterKey(), { kdf: 'scrypt', passphrase: 'e2e passphrase', scrypt: { n: 4096, r: 8, p: 1 } }));
  stack = await createStack({ config: { encryption: { keyFile, passphraseFile: passFile } } });
  await stack.startDaemon();
  vm = await addVm(stack, 131, 'qcow2');
  await vm.start();
}, 120_000);
afterAll(async () => {
  await stack?.cleanup();
  fs.rmSync(keyDir, { recursive: true, force: true });
});

test('the daemon creates the repository encrypted and backs up into it; the CLI restores with the key and refuses without', async () => {
  const marker = JSON.parse(fs.readFileSync(path.join(stack.config.repository, REPOSITORY_MARKER), 'utf8')) as { encryption: { keyFingerprint: string } };
  const keyJson = JSON.parse(fs.readFileSync(keyFile, 'utf8')) as { fingerprint: string };
  expect(marker.encryption).toEqual({ cipher: 'aes-256-gcm', keyFingerprint: keyJson.fingerprint });

  await vm.write('scsi0', { pattern: 0x3c, offset: 1 * MiB, length: 2 * MiB });
  const full = (await stack.backupAndCheck([vm])).get(131)!;
  expect(full.disks[0].mode).toBe('full');
  await vm.write('scsi0', { pattern: 0x4d, offset: 5 * MiB, length: 64 * 1024 });
  const ref = await vm.snapshotReference('scsi0');
  const inc = (await stack.backupAndCheck([vm])).get(131)!;
  expect(inc.disks[0].mode).toBe('incremental');

  const id = inc.id.replace(/_/g, ':');
  const target = path.join(stack.work, 'cli-restore.raw');
  const restored = await cli(['restore', id, '--disk', 'scsi0', '--to', target, '--json'], stack.configFile);
  expect(restored.code).toBe(0);
  expect(firstDifference(fs.readFileSync(target), fs.readFileSync(ref))).toBe(-1);
  fs.rmSync(target);

  const noKey = path.join(stack.work, 'config-nokey.json');
  const raw = JSON.parse(fs.readFileSync(stack.configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(noKey, JSON.stringify({ ...raw, encryption: {} }));
  const refused = await cli(['restore', id, '--disk', 'scsi0', '--to', target, '--json'], noKey);
  expect(refused.code).toBe(1);
  expect(JSON.parse(refused.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_REPO_KEY_MISSING' } });
  expect(fs.existsSync(target)).toBe(false);
  const human = await cli(['list'], noKey);
  expect(human.stderr.split('\n')[0]).toMatch(/^pve-cbt: repository .* is encrypted \(key fingerprint [0-9a-f]{64}\) and no key was given/);

  // Neither the passphrase nor any key (wrapped, master or derived) reaches a log line.
  const keys = loadRepositoryKeys(keyFile, 'e2e passphrase');
  const secrets = ['e2e passphrase', (JSON.parse(fs.readFileSync(keyFile, 'utf8')) as { key: string }).key, ...[keys.blob, keys.id, keys.manifest, keys.config].map((k) => k.toString('hex'))];
  const logs = fs.readdirSync(stack.config.logDir).map((f) => fs.readFileSync(path.join(stack.config.logDir, f), 'utf8')).join('\n');
  expect(logs.length).toBeGreaterThan(0);
  for (const secret of secrets) expect(logs).not.toContain(secret);
});
