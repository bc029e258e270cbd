/** What a backup keeps of a VM's config: the current section only, and the firewall file beside. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { currentSection, firewallFile, readSavedVmConfig } from '../../../daemon/pve/saved-vm-config';

test.each([
  ['no sections', 'name: a\nscsi0: local:100/x.raw\n', 'name: a\nscsi0: local:100/x.raw\n'],
  ['a snapshot section', 'name: a\nparent: s1\n\n[s1]\nname: a\nscsi9: local:100/y.raw\n', 'name: a\nparent: s1\n'],
  ['pending and special sections', '#desc\nname: a\n[PENDING]\nmemory: 4\n[special:cloudinit]\nx: y\n', '#desc\nname: a\n'],
  ['no trailing newline', 'name: a', 'name: a\n'],
  ['empty', '', ''],
  ['an indented section header', 'name: a\n  [s]\nb: c\n', 'name: a\n'],
])('currentSection: %s', (_n, text, want) => {
  expect(currentSection(text)).toBe(want);
});

test('reads VMID.conf and the firewall file beside qemu-server, none when absent, and the missing config error', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-saved-'));
  try {
    const configDir = path.join(root, 'etc/pve/qemu-server');
    fs.mkdirSync(configDir, { recursive: true });
    fs.writeFileSync(path.join(configDir, '100.conf'), 'name: a\n\n[snap]\nname: b\n');
    expect(firewallFile(configDir, 100)).toBe(path.join(root, 'etc/pve/firewall/100.fw'));
    expect(readSavedVmConfig(configDir, 100)).toEqual({ conf: 'name: a\n', firewall: null });
    fs.mkdirSync(path.join(root, 'etc/pve/firewall'));
    fs.writeFileSync(path.join(root, 'etc/pve/firewall/100.fw'), '[OPTIONS]\nenable: 1\n');
    expect(readSavedVmConfig(configDir, 100)).toEqual({ conf: 'name: a\n', firewall: '[OPTIONS]\nenable: 1\n' });
    expect(() => readSavedVmConfig(configDir, 101)).toThrow(expect.objectContaining({ code: 'CBT_PVE_CONFIG_MISSING', details: expect.objectContaining({ vmid: 101 }) }));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
