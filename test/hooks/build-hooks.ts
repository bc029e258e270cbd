/**
 * Compiles the hooks (and only their import graph) to JavaScript for tests that run them as real
 * processes, the way Proxmox does. The build goes to a temporary directory keyed by a hash of the
 * sources, shared by test files and reused while the sources do not change; `node_modules` is linked
 * in so that the compiled hooks resolve node-ipc exactly as an installed copy does.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const REPO = path.join(__dirname, '..', '..');
const ENTRIES = ['hooks/guest-hook.ts', 'hooks/vzdump-hook.ts'];
const SOURCE_DIRS = ['hooks', 'shared', 'daemon/ipc'];

/** Returns the build directory, containing hooks/guest-hook.js and hooks/vzdump-hook.js. */
export function buildHooks(): string {
  const hash = crypto.createHash('sha256');
  for (const dir of SOURCE_DIRS) {
    for (const f of listTs(path.join(REPO, dir))) hash.update(f).update(fs.readFileSync(f));
  }
  const outDir = path.join(os.tmpdir(), `pve-cbt-hooks-${hash.digest('hex').slice(0, 16)}`);
  if (fs.existsSync(path.join(outDir, 'hooks', 'vzdump-hook.js'))) return outDir;
  const tmp = `${outDir}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  execFileSync(
    path.join(REPO, 'node_modules', '.bin', 'tsc'),
    [
      ...ENTRIES.map((e) => path.join(REPO, e)),
      '--outDir', tmp, '--rootDir', REPO,
      '--module', 'commonjs', '--target', 'ES2022', '--moduleResolution', 'node',
      '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node',
    ],
    { cwd: REPO, stdio: 'pipe' },
  );
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(tmp, 'node_modules'));
  try {
    fs.renameSync(tmp, outDir);
  } catch {
    // Another worker finished the same build first.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return outDir;
}

function listTs(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listTs(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []))
    .sort();
}
