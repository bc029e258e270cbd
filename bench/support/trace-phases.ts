/**
 * The phases of one traced `pve-cbt backup` (shared/trace/trace-spans.ts lines of the CLI and the
 * daemon), as docs/incremental-path.md tabulates them, in milliseconds.
 */
export interface Span {
  pid: number;
  name: string;
  start: number;
  ms: number;
}

export function backupPhases(spans: readonly Span[]): [string, number][] {
  const by = (n: string): Span[] => spans.filter((s) => s.name === n);
  const one = (n: string): Span => {
    const s = by(n)[0];
    if (!s) throw new Error(`no span ${n} in the trace`);
    return s;
  };
  const sum = (...names: string[]): number => names.flatMap(by).reduce((a, s) => a + s.ms, 0);
  const end = (s: Span): number => s.start + s.ms;
  const load = one('cli.load');
  const proc = one('cli.process');
  const ipc = one('ipc.backup');
  const wait = one('ipc.task-wait');
  const task = one('task.backup-vm');
  const disk = one('backup.disk');
  const config = sum('backup.wait-vzdump', 'backup.wait-config-lock', 'backup.read-config');
  // pvesm runs while the manifests, the writer start and the leftovers check go on (backup-vm.ts):
  // only what is left of it after the last of those is on the path.
  const resolve = by('backup.resolve-disks');
  const hiddenUntil = Math.max(...['backup.start-writer', 'backup.cleanup-leftovers'].flatMap(by).map(end), 0);
  const pvesm = resolve.reduce((a, s) => a + Math.max(0, end(s) - Math.max(s.start, hiddenUntil)), 0);
  const manifests = sum('backup.last-backups', 'backup.start-writer');
  const qemu = sum('backup.cleanup-leftovers', 'backup.disk-facts');
  const fleece = sum('backup.source-open');
  return [
    ['CLI: node start + module load', load.ms],
    ['CLI: config, argv, until the IPC request', ipc.start - end(load)],
    ['IPC backup (detach) round trip', ipc.ms],
    ['daemon: task start + queue', task.start - ipc.start],
    ['engine: VM config', config],
    ['engine: pvesm path, not overlapped', pvesm],
    ['  of it: the whole pvesm span (overlapped)', sum('backup.resolve-disks')],
    ['engine: manifests + writer start', manifests],
    ['engine: QEMU leftovers check + disk facts', qemu],
    ['engine: fleecing setup', fleece],
    ['  of it: qemu-img create', sum('spawn.qemu-img')],
    ['engine: gaps before the disk', disk.start - task.start - config - pvesm - manifests - qemu - fleece],
    ['disk (writer open, extents, reads, chunks, index pages)', disk.ms],
    ['engine: point-in-time check + teardown', sum('backup.source-intact', 'backup.source-close')],
    ['engine: commit', sum('backup.commit')],
    ['engine: bitmap commit + ledger', sum('backup.commit-bitmaps', 'backup.ledger-valid')],
    ['daemon: task end + answer', end(wait) - end(task)],
    ['CLI: after the answer until exit', end(proc) - end(wait)],
    ['QMP sessions', by('qmp.connect').length],
    ['QMP commands', spans.filter((s) => s.name.startsWith('qmp.') && s.name !== 'qmp.connect').length],
    ['total, process start to exit', proc.ms],
  ];
}
