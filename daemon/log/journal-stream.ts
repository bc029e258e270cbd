/**
 * journald priorities for the daemon's stdout lines, as sd-daemon(3) describes: a line that starts
 * with `<N>` is stored at syslog priority N (`journalctl -p err` then finds failures), and the
 * prefix itself is removed by journald.
 *
 * When: only when stdout IS the journal. systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service
 * whose stdout or stderr is connected to journald; per systemd.exec(5) the process compares that with
 * fstat() of its own fd, because the variable is inherited by children whose output goes elsewhere
 * (e.g. `pve-cbt daemon > file` started from a unit's shell). Not "whenever stdout is not a TTY": a
 * pipe into a file or another program must keep plain lines. `pve-cbt daemon` in a terminal never
 * gets prefixes.
 */
import fs from 'node:fs';

/** winston level → syslog priority (sd-daemon.h: SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7). */
export const SYSLOG_PRIORITY: Readonly<Record<string, number>> = Object.freeze({
  error: 3,
  warn: 4,
  info: 6,
  http: 6,
  verbose: 7,
  debug: 7,
  silly: 7,
});

export function journalPrefix(level: string): string {
  return `<${SYSLOG_PRIORITY[level] ?? 6}>`;
}

/** `JOURNAL_STREAM` parsed; undefined when unset or malformed. */
export function parseJournalStream(value: string | undefined): { dev: bigint; ino: bigint } | undefined {
  const m = /^(\d+):(\d+)$/.exec(value ?? '');
  return m ? { dev: BigInt(m[1]), ino: BigInt(m[2]) } : undefined;
}

/** True when `stream` is a file descriptor that is the journal stream named by JOURNAL_STREAM. */
export function isJournalStream(stream: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  const want = parseJournalStream(env.JOURNAL_STREAM);
  const fd = (stream as { fd?: unknown }).fd;
  if (!want || typeof fd !== 'number') return false;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    return st.dev === want.dev && st.ino === want.ino;
  } catch {
    return false;
  }
}
