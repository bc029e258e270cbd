/**
 * For the kill -9 tests (a backup writer, upgrade, GC repack): the repository compiled to a
 * temporary folder (the child runs plain JS), a child started at a named point, and a hard kill.
 * `killRig` is their common setup: a temp dir with the build in it, compiled once before the
 * tests, and at the end every child still alive killed and the dir removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { tempDir } from './repo-test-helpers';

const ROOT = path.resolve(__dirname, '../../..');

/** Compiles daemon/repository/repository.ts and `extra` entry files (paths from the project root) into `build`. */
export function compileRepository(build: string, extra: string[] = []): void {
  execFileSync(
    process.execPath,
    [
      path.join(ROOT, 'node_modules/typescript/bin/tsc'),
      ...['--outDir', build, '--rootDir', ROOT, '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node'],
      ...['--esModuleInterop', '--skipLibCheck', '--strict', '--types', 'node'],
      'daemon/repository/repository.ts',
      ...extra,
    ],
    { cwd: ROOT, stdio: 'pipe' },
  );
}

export interface MaintenanceChild {
  child: ChildProcess;
  /** Resolves with "AT <point>" or "DONE"; rejects if the child exits first. */
  reached: Promise<string>;
}

/** An upgrade or GC of `repoDir` in a child that stops at `point` (fixtures/kill-maintenance-child.js). */
export function startMaintenanceChild(rig: KillRig, repoDir: string, job: 'upgrade' | 'gc', point: string, sealBytes: number): MaintenanceChild {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/kill-maintenance-child.js'), rig.build, repoDir, job, point, String(sealBytes)], {
    env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  rig.children.push(child);
  let out = '';
  let err = '';
  const reached = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^(AT .+|DONE)$/m.exec(out);
      if (m) resolve(m[1]);
    });
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before reaching ${point}: ${err}`)));
  });
  return { child, reached };
}

export function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export function killAll(children: ChildProcess[]): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export function rmrf(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

export interface KillRig {
  /** The test's temp dir (set in beforeAll). */
  dir: string;
  /** The compiled repository, `dir`/build. */
  build: string;
  /** Every child started: killed in afterAll if still alive. */
  children: ChildProcess[];
}

/** Registers the beforeAll (temp dir, compile) and afterAll (kill children, remove dir) of a kill test. */
export function killRig(extra: string[] = []): KillRig {
  const rig: KillRig = { dir: '', build: '', children: [] };
  beforeAll(() => {
    rig.dir = tempDir();
    rig.build = path.join(rig.dir, 'build');
    compileRepository(rig.build, extra);
  }, 120_000);
  afterAll(() => {
    killAll(rig.children);
    if (rig.dir) rmrf(rig.dir);
  });
  return rig;
}
