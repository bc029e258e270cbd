/**
 * For the kill -9 tests of maintenance jobs (upgrade, GC repack): the repository compiled to a
 * temporary folder (the child runs plain JS), a child started at a named point, and a hard kill.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

const ROOT = path.resolve(__dirname, '../../..');

export function compileRepository(build: string): void {
  execFileSync(
    process.execPath,
    [
      path.join(ROOT, 'node_modules/typescript/bin/tsc'),
      ...['--outDir', build, '--rootDir', ROOT, '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node'],
      ...['--esModuleInterop', '--skipLibCheck', '--strict', '--types', 'node'],
      'daemon/repository/repository.ts',
    ],
    { cwd: ROOT, stdio: 'pipe' },
  );
}

export interface MaintenanceChild {
  child: ChildProcess;
  /** Resolves with "AT <point>" or "DONE"; rejects if the child exits first. */
  reached: Promise<string>;
}

export function startMaintenanceChild(build: string, repoDir: string, job: 'upgrade' | 'gc', point: string, sealBytes: number, children: ChildProcess[]): MaintenanceChild {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/kill-maintenance-child.js'), build, repoDir, job, point, String(sealBytes)], {
    env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
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
