import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');
const lockText = fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8');
const lock = JSON.parse(lockText) as { packages: Record<string, { version?: string }> };
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

describe('dependency pins', () => {
  test('node-ipc resolves to 9.2.1 everywhere in the lockfile', () => {
    const entries = Object.entries(lock.packages).filter(([k]) => k === 'node_modules/node-ipc' || k.endsWith('/node_modules/node-ipc'));
    expect(entries.length).toBeGreaterThan(0);
    for (const [, v] of entries) expect(v.version).toBe('9.2.1');
  });

  test('no protestware package anywhere in the lockfile', () => {
    expect(lockText).not.toMatch(/peacenotwar/i);
  });

  test('better-sqlite3 stays on 12.x (13 needs Node 22)', () => {
    expect(lock.packages['node_modules/better-sqlite3'].version).toMatch(/^12\./);
  });

  test('every dependency is pinned to an exact version', () => {
    for (const [name, range] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
      expect([name, range]).toEqual([name, expect.stringMatching(/^\d+\.\d+\.\d+$/)]);
    }
  });
});
