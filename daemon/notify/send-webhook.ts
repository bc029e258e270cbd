/**
 * The webhook target: an HTTP(S) POST of the JSON summary (`Content-Type: application/json`), with
 * the configured extra headers. Anything but a 2xx answer within `timeoutMs` is
 * CBT_NOTIFY_WEBHOOK_FAILED (the status, or the connection error).
 */
import http from 'node:http';
import https from 'node:https';
import type { WebhookConfig } from '../config/config-schema';
import { NotifyWebhookFailedError } from './notify-errors';

export function sendWebhook(config: WebhookConfig, summary: unknown): Promise<{ status: number }> {
  const body = Buffer.from(JSON.stringify(summary), 'utf8');
  const url = new URL(config.url);
  const fail = (reason: string, status: number | null, cause?: unknown) =>
    NotifyWebhookFailedError({ url: config.url, reason, status, hint: "check notify.webhook.url and that the endpoint accepts a JSON POST; test with 'pve-cbt notify test'" }, cause);
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(
      url,
      {
        method: 'POST',
        headers: { 'user-agent': 'pve-cbt', ...config.headers, 'content-type': 'application/json', 'content-length': body.length },
        timeout: config.timeoutMs,
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve({ status });
          else reject(fail(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, status));
        });
        res.on('error', (err) => reject(fail(err.message, res.statusCode ?? null, err)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer after ${config.timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(fail(err.code && !err.message.includes(err.code) ? `${err.code} ${err.message}` : err.message, null, err)));
    req.end(body);
  });
}
