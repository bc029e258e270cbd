import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { migration as ledgerMigration } from '../../daemon/catalog/migrations/002-ledger';
import { openCatalog } from '../../daemon/catalog/open-catalog';
import { installHooks } from '../../daemon/hook-admin/hook-admin';
import { startIpcServer, type IpcServer } from '../../daemon/ipc/ipc-server';
import { LIFECYCLE_EVENT_SCHEMA, lifecycleEventHandler } from '../../daemon/ipc/lifecycle-event-handler';
import { Ledger } from '../../daemon/ledger/ledger';
import { chainFilePath } from '../../hooks/hook-chain';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { buildHooks } from './build-hooks';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs an installed hook as Proxmox does: its own process, given argv and environment, no timeout. */
function runHook(script: string, argv: string[], env: Record<string, string>): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(script, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr, ms: Date.now() - t0 }));
  });
}

describe('hooks as real processes', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let configPath: string;
  let guestHook: string;
  let vzdumpHook: string;
  let env: Record<string, string>;
  let db: Database.Database;
  let ledger: Ledger;
  const spool = (): string => path.join(stateDir, 'spool', 'events.jsonl');
  const spooled = (): LifecycleEvent[] =>
    fs.existsSync(spool()) ? fs.readFileSync(spool(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LifecycleEvent) : [];
  const writeConfig = (extra: Record<string, unknown> = {}): void =>
    fs.writeFileSync(configPath, JSON.stringify({ socketPath, stateDir, hookTimeoutMs: 1000, ...extra }));
  const serve = (handle?: (ev: LifecycleEvent) => Promise<unknown>): Promise<IpcServer> =>
    startIpcServer({
      socketPath,
      handlers: {
        'lifecycle-event': handle
          ? { schema: LIFECYCLE_EVENT_SCHEMA, handle }
          : lifecycleEventHandler({ ledger, stateDir }),
      },
    });

  beforeAll(() => {
    const distDir = buildHooks();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    stateDir = path.join(dir, 'state');
    socketPath = path.join(dir, 'run', 'pve-cbt.sock');
    configPath = path.join(dir, 'config.json');
    writeConfig();
    const root = path.join(dir, 'root');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    const installed = installHooks({ root, nodePath: process.execPath, distDir, stateDir, configPath });
    guestHook = installed.guestHook;
    vzdumpHook = installed.vzdumpHook;
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    db = openCatalog(path.join(dir, 'catalog.sqlite'), [ledgerMigration]);
    ledger = new Ledger(db);
  }, 120_000);

  afterAll(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    writeConfig();
    fs.rmSync(chainFilePath(stateDir), { force: true });
  });

  test('a hook loads node-ipc and Node built-ins only: no ajv, winston or better-sqlite3', () => {
    const distDir = buildHooks();
    const script = `require(${JSON.stringify(path.join(distDir, 'hooks', 'run-hook.js'))});
      console.log(JSON.stringify(Object.keys(require.cache).map((f) => (f.match(/node_modules\\/((?:@[^/]+\\/)?[^/]+)/) || [])[1]).filter(Boolean)))`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect([...new Set(JSON.parse(r.stdout) as string[])].sort()).toEqual(['event-pubsub', 'js-message', 'js-queue', 'node-ipc']);
  });

  test('daemon down: exit 0 quickly, event spooled with a unique seq, one stderr line', async () => {
    const r = await runHook(guestHook, ['100', 'pre-stop'], env);
    expect(r.status).toBe(0);
    expect(r.ms).toBeLessThan(2000);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^pve-cbt guest hook 100 pre-stop: .*CBT_IPC_UNAVAILABLE.*event spooled/)]);
    expect(spooled()).toEqual([{ vmid: 100, phase: 'pre-stop', source: 'hookscript', time: expect.any(String), seq: expect.any(String) }]);
    expect(fs.statSync(spool()).mode & 0o777).toBe(0o600);
  });

  test('daemon hung: the hook gives up after hookTimeoutMs (whole run, start-up included) and spools', async () => {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    // Accepts and reads, never answers; reading lets it see the hook's disconnect so close() ends.
    const mute = net.createServer((s) => s.resume());
    await new Promise<void>((r) => mute.listen(socketPath, r));
    try {
      const r = await runHook(guestHook, ['100', 'post-stop'], env);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/CBT_IPC_TIMEOUT/);
      expect(r.ms).toBeLessThan(2500);
    } finally {
      await new Promise((r) => mute.close(r));
    }
    expect(spooled().map((e) => e.phase)).toEqual(['pre-stop', 'post-stop']);
  });

  test('daemon up: acknowledged live, after the spool was replayed in order; nothing spooled', async () => {
    const before = spooled().map((e) => e.seq);
    const server = await serve();
    try {
      const r = await runHook(guestHook, ['100', 'pre-start'], { ...env, PVE_MIGRATED_FROM: 'node2' });
      expect(r).toMatchObject({ status: 0, stderr: '' });
    } finally {
      await server.close();
    }
    expect(fs.existsSync(spool())).toBe(false);
    const evs = ledger.events(100);
    expect(evs.map((e) => e.phase)).toEqual(['pre-stop', 'post-stop', 'pre-start']);
    expect(evs.slice(0, 2).map((e) => e.seq)).toEqual(before);
    expect(evs[2]).toMatchObject({ source: 'hookscript', migratedFrom: 'node2' });
  });

  test('an event applied but acknowledged too late is spooled too, and replayed exactly once', async () => {
    // The event is applied at once, the acknowledgement held until the hook gave up and exited.
    let hookExited!: () => void;
    const exited = new Promise<void>((resolve) => (hookExited = resolve));
    const slow = await serve(async (ev) => {
      ledger.recordEvent(ev);
      await exited;
      return { duplicate: false };
    });
    let r: Run;
    try {
      r = await runHook(vzdumpHook, ['backup-start', 'snapshot', '101'], {});
    } finally {
      hookExited();
      await slow.close();
    }
    expect(r.status).toBe(0);
    expect(spooled()).toHaveLength(1);
    const n = ledger.events().length;
    const server = await serve();
    try {
      expect((await runHook(vzdumpHook, ['backup-end', 'snapshot', '101'], {})).status).toBe(0);
    } finally {
      await server.close();
    }
    expect(ledger.events(101).map((e) => e.phase)).toEqual(['backup-start', 'backup-end']);
    expect(ledger.events().length).toBe(n + 1);
    expect(ledger.isVzdumpBusy(101)).toBe(false);
  });

  test('vzdump job phases carry no vmid; the baked config path works without any environment', async () => {
    const server = await serve();
    try {
      for (const argv of [['job-start'], ['backup-start', 'stop', '102'], ['job-abort']]) {
        expect(await runHook(vzdumpHook, argv, {})).toMatchObject({ status: 0, stderr: '' });
      }
    } finally {
      await server.close();
    }
    const last = ledger.events(undefined, 3);
    expect(last.map((e) => [e.vmid, e.phase, e.mode])).toEqual([[null, 'job-start', null], [102, 'backup-start', 'stop'], [null, 'job-abort', null]]);
    expect(ledger.isVzdumpBusy(102)).toBe(false);
  });

  test.each([
    ['guest', [] as string[]],
    ['guest', ['abc', 'pre-start']],
    ['guest', ['100', 'pre-lunch']],
    ['vzdump', ['backup-start', 'stop']],
    ['vzdump', ['backup-start', 'turbo', '100']],
  ])('bad %s arguments %j: exit 0, one stderr line, nothing sent or spooled', async (kind, argv) => {
    const n = ledger.events().length;
    const r = await runHook(kind === 'guest' ? guestHook : vzdumpHook, argv, env);
    expect(r.status).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/no event sent$/)]);
    expect(spooled()).toEqual([]);
    expect(ledger.events().length).toBe(n);
  });

  test('a malformed config value is reported and replaced by its default', async () => {
    writeConfig({ hookTimeoutMs: 'soon' });
    const r = await runHook(guestHook, ['100', 'post-start'], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/hookTimeoutMs must be a number.*event spooled/);
    fs.rmSync(spool());
  });

  test('strict mode: an unacknowledged event fails the hook (and so the VM start)', async () => {
    writeConfig({ strictHooks: true });
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(1);
    expect(spooled()).toHaveLength(1);
    fs.rmSync(spool());
  });

  test('chaining: same argv and environment, the chained status is kept', async () => {
    const log = path.join(dir, 'chain.log');
    const script = path.join(dir, 'old-hook.sh');
    fs.writeFileSync(
      script,
      `#!/bin/bash\necho "$# $* FOO=$FOO STOREID=$STOREID" >> '${log}'\necho chained-stdout\ncase "$2" in pre-start) exit 3 ;; post-stop) exit 5 ;; esac\n` +
        `case "$1" in backup-start) exit 7 ;; esac\nexit 0\n`,
      { mode: 0o755 },
    );
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(chainFilePath(stateDir), JSON.stringify({ vzdump: { path: script }, guests: { '100': { volid: 'local:snippets/old-hook.sh', path: script } } }));
    const server = await serve();
    try {
      const pre = await runHook(guestHook, ['100', 'pre-start'], { ...env, FOO: 'bar' });
      expect(pre).toMatchObject({ status: 3, stdout: 'chained-stdout\n', stderr: '' });
      expect((await runHook(guestHook, ['100', 'post-start'], env)).status).toBe(0);
      expect((await runHook(guestHook, ['100', 'post-stop'], env)).status).toBe(5);
      // Another VM has no chain target.
      expect((await runHook(guestHook, ['101', 'pre-start'], env)).status).toBe(0);
      expect((await runHook(vzdumpHook, ['backup-start', 'snapshot', '100'], { STOREID: 'local' })).status).toBe(7);
      expect((await runHook(vzdumpHook, ['job-end'], {})).status).toBe(0);
      // An unknown phase is not sent, but the chained script still sees it.
      expect((await runHook(guestHook, ['100', 'pre-migrate'], env)).status).toBe(0);
    } finally {
      await server.close();
    }
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual([
      '2 100 pre-start FOO=bar STOREID=',
      '2 100 post-start FOO= STOREID=',
      '2 100 post-stop FOO= STOREID=',
      '3 backup-start snapshot 100 FOO= STOREID=local',
      '1 job-end FOO= STOREID=',
      '2 100 pre-migrate FOO= STOREID=',
    ]);
    // The events were delivered before the chained scripts ran, whatever they returned.
    expect(ledger.events(100, 4).map((e) => e.phase)).toEqual(['pre-start', 'post-start', 'post-stop', 'backup-start']);
  });

  test('a chain entry pointing at the hook itself is refused at run time instead of recursing', async () => {
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(chainFilePath(stateDir), JSON.stringify({ guests: { '100': { path: guestHook } } }));
    const r = await runHook(guestHook, ['100', 'post-start'], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/is this hook itself; not run/);
    fs.rmSync(spool(), { force: true });
  });

  test('a chained script that is missing fails like a missing hookscript would', async () => {
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(chainFilePath(stateDir), JSON.stringify({ guests: { '100': { path: path.join(dir, 'gone.sh') } } }));
    const r = await runHook(guestHook, ['100', 'pre-start'], env);
    expect(r.status).toBe(127);
    expect(r.stderr).toMatch(/chained hook .*gone\.sh could not run: ENOENT/);
    fs.rmSync(spool(), { force: true });
  });
});
