/**
 * Which VMs a job covers: pure pool parsing of user.cfg, and selection (all, list, pool, tag) against a
 * real qemu-server config folder laid out like /etc/pve in a temporary directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { VmSelector } from '../../../daemon/config/config-schema';
import { listNodeVmids, poolMembers, selectVms, userCfgPath } from '../../../daemon/service/select-vms';

const USER_CFG = [
  'user:root@pam:1:0:::root@example.com:::',
  'pool:production:Production VMs:100,101,200:local-lvm:',
  'pool:empty::::',
  'pool:lab:lab machines: 102 , 300 ::',
  'group:admins:root@pam::',
  'pool:prod::999:', // a name that only starts like another pool's
  '',
].join('\n');

describe('poolMembers', () => {
  test.each<[string, string, number[]]>([
    ['production', USER_CFG, [100, 101, 200]],
    ['lab', USER_CFG, [102, 300]],
    ['prod', USER_CFG, [999]],
    ['empty', USER_CFG, []],
    ['missing', USER_CFG, []],
    ['admins', USER_CFG, []], // a group, not a pool
    ['production', '', []],
    ['production', 'pool:production:c:100,abc,,101:', [100, 101]],
    ['production', 'pool:production', []],
    ['x', '  pool:x::7:\r\n', [7]],
  ])('pool %s, case %#', (pool, text, expected) => {
    expect(poolMembers(text, pool)).toEqual(expected);
  });
});

describe('selectVms on a node config folder', () => {
  let pve: string;
  let configDir: string;
  beforeAll(() => {
    pve = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    configDir = path.join(pve, 'etc', 'pve', 'qemu-server');
    fs.mkdirSync(configDir, { recursive: true });
    const conf = (vmid: number, text: string): void => fs.writeFileSync(path.join(configDir, `${vmid}.conf`), text);
    conf(100, 'name: web\ntags: prod;web\nscsi0: local:100/vm-100-disk-0.qcow2,size=8M\n');
    conf(101, 'name: db\ntags: prod\nscsi0: local-lvm:vm-101-disk-0,size=8M\n');
    conf(102, 'name: lab\nscsi0: local-lvm:vm-102-disk-0,size=8M\n\n[snap1]\ntags: prod\n');
    conf(1000, 'name: big\ntags: web\n');
    // Not VM configs: qemu-server temp files, other names.
    fs.writeFileSync(path.join(configDir, '103.conf.tmp.4711'), 'tags: prod\n');
    fs.writeFileSync(path.join(configDir, 'abc.conf'), 'tags: prod\n');
    fs.mkdirSync(path.join(configDir, 'sub'));
    fs.writeFileSync(path.join(pve, 'etc', 'pve', 'user.cfg'), USER_CFG);
  });
  afterAll(() => fs.rmSync(pve, { recursive: true, force: true }));

  test('lists only VMID.conf files, numerically sorted', () => {
    expect(listNodeVmids(configDir)).toEqual([100, 101, 102, 1000]);
  });

  test('a missing config folder is a node without VMs', () => {
    expect(listNodeVmids(path.join(pve, 'nope'))).toEqual([]);
    expect(selectVms('all', path.join(pve, 'nope'))).toEqual([]);
  });

  test('user.cfg is found beside the qemu-server folder', () => {
    expect(userCfgPath(configDir)).toBe(path.join(pve, 'etc', 'pve', 'user.cfg'));
    expect(userCfgPath(`${configDir}/`)).toBe(path.join(pve, 'etc', 'pve', 'user.cfg'));
  });

  test.each<[string, VmSelector, number[]]>([
    ['all', 'all', [100, 101, 102, 1000]],
    ['a list, in node order', [1000, 100], [100, 1000]],
    ['a list with VMs not on this node', [101, 555], [101]],
    ['a pool (members on other nodes left out)', { pool: 'production' }, [100, 101]],
    ['another pool', { pool: 'lab' }, [102]],
    ['an unknown pool', { pool: 'nope' }, []],
    ['a pool whose name prefixes another', { pool: 'prod' }, []],
    ['a tag (snapshot sections do not count)', { tag: 'prod' }, [100, 101]],
    ['another tag', { tag: 'web' }, [100, 1000]],
    ['an unknown tag', { tag: 'nope' }, []],
  ])('%s', (_name, selector, expected) => {
    expect(selectVms(selector, configDir)).toEqual(expected);
  });

  test('a pool selection on a node without user.cfg selects nothing', () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    try {
      const dir = path.join(other, 'qemu-server');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, '100.conf'), 'name: a\n');
      expect(selectVms({ pool: 'production' }, dir)).toEqual([]);
      expect(selectVms('all', dir)).toEqual([100]);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
