/**
 * `backup --all` / `--pool NAME` against a node laid out like /etc/pve in a temporary directory,
 * with user.cfg pool lines as PVE's AccessControl writes them (`pool:NAME:COMMENT:VMIDS:STORAGES:`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { poolDeclared, resolveBackupSelection } from '../../../daemon/service/backup-selection';

const USER_CFG = [
  'user:root@pam:1:0:::root@example.com:::',
  'pool:production:Production VMs:100,101,200:local-lvm:',
  'pool:empty::::',
  'pool:elsewhere::500,501::',
  '',
].join('\n');

let pve: string;
let configDir: string;
beforeEach(() => {
  pve = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  configDir = path.join(pve, 'qemu-server');
  fs.mkdirSync(configDir);
  for (const id of [100, 101, 102]) fs.writeFileSync(path.join(configDir, `${id}.conf`), `scsi0: local:${id}/vm-${id}-disk-0.raw,size=8M\n`);
  fs.writeFileSync(path.join(pve, 'user.cfg'), USER_CFG);
});
afterEach(() => fs.rmSync(pve, { recursive: true, force: true }));

test.each<[string, boolean]>([
  ['production', true],
  ['empty', true],
  ['prod', false],
  ['root@pam', false],
])('pool %s declared: %s', (name, declared) => expect(poolDeclared(USER_CFG, name)).toBe(declared));

test('named VMs are taken as given; --all is every VM of this node', () => {
  expect(resolveBackupSelection({ vmids: [102, 100] }, configDir)).toEqual([102, 100]);
  expect(resolveBackupSelection({ all: true }, configDir)).toEqual([100, 101, 102]);
});

test.each<[object, string[]]>([
  [{}, []],
  [{ vmids: [100], all: true }, ['vmids', 'all']],
  [{ all: true, pool: 'production' }, ['all', 'pool']],
])('a request naming VMs in %j ways is CBT_BACKUP_SELECTION_INVALID', (sel, given) => {
  expect(() => resolveBackupSelection(sel, configDir)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_SELECTION_INVALID', details: { given } }));
});

test('--pool: the members on this node (200 is not here)', () => {
  expect(resolveBackupSelection({ pool: 'production' }, configDir)).toEqual([100, 101]);
});

test.each<[string, object, RegExp]>([
  ['an unknown pool', { pool: 'nosuch' }, /^--pool nosuch selects no VM: no pool 'nosuch' in .*user\.cfg$/],
  ['a pool without members', { pool: 'empty' }, /the pool has no VM$/],
  ['a pool whose members are elsewhere', { pool: 'elsewhere' }, /its members \(500, 501\) are not on this node$/],
])('%s is CBT_BACKUP_SELECTION_EMPTY, not a backup of nothing', (_name, sel, message) => {
  expect(() => resolveBackupSelection(sel, configDir)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_SELECTION_EMPTY', message: expect.stringMatching(message) }));
});

test('--all on a node without VMs, and --pool without user.cfg', () => {
  fs.rmSync(path.join(pve, 'user.cfg'));
  expect(() => resolveBackupSelection({ pool: 'production' }, configDir)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_SELECTION_EMPTY' }));
  for (const f of fs.readdirSync(configDir)) fs.rmSync(path.join(configDir, f));
  expect(() => resolveBackupSelection({ all: true }, configDir)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_SELECTION_EMPTY' }));
});
