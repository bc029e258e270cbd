import { bitmapName, fleeceNames, isOwnName, ownBitmapsOf, parseBitmapName, scratchFilePrefix } from '../../../daemon/backup/bitmap-names';

describe('bitmap names', () => {
  test.each([
    ['pve-cbt-scsi0-g1', { drive: 'scsi0', generation: 1 }],
    ['pve-cbt-efidisk0-g12', { drive: 'efidisk0', generation: 12 }],
    ['pbs-incremental-dirty-bitmap', undefined],
    ['repl_scsi0', undefined],
    ['pve-cbt-scsi0', undefined],
    ['pve-cbt-scsi0-gx', undefined],
  ])('parse %s', (name, id) => expect(parseBitmapName(name)).toEqual(id));

  test('round trip and ownership', () => {
    expect(bitmapName('virtio1', 7)).toBe('pve-cbt-virtio1-g7');
    expect(parseBitmapName(bitmapName('virtio1', 7))).toEqual({ drive: 'virtio1', generation: 7 });
    expect(isOwnName('repl_scsi0')).toBe(false);
    const list = [{ name: 'pve-cbt-scsi0-g1' }, { name: 'pve-cbt-scsi1-g1' }, { name: 'pbs-incremental-dirty-bitmap' }, { name: 'pve-cbt-scsi0-g2' }];
    expect(ownBitmapsOf(list, 'scsi0').map((b) => b.name)).toEqual(['pve-cbt-scsi0-g1', 'pve-cbt-scsi0-g2']);
  });

  test('QEMU ids are well-formed and below 32 bytes', () => {
    const n = fleeceNames(100, 'tpmstate0');
    for (const id of [n.node, n.job, n.exportId]) {
      expect(id).toMatch(/^[A-Za-z][A-Za-z0-9._-]*$/);
      expect(id.length).toBeLessThan(32);
    }
    expect(n.scratchFile).toMatch(/^pve-cbt-/);
  });

  test('the scratch files of a VM share its prefix, and no other VM has it', () => {
    expect(fleeceNames(10, 'scsi0').scratchFile.startsWith(scratchFilePrefix(10))).toBe(true);
    expect(fleeceNames(100, 'scsi0').scratchFile.startsWith(scratchFilePrefix(10))).toBe(false);
  });
});
