/**
 * The daemon's winston logger. Two outputs:
 * - JSON lines in `<logDir>/pve-cbt-YYYY-MM-DD.log`, rotated daily and by size (`.log.1`, `.log.2`
 *   … for the same day), old files removed after `maxFiles`; the audit file that
 *   winston-daily-rotate-file needs is `<logDir>/.pve-cbt-audit.json`. `read-log.ts` reads these.
 * - one human line per entry on stdout for journald (no timestamp, journald adds one; colours only
 *   on a TTY). When stdout is the journal (JOURNAL_STREAM, journal-stream.ts) each line starts with
 *   its syslog priority `<3>` error, `<4>` warn, `<6>` info, `<7>` verbose/debug, so journald files
 *   it at that level; so do the fallback lines on stderr (`<3>`).
 * Context goes in child loggers: `logger.child({ vmid, disk, jobId })`. Error objects anywhere in
 * the metadata are written as `{ message, code, details, stack }` instead of winston's `{}`.
 *
 * Modes, whatever the umask: the log directory is 0700, log files and the audit file 0600.
 *
 * Logging never stops the daemon. When a log file cannot be written (ENOSPC, EIO, a removed
 * directory), its stream's 'error' is caught: one line saying so goes to `fallbackStream` (stderr,
 * which journald keeps), the broken file output is taken off the logger, the console output goes on,
 * and the file is reopened after `fileRetryMs`. Any other error a transport raises is reported the
 * same way instead of being thrown.
 *
 * Repeated warnings and errors are rate limited (repeat-limiter.ts): per level, message and error
 * code, the first `burst` entries of an interval are written and the rest are summed up in one
 * `suppressed N similar: <message>` entry at the interval's end (and at close).
 */
import fs from 'node:fs';
import path from 'node:path';
import type * as Winston from 'winston';
import type { Logger } from 'winston';
import type DailyRotateFileType from 'winston-daily-rotate-file';
import { DEFAULTS } from '../../shared/config/defaults';
import type { LogLevel } from '../config/config-schema';
import { isJournalStream, journalPrefix } from './journal-stream';
import { formatLogLine, type LogEntry } from './log-entry';
import { RepeatLimiter, type RepeatLimiterOptions } from './repeat-limiter';

export const LOG_FILE_PREFIX = 'pve-cbt-';
export const LOG_FILE_SUFFIX = '.log';
export const AUDIT_FILE = '.pve-cbt-audit.json';

export interface CreateLoggerOptions {
  /** Where the JSON-lines files go; omitted means no files (e.g. short CLI runs). */
  logDir?: string;
  level?: LogLevel;
  /** Rotate at this size: '20m', '512k', or bytes. */
  maxSize?: string;
  /** Keep this many files ('10') or days ('14d'). */
  maxFiles?: string;
  /**
   * Human lines; default process.stdout. `false` turns them off. `journal`: prefix each line with
   * its syslog priority; default: when the stream is the journal stream named by JOURNAL_STREAM.
   */
  console?: false | { stream?: NodeJS.WritableStream; colors?: boolean; journal?: boolean };
  /** Where JOURNAL_STREAM is read; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Fields on every entry (e.g. `{ component: 'daemon' }`). */
  defaultMeta?: Record<string, unknown>;
  /** Where failures of the log files themselves are reported; default process.stderr. */
  fallbackStream?: NodeJS.WritableStream;
  /** How long after a log file failed it is opened again (default 30 s). */
  fileRetryMs?: number;
  /** Rate limit of repeated warnings and errors (defaults: 10 per minute each); false: none. */
  repeatLimit?: RepeatLimiterOptions | false;
}

export const LOG_DIR_MODE = 0o700;
export const LOG_FILE_MODE = 0o600;
const DEFAULT_FILE_RETRY_MS = 30_000;

/** Marks the summary entries of the repeat limiter, which must not be limited themselves. */
const SUMMARY = Symbol('repeat-summary');

