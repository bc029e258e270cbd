/**
 * Mail through the local MTA's sendmail interface, as Proxmox VE sends its own (Postfix's
 * /usr/sbin/sendmail by default; `notify.sendmail` in the config): `sendmail -i -- RCPT...` with
 * the whole message on stdin. `-i`: a line with a single dot does not end the message. A sendmail
 * that cannot start, exits non-zero or takes longer than `timeoutMs` is CBT_NOTIFY_SENDMAIL_FAILED
 * with its own stderr.
 */
import { spawn } from 'node:child_process';
import { NotifySendmailFailedError } from './notify-errors';

export interface SendMailOptions {
  sendmail: string;
  to: readonly string[];
  message: string;
  timeoutMs?: number;
}

export function sendMail(opts: SendMailOptions): Promise<void> {
  const to = [...opts.to];
  const fail = (reason: string, stderr: string, cause?: unknown) =>
    NotifySendmailFailedError(
      { sendmail: opts.sendmail, to, reason, stderr: stderr.slice(-2000), hint: `check that an MTA is installed (apt install postfix) or set notify.sendmail; test with 'pve-cbt notify test'` },
      cause,
    );
  return new Promise((resolve, reject) => {
    const child = spawn(opts.sendmail, ['-i', '--', ...to], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let settled = false;
    const done = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done(fail(`no answer after ${opts.timeoutMs ?? 30_000} ms`, stderr));
    }, opts.timeoutMs ?? 30_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', (err: NodeJS.ErrnoException) => done(fail(err.code === 'ENOENT' ? 'not found' : err.message, stderr, err)));
    // EPIPE when sendmail exits without reading: its exit status says why.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      if (code === 0) done();
      else done(fail(signal ? `killed by ${signal}` : `exit status ${code}`, stderr));
    });
    child.stdin.end(opts.message);
  });
}
