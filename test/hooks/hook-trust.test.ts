/**
 * Issue 13, points 9 and 14, on real hook processes: what a hook run as root trusts (config,
 * hook-chain.json, spool, chained script: only files nobody but root can have written) and its
 * overall time bound (FIFOs in place of those files never hang it).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installHooks } from '../../daemon/hook-admin/hook-admin';
import { startIpcServer, type IpcServer } from '../../daemon/ipc/ipc-server';
import { LIFECYCLE_EVENT_SCHEMA } from '../../daemon/ipc/lifecycle-event-handler';
import { chainFilePath } from '../../hooks/hook-chain';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { buildHooks } from './build-hooks';

interface Run {
  status: number | null;
  stderr: string;
  ms: number;
}

/** Bound on a hook run in these tests: far above the hook's own, so a hang shows as a failure, not a stuck suite. */
const KILL_AFTER_MS = 10_000;

/** Runs a hook as Proxmox does; `wrap` is a command line put in front (e.g. unshare). */
function runHook(script: string, argv: string[], env: Record<string, string>, wrap: string[] = []): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = [...wrap, script, ...argv];
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(killer);
      resolve({ status, stderr, ms: Date.now() - t0 });
    });
  });
}

describe('what a hook trusts, and its time bound', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let configPath: string;
  let guestHook: string;
  let marker: string;
  let script: string;
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  let received: LifecycleEvent[];
  let server: IpcServer | undefined;

  const writeConfig = (extra: Record<string, unknown> = {}): void =>
    fs.writeFileSync(configPath, JSON.stringify({ socketPath, stateDir, hookTimeoutMs: 1000, ...extra }), { mode: 0o600 });
  const writeChain = (target: string): void =>
    fs.writeFileSync(chainFilePath(stateDir), JSON.stringify({ guests: { '100': { volid: 'local:snippets/old.sh', path: target } } }), { mode: 0o600 });
  const serve = async (): Promise<void> => {
    server = await startIpcServer({
      socketPath,
      handlers: { 'lifecycle-event': { schema: LIFECYCLE_EVENT_SCHEMA, handle: async (ev: LifecycleEvent) => (received.push(ev), { duplicate: false }) } },
    });
  };
  const spool = (): string => path.join(stateDir, 'spool', 'events.jsonl');

  beforeAll(() => {
    const distDir = buildHooks();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    stateDir = path.join(dir, 'state');
    socketPath = path.join(dir, 'run', 'pve-cbt.sock');
    configPath = path.join(dir, 'config.json');
    writeConfig();
    const root = path.join(dir, 'root');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    guestHook = installHooks({ root, nodePath: process.execPath, distDir, stateDir, configPath }).guestHook;
    marker = path.join(dir, 'chained-ran');
    script = path.join(dir, 'old-hook.sh');
  }, 120_000);

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  beforeEach(() => {
    received = [];
    writeConfig();
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.mkdirSync(stateDir, { mode: 0o700 });
    fs.rmSync(marker, { force: true });
    fs.writeFileSync(script, `#!/bin/sh\necho "$@" > '${marker}'\nexit 0\n`, { mode: 0o755 });
    fs.chmodSync(script, 0o755);
  });

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  test('a trusted chain runs its trusted script (the baseline for the cases below)', async () => {
    writeChain(script);
    await serve();
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(fs.readFileSync(marker, 'utf8')).toBe('100 pre-start\n');
    expect(received.map((e) => e.phase)).toEqual(['pre-start']);
  });

  test.each<[string, () => void]>([
    ['owned by uid 65534', () => fs.chownSync(chainFilePath(stateDir), 65534, 65534)],
    ['mode 0666', () => fs.chmodSync(chainFilePath(stateDir), 0o666)],
    ['mode 0620', () => fs.chmodSync(chainFilePath(stateDir), 0o620)],
    ['a symlink', () => {
      fs.renameSync(chainFilePath(stateDir), path.join(dir, 'elsewhere.json'));
      fs.symlinkSync(path.join(dir, 'elsewhere.json'), chainFilePath(stateDir));
    }],
    ['in a state dir others can write (0777)', () => fs.chmodSync(stateDir, 0o777)],
    ['in a state dir owned by uid 65534', () => fs.chownSync(stateDir, 65534, 65534)],
  ])('a hook-chain.json %s is ignored: its script never runs, the VM start goes on, the event is delivered', async (_name, plant) => {
    writeChain(script);
    plant();
    await serve();
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/chain file ignored, chained hook not run: CBT_HOOK_UNTRUSTED/);
    expect(fs.existsSync(marker)).toBe(false);
    expect(received.map((e) => e.phase)).toEqual(['pre-start']);
  });

  test.each<[string, () => void]>([
    ['owned by uid 65534', () => fs.chownSync(script, 65534, 65534)],
    ['mode 0777', () => fs.chmodSync(script, 0o777)],
    ['in a directory others can write (0777, not sticky)', () => {
      const open = path.join(dir, 'open');
      fs.mkdirSync(open, { recursive: true });
      fs.chmodSync(open, 0o777);
      fs.copyFileSync(script, path.join(open, 'old-hook.sh'));
      fs.chmodSync(path.join(open, 'old-hook.sh'), 0o755);
      writeChain(path.join(open, 'old-hook.sh'));
    }],
    ['a symlink to a script owned by uid 65534', () => {
      const theirs = path.join(dir, 'theirs.sh');
      fs.copyFileSync(script, theirs);
      fs.chmodSync(theirs, 0o755);
      fs.chownSync(theirs, 65534, 65534);
      const link = path.join(dir, 'link.sh');
      fs.rmSync(link, { force: true });
      fs.symlinkSync(theirs, link);
      writeChain(link);
    }],
  ])('a chained script %s is not run, and the hook does not fail', async (_name, plant) => {
    writeChain(script);
    plant();
    await serve();
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/chained hook .* not run: CBT_HOOK_UNTRUSTED/);
    expect(fs.existsSync(marker)).toBe(false);
    expect(received.map((e) => e.phase)).toEqual(['pre-start']);
  });

  test('a state dir others can write gets no spool line: the event is reported lost instead', async () => {
    fs.chmodSync(stateDir, 0o777);
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/event lost: .*CBT_IPC_UNAVAILABLE.*spool failed: CBT_HOOK_UNTRUSTED/);
    expect(fs.existsSync(path.join(stateDir, 'spool'))).toBe(true); // created 0700 by the hook itself
    expect(fs.existsSync(spool())).toBe(false);
  });

  test('a FIFO in place of hook-chain.json: pre-start exits 0 within the bound, the event is delivered', async () => {
    execFileSync('mkfifo', [chainFilePath(stateDir)]);
    await serve();
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(0);
    expect(r.ms).toBeLessThan(3000);
    expect(r.stderr).toMatch(/chain file ignored, chained hook not run: CBT_HOOK_NOT_REGULAR_FILE/);
    expect(received.map((e) => e.phase)).toEqual(['pre-start']);
  });

  test('a FIFO in place of the spool, daemon down: pre-start exits 0 within the bound, the event is reported lost', async () => {
    fs.mkdirSync(path.dirname(spool()), { mode: 0o700 });
    execFileSync('mkfifo', ['-m', '0600', spool()]);
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(0);
    expect(r.ms).toBeLessThan(3000);
    expect(r.stderr).toMatch(/event lost: .*spool failed: CBT_HOOK_NOT_REGULAR_FILE/);
    expect(fs.lstatSync(spool()).isFIFO()).toBe(true);
  });

  describe('with the config unusable the hook falls back to the default paths', () => {
    // Those are the host's /run/pve-cbt and /var/lib/pve-cbt: the hook runs in a private mount
    // namespace with fresh tmpfs there, so the test neither reaches nor writes the host's.
    const isolated = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && exec "$0" "$@"'];

    test('a FIFO in place of the config: pre-start exits 0 within the bound, the event is spooled at the default place', async () => {
      fs.rmSync(configPath);
      execFileSync('mkfifo', ['-m', '0600', configPath]);
      try {
        const r = await runHook(guestHook, ['100', 'pre-start'], env, isolated);
        expect(r.status).toBe(0);
        expect(r.ms).toBeLessThan(3000);
        expect(r.stderr).toMatch(/config .* unreadable \(CBT_HOOK_NOT_REGULAR_FILE: .*\), using defaults/);
        expect(r.stderr).toMatch(/event spooled to \/var\/lib\/pve-cbt\/spool\/events.jsonl/);
      } finally {
        fs.rmSync(configPath);
      }
    });

    test('a config owned by uid 65534 is not followed: its socket gets nothing, its stateDir no spool', async () => {
      const theirState = path.join(dir, 'their-state');
      fs.mkdirSync(theirState, { recursive: true });
      writeConfig({ stateDir: theirState });
      fs.chownSync(configPath, 65534, 65534);
      await serve(); // at the socket the planted config names
      const r = await runHook(guestHook, ['100', 'pre-start'], env, isolated);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/config .* unreadable \(CBT_HOOK_UNTRUSTED: .*owned by uid 65534/);
      expect(received).toEqual([]);
      expect(fs.readdirSync(theirState)).toEqual([]);
      expect(r.stderr).toMatch(/event spooled to \/var\/lib\/pve-cbt\/spool\/events.jsonl/);
    });
  });
});
