import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { migration as ledgerMigration } from '../../../daemon/catalog/migrations/002-ledger';
import { migration as ledgerVolumesMigration } from '../../../daemon/catalog/migrations/003-ledger-volumes';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { replaySpool } from '../../../daemon/ipc/spool-replay';
import { Ledger } from '../../../daemon/ledger/ledger';
import { appendToSpool } from '../../../hooks/spool-writer';
import type { LifecycleEvent } from '../../../shared/ipc/messages';
import { spoolPaths } from '../../../shared/ipc/spool-format';
import { buildHooks } from '../../hooks/build-hooks';

const T = '2026-11-25T10:00:00.000Z';
const ev = (vmid: number, phase: string, seq: string): LifecycleEvent => ({ vmid, phase, source: 'hookscript', time: T, seq });

describe('spool replay', () => {
  let dir: string;
  let db: Database.Database;
  let ledger: Ledger;
  const apply = (e: LifecycleEvent): void => {
    ledger.recordEvent(e);
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    db = openCatalog(path.join(dir, 'catalog.sqlite'), [ledgerMigration, ledgerVolumesMigration]);
    ledger = new Ledger(db);
  });
  afterEach(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('no spool at all is nothing to do', () => {
    expect(replaySpool(path.join(dir, 'state'), apply)).toEqual({ applied: 0, rejected: 0 });
  });

  test('in order, exactly once, and the spool is gone afterwards', async () => {
    const state = path.join(dir, 'state');
    await appendToSpool(state, ev(100, 'pre-stop', 'a'));
    await appendToSpool(state, ev(100, 'post-stop', 'b'));
    await appendToSpool(state, ev(100, 'pre-start', 'c'));
    expect(fs.statSync(spoolPaths(state).dir).mode & 0o777).toBe(0o700);
    expect(replaySpool(state, apply)).toEqual({ applied: 3, rejected: 0 });
    expect(ledger.events().map((e) => e.seq)).toEqual(['a', 'b', 'c']);
    expect(fs.readdirSync(spoolPaths(state).dir)).toEqual([]);
    expect(replaySpool(state, apply)).toEqual({ applied: 0, rejected: 0 });
    // The same events spooled again (a hook whose ack was lost) are applied once.
    await appendToSpool(state, ev(100, 'post-stop', 'b'));
    expect(replaySpool(state, apply)).toEqual({ applied: 1, rejected: 0 });
    expect(ledger.events()).toHaveLength(3);
  });

  test('a replay interrupted by a crash is finished first, before newer lines, without double effects', async () => {
    const state = path.join(dir, 'state');
    ledger.markValid({ vmid: 100, disk: 'scsi0', format: 'qcow2', bitmapName: 'b', generation: 1, qemuPid: 1, qemuStartTime: 1 });
    await appendToSpool(state, ev(100, 'post-stop', 'crash'));
    await appendToSpool(state, ev(100, 'pre-start', 'start'));
    let calls = 0;
    expect(() =>
      replaySpool(state, (e) => {
        if (++calls === 2) throw new Error('disk full');
        apply(e);
      }),
    ).toThrow('disk full');
    const { live, replaying } = spoolPaths(state);
    expect(fs.existsSync(replaying)).toBe(true);
    await appendToSpool(state, ev(100, 'post-start', 'later'));
    expect(fs.existsSync(live)).toBe(true);
    // The engine saw the suspect bitmap and made a fresh one before the daemon restarted.
    ledger.markValid({ vmid: 100, disk: 'scsi0', format: 'qcow2', bitmapName: 'b2', generation: 2, qemuPid: 1, qemuStartTime: 1 });
    expect(replaySpool(state, apply)).toEqual({ applied: 3, rejected: 0 });
    expect(ledger.events().map((e) => e.seq)).toEqual(['crash', 'start', 'later']);
    // 'crash' was applied before the interruption; replaying it again did not make b2 suspect.
    expect(ledger.get(100, 'scsi0')?.state).toBe('valid');
  });

  test('torn and malformed lines go to rejected.jsonl; the lines around them are applied', async () => {
    const state = path.join(dir, 'state');
    await appendToSpool(state, ev(100, 'pre-stop', 'a'));
    const { live, rejected } = spoolPaths(state);
    fs.appendFileSync(live, '{"vmid":100,"phase":"post-st');
    await appendToSpool(state, ev(100, 'post-stop', 'b'));
    fs.appendFileSync(live, '[1,2]\n');
    await appendToSpool(state, ev(100, 'warp', 'c'));
    await appendToSpool(state, ev(100, 'pre-start', 'd'));
    expect(replaySpool(state, apply)).toEqual({ applied: 3, rejected: 3 });
    expect(ledger.events().map((e) => e.seq)).toEqual(['a', 'b', 'd']);
    expect(fs.readFileSync(rejected, 'utf8').split('\n').filter(Boolean)).toEqual([
      '{"vmid":100,"phase":"post-st',
      '[1,2]',
      JSON.stringify(ev(100, 'warp', 'c')),
    ]);
  });

  test('lines of the wrong types never reach SQLite: rejected once, replay goes on, two starts add no duplicates', async () => {
    const state = path.join(dir, 'state');
    await appendToSpool(state, ev(100, 'pre-stop', 'a'));
    const { live, rejected, replaying } = spoolPaths(state);
    const bad = [
      JSON.stringify({ ...ev(100, 'post-stop', 'x'), seq: true }),
      JSON.stringify({ ...ev(100, 'post-stop', 'y'), vmid: '100' }),
      JSON.stringify({ ...ev(100, 'post-stop', 'z'), qemuPid: { pid: 1 } }),
      JSON.stringify({ ...ev(100, 'post-stop', 'w'), migratedFrom: ['node2'] }),
    ];
    for (const b of bad) fs.appendFileSync(live, `${b}\n`);
    await appendToSpool(state, ev(100, 'post-stop', 'b'));
    // First start: the catalog's disk fills up at the last line, after the bad lines were rejected.
    expect(() =>
      replaySpool(state, (e) => {
        if (e.seq === 'b') throw new Error('SQLITE_FULL');
        apply(e);
      }),
    ).toThrow('SQLITE_FULL');
    expect(fs.existsSync(replaying)).toBe(true);
    // Second start: the same file again, then nothing is left.
    expect(replaySpool(state, apply)).toEqual({ applied: 2, rejected: 4 });
    expect(replaySpool(state, apply)).toEqual({ applied: 0, rejected: 0 });
    expect(ledger.events().map((e) => e.seq)).toEqual(['a', 'b']);
    expect(fs.readFileSync(rejected, 'utf8').split('\n').filter(Boolean)).toEqual(bad);
    expect(fs.statSync(rejected).mode & 0o777).toBe(0o600);
  });

  test('a real catalog survives a `"seq": true` line at every start; rejected.jsonl keeps it once', async () => {
    const state = path.join(dir, 'state');
    const { live, rejected } = spoolPaths(state);
    await appendToSpool(state, ev(100, 'pre-stop', 'a'));
    fs.appendFileSync(live, `${JSON.stringify({ ...ev(100, 'post-stop', 'x'), seq: true })}\n`);
    await appendToSpool(state, ev(100, 'post-stop', 'b'));
    for (let start = 0; start < 2; start++) {
      db.close();
      db = openCatalog(path.join(dir, 'catalog.sqlite'), [ledgerMigration, ledgerVolumesMigration]);
      ledger = new Ledger(db);
      expect(() => replaySpool(state, apply)).not.toThrow();
      if (start === 0) await appendToSpool(state, ev(100, 'pre-start', 'c'));
    }
    expect(ledger.events().map((e) => e.seq)).toEqual(['a', 'b', 'c']);
    expect(fs.readFileSync(rejected, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
  });

  test('hooks appending while the daemon replays: every event applied exactly once, each writer in order', async () => {
    const distDir = buildHooks();
    const state = path.join(dir, 'state');
    const writers = 4;
    const perWriter = 60;
    const script = `
      const { appendToSpool } = require(${JSON.stringify(path.join(distDir, 'hooks', 'spool-writer.js'))});
      const w = Number(process.argv[1]);
      // 1 ms between appends keeps each writer alive for several replay rounds even on a loaded host.
      const pause = new Int32Array(new SharedArrayBuffer(4));
      (async () => {
        for (let i = 0; i < ${perWriter}; i++) {
          await appendToSpool(process.argv[2], { vmid: 100 + w, phase: 'post-start', source: 'hookscript', time: '${T}', seq: w + '-' + i });
          Atomics.wait(pause, 0, 0, 1);
        }
      })();`;
    const children = Array.from({ length: writers }, (_, w) =>
      new Promise<number | null>((resolve) => spawn(process.execPath, ['-e', script, String(w), state], { stdio: 'inherit' }).on('close', resolve)),
    );
    let running = true;
    const all = Promise.all(children).then((codes) => {
      running = false;
      return codes;
    });
    let rounds = 0;
    while (running) {
      replaySpool(state, apply);
      rounds++;
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(await all).toEqual(Array(writers).fill(0));
    replaySpool(state, apply);
    expect(rounds).toBeGreaterThan(1);
    const seqs = ledger.events(undefined, 10_000).map((e) => e.seq as string);
    expect(seqs).toHaveLength(writers * perWriter);
    for (let w = 0; w < writers; w++) {
      expect(seqs.filter((s) => s.startsWith(`${w}-`))).toEqual(Array.from({ length: perWriter }, (_, i) => `${w}-${i}`));
    }
  });
});
