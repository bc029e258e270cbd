/**
 * How tasks read for people (`pve-cbt task list|show`, `status`): one table row per task like the
 * Proxmox task list (id, VM, kind, status, start, end) and a progress summary of a running one
 * (`scsi0 incremental 45% 12.0 MiB/26.7 MiB, reused 80%`). Pure.
 */
import type { TaskRecord } from '../service/task-records';
import { formatTime } from './format-time';
import { formatBytes, formatReuse } from './progress';
import { textTable } from './text-table';

export function progressText(p: TaskRecord['progress']): string {
  if (!p) return '';
  const pct = p.total > 0 ? ` ${Math.min(100, Math.floor((p.done / p.total) * 100))}%` : '';
  const where = [p.disk, p.phase].filter(Boolean).join(' ');
  const reuse = formatReuse(p.chunkBytes === undefined ? undefined : { chunkBytes: p.chunkBytes, reusedBytes: p.reusedBytes ?? 0 });
  return `${where}${pct} ${formatBytes(p.done)}/${formatBytes(p.total)}${reuse ? `, ${reuse}` : ''}`.trim();
}

/** The last column: progress while it runs, the backup it made, or its error code. */
function infoText(t: TaskRecord): string {
  if (t.status === 'running') return progressText(t.progress);
  if (t.backupId) return t.backupId;
  return t.error?.code ?? '';
}

export function taskListText(list: readonly TaskRecord[]): string {
  if (list.length === 0) return 'no tasks';
  const rows = list.map((t) => [t.id, t.vmid === null ? '-' : String(t.vmid), t.kind, t.status, formatTime(t.startedAt ?? t.queuedAt), formatTime(t.endedAt), infoText(t)]);
  return textTable(['ID', 'VM', 'KIND', 'STATUS', 'START', 'END', 'INFO'], rows);
}

export function taskShowText(t: TaskRecord): string {
  const lines: [string, string][] = [
    ['task', t.id],
    ['vm', t.vmid === null ? '-' : String(t.vmid)],
    ['kind', t.kind],
    ['status', t.status],
    ['queued', formatTime(t.queuedAt)],
    ['started', formatTime(t.startedAt)],
    ['ended', formatTime(t.endedAt)],
  ];
  if (t.progress) lines.push(['progress', progressText(t.progress)]);
  if (t.backupId) lines.push(['backup', t.backupId]);
  if (t.error) lines.push(['error', `${t.error.code}: ${t.error.message}`]);
  const disks = (t.result as { disks?: { disk: string; mode: string; bytesRead: number; bytesStored: number }[] } | null)?.disks;
  for (const d of disks ?? []) lines.push([`disk ${d.disk}`, `${d.mode}, read ${formatBytes(d.bytesRead)}, stored ${formatBytes(d.bytesStored)}`]);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`).join('\n');
}
