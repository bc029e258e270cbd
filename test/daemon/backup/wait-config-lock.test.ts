/** Which qemu-server config locks keep pve-cbt from starting a backup (pure rule). */
import { blockingLock } from '../../../daemon/backup/wait-config-lock';

test.each<[string, Record<string, string>, string | undefined]>([
  ['no lock', { scsi0: 'local:100/vm-100-disk-0.qcow2' }, undefined],
  ['qm snapshot in progress', { lock: 'snapshot' }, 'snapshot'],
  ['qm delsnapshot in progress', { lock: 'snapshot-delete' }, 'snapshot-delete'],
  ['qm rollback', { lock: 'rollback' }, 'rollback'],
  ['live migration', { lock: 'migrate' }, 'migrate'],
  ['vzdump', { lock: 'backup' }, 'backup'],
  ['hibernated VM: a state, not an operation', { lock: 'suspended' }, undefined],
  ['empty value', { lock: ' ' }, undefined],
])('%s', (_name, entries, want) => {
  expect(blockingLock(entries)).toBe(want);
});
