/**
 * sd_notify(3) for `Type=notify`: tells systemd when the daemon is ready (READY=1, after the socket
 * accepts requests), reloading (RELOADING=1 … READY=1 around a SIGHUP) and stopping (STOPPING=1),
 * with a STATUS= line for `systemctl status`.
 *
 * The protocol is one datagram on the AF_UNIX socket named by $NOTIFY_SOCKET. Node has no unix
 * datagram sockets (`dgram` is UDP only, `net` is stream only), so the message goes through
 * systemd's own `systemd-notify` (on every systemd system, no new dependency). Its datagram comes
 * from its own PID, which systemd accepts with `NotifyAccess=all` (set in the unit). systemd-notify
 * waits by default until the manager has processed the message (a BARRIER=1 message carrying a
 * pipe fd that the manager closes), so the message is never lost because it exited first.
 *
 * Without NOTIFY_SOCKET (a terminal, tests, Type=simple) nothing is sent. A failure is logged as a
 * warning and never stops the daemon; systemd then reports the start as timed out, which says why.
 */
import { execFile } from 'node:child_process';
import type { Logger } from 'winston';
import { programPath } from '../proc/external-programs';

export type NotifyFields = Record<string, string>;

/** `systemd-notify` arguments for the fields: `KEY=VALUE` each, newlines flattened (one field per line). */
export function notifyArgs(fields: NotifyFields): string[] {
  return Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`);
}

/** Resolves true when systemd-notify delivered the message, false when there is no NOTIFY_SOCKET or it failed. */
export function sdNotify(fields: NotifyFields, opts: { env?: NodeJS.ProcessEnv; logger?: Logger; timeoutMs?: number } = {}): Promise<boolean> {
  const env = opts.env ?? process.env;
  if (!env.NOTIFY_SOCKET) return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile(programPath('systemd-notify', env), notifyArgs(fields), { env, timeout: opts.timeoutMs ?? 10_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err) opts.logger?.warn('sd_notify failed', { fields: Object.keys(fields), error: err, stderr: stderr.trim() });
      resolve(!err);
    });
  });
}
