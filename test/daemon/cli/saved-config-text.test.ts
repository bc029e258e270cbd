/** How show prints a kept VM config: the block in the normal view and the raw forms. */
import { rawSavedConfig, savedConfigBlock } from '../../../daemon/cli/saved-config-text';
import type { Manifest } from '../../../daemon/repository/manifest';

const m = (config: Manifest['config']): Manifest => ({ id: 'vm/100/2026-11-25T15_04_05Z', vmid: 100, ...(config ? { config } : {}) }) as Manifest;

test.each([
  ['conf only', { conf: 'name: a\n', firewall: null }, { conf: true, firewall: false }, 'name: a\n'],
  ['conf without final newline', { conf: 'name: a', firewall: null }, { conf: true, firewall: false }, 'name: a\n'],
  ['firewall only', { conf: 'name: a\n', firewall: '[OPTIONS]\n' }, { conf: false, firewall: true }, '[OPTIONS]\n'],
  ['both', { conf: 'name: a\n', firewall: '[OPTIONS]\n' }, { conf: true, firewall: true }, 'name: a\n#### firewall: /etc/pve/firewall/100.fw ####\n[OPTIONS]\n'],
])('raw: %s', (_n, config, want, text) => {
  expect(rawSavedConfig(m(config), want)).toBe(text);
});

test.each([
  ['no config at all', undefined, { conf: true, firewall: false }, 'conf'],
  ['no firewall file', { conf: 'name: a\n', firewall: null }, { conf: false, firewall: true }, 'firewall'],
])('raw refuses: %s', (_n, config, want, file) => {
  expect(() => rawSavedConfig(m(config), want)).toThrow(expect.objectContaining({ code: 'CBT_RESTORE_VM_NO_CONFIG', details: expect.objectContaining({ file }) }));
});

test('the block in show: indented conf and firewall, or a note', () => {
  expect(savedConfigBlock(m({ conf: 'name: a\nmemory: 64\n', firewall: null }))).toBe('config (100.conf at backup time):\n  name: a\n  memory: 64\nfirewall: none');
  expect(savedConfigBlock(m({ conf: 'name: a\n', firewall: '[OPTIONS]\nenable: 1\n' }))).toBe('config (100.conf at backup time):\n  name: a\nfirewall (100.fw):\n  [OPTIONS]\n  enable: 1');
  expect(savedConfigBlock(m(undefined))).toBe('config: not kept (backup made before pve-cbt kept VM configs)');
});
