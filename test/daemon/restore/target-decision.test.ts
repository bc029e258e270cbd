import { decideRestoreTarget, type TargetFacts } from '../../../daemon/restore/target-decision';

const base: TargetFacts = { target: '/var/tmp/x.raw', kind: 'missing', dir: '/var/tmp', dirExists: true, holders: [], volumes: [], unresolved: [] };
const qemu = { pid: 4242, command: 'qemu-system-x86' };
const stopped = { vmid: 100, disk: 'scsi0', volid: 'local:100/vm-100-disk-0.qcow2', qemuPid: undefined };
const running = { ...stopped, qemuPid: 4242 };
const unresolved = { vmid: 101, disk: 'virtio0', volid: 'nfs:101/vm-101-disk-0.raw', reason: 'storage offline' };

// Rows always have five values: jest takes a test function with more parameters than values for a done-callback test.
type Row = [string, Partial<TargetFacts>, boolean, string | undefined, Record<string, unknown>];
const rows: Row[] = [
  ['a new file in an existing directory', {}, false, undefined, {}],
  ['a new file with --force', {}, true, undefined, {}],
  ['the directory is missing', { dirExists: false }, false, 'CBT_RESTORE_TARGET_DIR_MISSING', { dir: '/var/tmp' }],
  ['the directory is missing, --force', { dirExists: false }, true, 'CBT_RESTORE_TARGET_DIR_MISSING', {}],
  ['an existing file', { kind: 'file' }, false, 'CBT_RESTORE_TARGET_EXISTS', { kind: 'file' }],
  ['an existing file, --force', { kind: 'file' }, true, undefined, {}],
  ['an existing block device', { kind: 'block device' }, false, 'CBT_RESTORE_TARGET_EXISTS', { kind: 'block device' }],
  ['an existing block device, --force', { kind: 'block device' }, true, undefined, {}],
  ['a directory', { kind: 'directory' }, true, 'CBT_RESTORE_TARGET_UNSUPPORTED', { kind: 'directory' }],
  ['a FIFO', { kind: 'fifo' }, true, 'CBT_RESTORE_TARGET_UNSUPPORTED', {}],
  ['a character device', { kind: 'character device' }, true, 'CBT_RESTORE_TARGET_UNSUPPORTED', {}],
  ['a file a process has open', { kind: 'file', holders: [qemu] }, false, 'CBT_RESTORE_TARGET_IN_USE', { pid: 4242, command: 'qemu-system-x86' }],
  ['a file a process has open, --force', { kind: 'file', holders: [qemu] }, true, 'CBT_RESTORE_TARGET_IN_USE', {}],
  ['a stopped VM volume', { kind: 'file', volumes: [stopped] }, false, 'CBT_RESTORE_TARGET_IS_VM_VOLUME', { vmid: 100, disk: 'scsi0' }],
  ['a stopped VM volume, --force', { kind: 'file', volumes: [stopped] }, true, undefined, {}],
  ['a stopped VM volume that is absent (inactive LV)', { volumes: [stopped] }, false, 'CBT_RESTORE_TARGET_IS_VM_VOLUME', {}],
  ['a running VM volume', { kind: 'file', volumes: [running], holders: [qemu] }, false, 'CBT_RESTORE_TARGET_VM_RUNNING', { vmid: 100, disk: 'scsi0', pid: 4242 }],
  ['a running VM volume, --force', { kind: 'file', volumes: [running], holders: [qemu] }, true, 'CBT_RESTORE_TARGET_VM_RUNNING', {}],
  ['a running VM volume nobody has open, --force', { kind: 'file', volumes: [running] }, true, 'CBT_RESTORE_TARGET_VM_RUNNING', {}],
  ['a VM volume pvesm could not resolve', { unresolved: [unresolved] }, false, 'CBT_RESTORE_TARGET_UNCHECKED', { vmid: 101, disk: 'virtio0' }],
  ['a VM volume pvesm could not resolve, --force', { unresolved: [unresolved] }, true, undefined, {}],
];

test.each(rows)('%s', (_name, facts, force, code, details) => {
  const err = decideRestoreTarget({ ...base, ...facts }, { force });
  expect(err?.code).toBe(code);
  if (err) expect(err.details).toMatchObject({ target: '/var/tmp/x.raw', ...details });
  if (err) expect(typeof err.details.hint).toBe('string');
});
