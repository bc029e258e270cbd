import { readVmHookscript, readVzdumpScript, setVmHookscript, setVzdumpScript } from '../../../daemon/hook-admin/pve-conf-edit';

const VM = 'boot: order=scsi0\nmemory: 64\nscsi0: local:100/vm-100-disk-0.qcow2,size=8M\n\n[before-upgrade]\nhookscript: local:snippets/snap.pl\nmemory: 64\n';

describe('Proxmox config edits', () => {
  test.each([
    ['no hookscript: inserted at the end of the current section', VM, 'local:snippets/h', 'boot: order=scsi0\nmemory: 64\nscsi0: local:100/vm-100-disk-0.qcow2,size=8M\nhookscript: local:snippets/h\n\n[before-upgrade]\nhookscript: local:snippets/snap.pl\nmemory: 64\n'],
    ['replaced in place', 'hookscript: local:snippets/old\nmemory: 64\n', 'local:snippets/h', 'hookscript: local:snippets/h\nmemory: 64\n'],
    ['removed', 'hookscript: local:snippets/old\nmemory: 64\n', undefined, 'memory: 64\n'],
    ['removing what is not there changes nothing', VM, undefined, VM],
    ['no trailing newline, no section', 'memory: 64', 'local:snippets/h', 'memory: 64\nhookscript: local:snippets/h\n'],
    ['empty file', '', 'local:snippets/h', 'hookscript: local:snippets/h\n'],
  ])('VM config: %s', (_name, text, volid, expected) => {
    expect(setVmHookscript(text, volid)).toBe(expected);
    expect(readVmHookscript(expected)).toBe(volid);
  });

  test('a hookscript only in a snapshot section is not the current one', () => {
    expect(readVmHookscript(VM)).toBeUndefined();
  });

  const VZ = '# vzdump default settings\n\n#tmpdir: DIR\n#script: /commented/out\nmode: snapshot\n';
  test.each([
    ['appended; the commented example stays', VZ, '/s/pve-cbt-vzdump-hook', `${VZ}script: /s/pve-cbt-vzdump-hook\n`],
    ['replaced', 'script: /usr/local/bin/old hook\nmode: stop\n', '/s/h', 'script: /s/h\nmode: stop\n'],
    ['removed', 'mode: stop\nscript: /s/h\n', undefined, 'mode: stop\n'],
  ])('vzdump.conf: %s', (_name, text, value, expected) => {
    expect(setVzdumpScript(text, value)).toBe(expected);
    expect(readVzdumpScript(expected)).toBe(value);
  });

  test('a script path with spaces is read whole', () => {
    expect(readVzdumpScript('script: /usr/local/bin/old hook  \n')).toBe('/usr/local/bin/old hook');
  });
});
