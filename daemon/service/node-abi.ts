/**
 * The Node.js ABI check at daemon start. install.sh and the .deb record in `<app>/node-abi.json`
 * the ABI (`process.versions.modules`) the native SQLite addon was built and checked for. Node.js
 * upgraded since (a new major: new ABI) would make the addon fail to load deep inside the catalog;
 * instead the daemon refuses with CBT_NODE_ABI_CHANGED and says how to rebuild. A checkout run
 * from source (no record file) is not checked: npm built its addon for the node that runs it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { NodeAbiChangedError } from './service-errors';

export const NODE_ABI_FILE = 'node-abi.json';

/** The app directory: the nearest directory above `from` with a package.json. */
export function appRoot(from: string = __dirname): string | undefined {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  return undefined;
}

export function checkNodeAbi(opts: { appDir?: string; running?: { modules: string; node: string } } = {}): void {
  const dir = opts.appDir ?? appRoot();
  if (!dir) return;
  const file = path.join(dir, NODE_ABI_FILE);
  let recorded: { modules?: unknown; node?: unknown };
  try {
    recorded = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof recorded;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const running = opts.running ?? { modules: process.versions.modules, node: process.versions.node };
  if (String(recorded.modules) === running.modules) return;
  throw NodeAbiChangedError({
    recordFile: file,
    builtModules: String(recorded.modules),
    builtNode: String(recorded.node),
    runningModules: running.modules,
    runningNode: running.node,
    hint: 'install again for this Node.js: ./install.sh from the checkout (it rebuilds the addon), or apt reinstall pve-cbt with a package built for it',
  });
}
