/**
 * The repository's locks (daemon/repository/repository-lock.ts) between processes, as two nodes'
 * daemons use them on one shared repository: lock files created with O_EXCL, holder identified by
 * host, pid and process start time. Several processes race for one lock at the same moment: exactly
 * one wins, every other fails fast with CBT_REPO_LOCKED naming the winner. The lock of a killed
 * holder on this host is taken over; a lock held on another host is never taken.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Repository } from '../../daemon/repository/repository';
import { DIST, requireDist } from './e2e-harness';

const CHILD = `
const { RepositoryLocks } = require(${JSON.stringify(path.join(DIST, 'daemon/repository/repository-lock.js'))});
const { LocalDirStorage } = require(${JSON.stringify(path.join(DIST, 'daemon/repository/storage.js'))});
const locks = new RepositoryLocks(new LocalDirStorage(process.argv[1]));
process.stdin.once('data', async () => {
  try {
    await locks.acquire(process.argv[2], { what: 'backup' });
    process.stdout.write(JSON.stringify({ pid: process.pid, got: true }) + '\\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ pid: process.pid, got: false, code: err.code, holderPid: err.details && err.details.holderPid }) + '\\n');
  }
});
process.stdin.resume();
process.stdout.write('ready\\n');
`;

interface Outcome {
  pid: number;
  got: boolean;
  code?: string;
  holderPid?: number;
}

let work: string;
let repoDir: string;
const children: ChildProcess[] = [];

/** A process that takes `lock` once it reads a line; `ready` resolves once it waits for that line. */
function contender(lock: string): { proc: ChildProcess; ready: Promise<void>; outcome: Promise<Outcome> } {
  const proc = spawn(process.execPath, ['-e', CHILD, repoDir, lock], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(proc);
  const lines = readline.createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error(`contender ${proc.pid} ended without answering`);
    return r.value as string;
  };
  const ready = next().then((l) => {
    if (l !== 'ready') throw new Error(`contender said ${l}`);
  });
  const outcome = ready.then(async () => JSON.parse(await next()) as Outcome);
  return { proc, ready, outcome };
}

beforeAll(async () => {
  requireDist();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-locks-'));
  repoDir = path.join(work, 'repo');
  await Repository.open(repoDir, { create: true });
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
});

it('of several processes racing for one lock exactly one wins; a killed holder is taken over; another host keeps its lock', async () => {
  const racers = Array.from({ length: 6 }, () => contender('vm-900'));
  // Every process has started and waits; then all are released at once.
  await Promise.all(racers.map((r) => r.ready));
  for (const r of racers) r.proc.stdin!.write('go\n');
  const outcomes = await Promise.all(racers.map((r) => r.outcome));
  const winners = outcomes.filter((o) => o.got);
  expect(winners).toHaveLength(1);
  for (const o of outcomes.filter((x) => !x.got)) expect(o).toMatchObject({ code: 'CBT_REPO_LOCKED', holderPid: winners[0].pid });
  const lockFile = path.join(repoDir, '.locks', 'vm-900.lock');
  expect(JSON.parse(fs.readFileSync(lockFile, 'utf8'))).toMatchObject({ pid: winners[0].pid, host: os.hostname() });

  // The winner dies without releasing: the next process takes its lock over.
  const winner = racers.find((r) => r.proc.pid === winners[0].pid)!.proc;
  const dead = new Promise((r) => winner.once('exit', r));
  winner.kill('SIGKILL');
  await dead;
  const next = contender('vm-900');
  next.proc.stdin!.write('go\n');
  await expect(next.outcome).resolves.toMatchObject({ got: true });

  // A lock written by a process of another host (another node on the shared repository) is always live.
  fs.writeFileSync(
    path.join(repoDir, '.locks', 'vm-901.lock'),
    JSON.stringify({ pid: 1, procStart: null, host: 'pve-other-node', what: 'backup', startedAtMs: Date.now(), vmid: 901 }),
  );
  const foreign = contender('vm-901');
  foreign.proc.stdin!.write('go\n');
  await expect(foreign.outcome).resolves.toMatchObject({ got: false, code: 'CBT_REPO_LOCKED', holderPid: 1 });
});
