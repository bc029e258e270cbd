import { configLock } from '../../../daemon/parking/config-lock';

describe('configLock: the `lock:` property of the current config section', () => {
  test.each<[string, string, string | undefined]>([
    ['none', 'name: vm\nscsi0: local:100/a.qcow2,size=8M\n', undefined],
    ['rollback', 'lock: rollback\nname: vm\n', 'rollback'],
    ['among other keys', 'boot: order=scsi0\nlock: backup\nname: vm\n', 'backup'],
    ['only in a snapshot section', 'name: vm\n\n[snap]\nlock: snapshot\n', undefined],
    ['indented and trailing blanks', '  lock: migrate  \n', 'migrate'],
    ['a key that merely starts with lock', 'lockx: y\n', undefined],
  ])('%s', (_name, text, expected) => {
    expect(configLock(text)).toBe(expected);
  });
});
