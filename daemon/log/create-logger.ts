/**
 * The daemon's winston logger. Two outputs:
 * - JSON lines in `<logDir>/pve-cbt-YYYY-MM-DD.log`, rotated daily and by size (`.log.1`, `.log.2`
 *   … for the same day), old files removed after `maxFiles`; the audit file that
 *   winston-daily-rotate-file needs is `<logDir>/.pve-cbt-audit.json`. `read-log.ts` reads these.
 * - one human line per entry on stdout for journald (no timestamp, journald adds one; colours only
 *   on a TTY).
 * Context goes in child loggers: `logger.child({ vmid, disk, jobId })`. Error objects anywhere in
 * the metadata are written as `{ message, code, details, stack }` instead of winston's `{}`.
 */
import fs from 'node:fs';
import path from 'node:path';
import winston, { type Logger } from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import { DEFAULTS } from '../../shared/config/defaults';
import type { LogLevel } from '../config/config-schema';
import { formatLogLine, type LogEntry } from './log-entry';

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
  /** Human lines; default process.stdout. `false` turns them off. */
  console?: false | { stream?: NodeJS.WritableStream; colors?: boolean };
  /** Fields on every entry (e.g. `{ component: 'daemon' }`). */
  defaultMeta?: Record<string, unknown>;
}

function serializeError(err: Error): Record<string, unknown> {
  const e = err as Error & { code?: unknown; details?: unknown };
  return { message: e.message, code: e.code, details: e.details, stack: e.stack };
}

const errorsToJson = winston.format((info) => {
  for (const key of Object.keys(info)) {
    const v = info[key];
    if (v instanceof Error) info[key] = serializeError(v);
  }
  return info;
});

export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const transports: winston.transport[] = [];
  if (opts.logDir) {
    fs.mkdirSync(opts.logDir, { recursive: true });
    transports.push(
      new DailyRotateFile({
        dirname: opts.logDir,
        filename: `${LOG_FILE_PREFIX}%DATE%${LOG_FILE_SUFFIX}`,
        datePattern: 'YYYY-MM-DD',
        maxSize: opts.maxSize ?? DEFAULTS.logMaxSize,
        maxFiles: opts.maxFiles ?? DEFAULTS.logMaxFiles,
        auditFile: path.join(opts.logDir, AUDIT_FILE),
        format: winston.format.json(),
      }),
    );
  }
  if (opts.console !== false) {
    const stream = opts.console?.stream ?? process.stdout;
    const colors = opts.console?.colors ?? (stream as NodeJS.WriteStream).isTTY === true;
    transports.push(
      new winston.transports.Stream({
        stream,
        format: winston.format.printf((info) => formatLogLine(info as LogEntry, { colors })),
      }),
    );
  }
  return winston.createLogger({
    level: opts.level ?? (DEFAULTS.logLevel as LogLevel),
    defaultMeta: opts.defaultMeta,
    format: winston.format.combine(winston.format.timestamp(), errorsToJson()),
    transports,
    // A logger without outputs (console off, no dir) must still be valid.
    silent: transports.length === 0,
  });
}

/**
 * Ends the logger and resolves once every file transport has flushed its last line to disk.
 * winston's own 'finish' fires before the rotating file stream is closed, so wait for the
 * transport's close-time 'finish' as well (bounded, in case a transport never opened a file).
 */
export function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  const files = logger.transports.filter((t) => t instanceof DailyRotateFile);
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
