/** The simulator's config edits keep qemu-server's layout: sorted current section, snapshot tree. */
import { confAddSnapshot, confDeleteSnapshot, confEntries, confSet, nextUnusedKey, snapshotNames, snapshotsUseVolume } from '../../daemon/sim/conf-edit';
import { renderConf } from '../../daemon/sim/pve-conf';

const base = renderConf({ vmid: 100, name: 'vm100', agent: false, disks: [{ key: 'scsi0', volid: 'local:100/vm-100-disk-0.qcow2', sizeBytes: 8 << 20, backup: true }] });

describe('conf-edit', () => {
  test('confSet changes only the current section and round-trips the rendered layout', () => {
    expect(confSet(base, {})).toBe(base);
    const t = confSet(base, { scsi0: 'local:100/vm-100-disk-1.qcow2,size=8M', unused1: 'local:100/vm-100-disk-0.qcow2', ide2: undefined });
    expect(confEntries(t)).toMatchObject({ scsi0: 'local:100/vm-100-disk-1.qcow2,size=8M', unused1: 'local:100/vm-100-disk-0.qcow2' });
    expect(confEntries(t).ide2).toBeUndefined();
    expect(t.slice(t.indexOf('['))).toBe(base.slice(base.indexOf('[')));
    expect(nextUnusedKey(base)).toBe('unused1');
  });

  test('snapshots form a tree through parent; deleting one re-parents its children and the current config', () => {
    const a = confAddSnapshot(base, 'a', { snaptime: '1' });
    const b = confAddSnapshot(a, 'b', { snaptime: '2' });
    expect(snapshotNames(b)).toEqual(['before-upgrade', 'a', 'b']);
    expect(confEntries(b).parent).toBe('b');
    expect(b).toMatch(/\[b\]\n(?:.*\n)*parent: a\n/);
    const noA = confDeleteSnapshot(b, 'a');
    expect(snapshotNames(noA)).toEqual(['before-upgrade', 'b']);
    expect(noA).toMatch(/\[b\]\n(?:.*\n)*parent: before-upgrade\n/);
    const noB = confDeleteSnapshot(noA, 'b');
    expect(confEntries(noB).parent).toBe('before-upgrade');
    expect(confDeleteSnapshot(noB, 'missing')).toBe(noB);
    expect(snapshotsUseVolume(b, 'local:100/vm-100-disk-0.qcow2')).toEqual(['before-upgrade', 'a', 'b']);
    expect(snapshotsUseVolume(b, 'local:100/vm-100-disk-5.qcow2')).toEqual([]);
  });
});