/** What closeLogger must stop: retry and summary timers. */
const stoppers = new WeakMap<Logger, () => void>();

function serializeError(err: Error): Record<string, unknown> {
  const e = err as Error & { code?: unknown; details?: unknown };
  return { message: e.message, code: e.code, details: e.details, stack: e.stack };
}

// winston and its file transport are loaded by the first createLogger: a CLI command that logs
// nothing (most of them, `backup` included) does not pay their load time (~0.1-0.2 s here).
let winstonModule: typeof Winston | undefined;
let rotateModule: typeof DailyRotateFileType | undefined;
function winston(): typeof Winston {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (winstonModule ??= require('winston') as typeof Winston);
}
function DailyRotateFile(): typeof DailyRotateFileType {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (rotateModule ??= require('winston-daily-rotate-file') as typeof DailyRotateFileType);
}

let errorsToJsonFormat: Winston.Logform.FormatWrap | undefined;
const errorsToJson = (): Winston.Logform.Format =>
  (errorsToJsonFormat ??= winston().format((info) => {
    for (const key of Object.keys(info)) {
      const v = info[key];
      if (v instanceof Error) info[key] = serializeError(v);
    }
    return info;
  }))();

export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const transports: Winston.transport[] = [];
  const fallback = opts.fallbackStream ?? process.stderr;
  const env = opts.env ?? process.env;
  const fallbackPrefix = isJournalStream(fallback, env) ? journalPrefix('error') : '';
  const report = (message: string, err: unknown): void => {
    const e = err as NodeJS.ErrnoException | undefined;
    try {
      fallback.write(`${fallbackPrefix}pve-cbt: ${message}${e ? `: ${e.code ? `${e.code} ` : ''}${e.message ?? String(e)}` : ''}\n`);
    } catch {
      // Nowhere left to say it; logging still must not throw.
    }
  };
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  let logger: Logger | undefined;

  const logDir = opts.logDir;
  const openFile = (dir: string): DailyRotateFileType => {
    const auditFile = path.join(dir, AUDIT_FILE);
    const t = new (DailyRotateFile())({
      dirname: dir,
      filename: `${LOG_FILE_PREFIX}%DATE%${LOG_FILE_SUFFIX}`,
      datePattern: 'YYYY-MM-DD',
      maxSize: opts.maxSize ?? DEFAULTS.logMaxSize,
      maxFiles: opts.maxFiles ?? DEFAULTS.logMaxFiles,
      auditFile,
      format: winston().format.json(),
      // createWriteStream's mode only ever loses bits to the umask, so 0600 stays 0600.
      options: { flags: 'a', mode: LOG_FILE_MODE },
    });
    // New files get 0600 from `options`; one kept from an older version and the audit file (which
    // the rotator writes with the default mode) are set here.
    t.on('new', (file: string) => {
      chmodQuietly(file, LOG_FILE_MODE);
      chmodQuietly(auditFile, LOG_FILE_MODE);
    });
    const stream = (t as unknown as { logStream?: NodeJS.EventEmitter }).logStream;
    stream?.on('error', (err: Error) => fileFailed(t, dir, err));
    return t;
  };
  const broken = new WeakSet<DailyRotateFileType>();
  const fileFailed = (t: DailyRotateFileType, dir: string, err: Error): void => {
    if (broken.has(t)) return;
    broken.add(t);
    report(`cannot write log files in ${dir}, logging to the console only${closed ? '' : ` and retrying in ${retryMs} ms`}`, err);
    if (!logger || closed) return;
    logger.remove(t);
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (closed || !logger) return;
      logger.add(openFile(dir));
    }, retryMs);
    timer.unref();
    timers.add(timer);
  };
  const retryMs = opts.fileRetryMs ?? DEFAULT_FILE_RETRY_MS;

  if (logDir) {
    fs.mkdirSync(logDir, { recursive: true, mode: LOG_DIR_MODE });
    chmodQuietly(logDir, LOG_DIR_MODE);
    transports.push(openFile(logDir));
  }
  if (opts.console !== false) {
    const stream = opts.console?.stream ?? process.stdout;
    const colors = opts.console?.colors ?? (stream as NodeJS.WriteStream).isTTY === true;
    const journal = opts.console?.journal ?? isJournalStream(stream, env);
    transports.push(
      new (winston().transports.Stream)({
        stream,
        format: winston().format.printf((info) => `${journal ? journalPrefix(info.level) : ''}${formatLogLine(info as LogEntry, { colors: colors && !journal })}`),
      }),
    );
  }
  const limiter = opts.repeatLimit === false ? null : new RepeatLimiter(opts.repeatLimit);
  const formats = [winston().format.timestamp(), errorsToJson()];
  if (limiter) formats.unshift(limitRepeats(limiter)());
  logger = winston().createLogger({
    level: opts.level ?? (DEFAULTS.logLevel as LogLevel),
    defaultMeta: opts.defaultMeta,
    format: winston().format.combine(...formats),
    transports,
    // A logger without outputs (console off, no dir) must still be valid.
    silent: transports.length === 0,
  });
  const l = logger;
  // winston re-emits transport errors on the logger, where an unhandled 'error' would throw.
  l.on('error', (err: unknown) => report('a log output failed', err));

  const writeSummaries = (now: number): void => {
    if (!limiter) return;
    for (const s of limiter.flush(now)) {
      const { level, message, code } = s.sample as { level: string; message: string; code?: unknown };
      l.log({ level, message: `suppressed ${s.suppressed} similar: ${message}`, suppressed: s.suppressed, ...(code ? { code } : {}), [SUMMARY]: true });
    }
  };
  if (limiter) {
    const timer = setInterval(() => writeSummaries(Date.now()), limiter.intervalMs);
    timer.unref();
    timers.add(timer);
  }
  const stop = (flush: boolean): void => {
    if (closed) return;
    if (flush) writeSummaries(Number.POSITIVE_INFINITY);
    closed = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };
  stoppers.set(l, () => stop(true));
  l.once('finish', () => stop(false));
  return l;
}

/** Drops repeats of a warning or error beyond the limiter's burst (see the module header). */
const limitRepeats = (limiter: RepeatLimiter) =>
  winston().format((info) => {
    if ((info as { [SUMMARY]?: boolean })[SUMMARY]) return info;
    if (info.level !== 'warn' && info.level !== 'error') return info;
    const code = typeof info.code === 'string' ? info.code : (info.error as { code?: unknown } | undefined)?.code;
    const key = `${info.level}|${String(info.message)}|${typeof code === 'string' ? code : ''}`;
    return limiter.admit(key, { level: info.level, message: info.message, code }, Date.now()) ? info : false;
  });

function chmodQuietly(file: string, mode: number): void {
  try {
    fs.chmodSync(file, mode);
  } catch {
    // Not there yet, or not ours (a CLI run as another user): the directory's 0700 still holds.
  }
}

/**
 * Ends the logger and resolves once every file transport has flushed its last line to disk.
 * winston's own 'finish' fires before the rotating file stream is closed, so wait for the
 * transport's close-time 'finish' as well (bounded, in case a transport never opened a file).
 */
export function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  stoppers.get(logger)?.();
  const files = logger.transports.filter((t) => t instanceof DailyRotateFile());
  return new Promise((resolve) => {
    logger.once('finish', () => {
      const flushed = files.map(
        (t) =>
          new Promise<void>((done) => {
            const timer = setTimeout(done, timeoutMs);
            t.once('finish', () => {
              clearTimeout(timer);
              done();
            });
          }),
      );
      void Promise.all(flushed).then(() => resolve());
    });
    logger.end();
  });
}
