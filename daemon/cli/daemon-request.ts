/** A CLI request to the running daemon over the control socket (`socketPath` of the config). */
import { ipcRequest } from '../../shared/ipc/ipc-client';
import type { CommandContext } from './command';

export function daemonRequest<R>(
  ctx: CommandContext<unknown, unknown>,
  type: string,
  payload: unknown,
  opts: { timeoutMs?: number; onProgress?: (p: unknown) => void } = {},
): Promise<R> {
  return ipcRequest<R>(ctx.loadConfig().socketPath, type, payload, {
    timeoutMs: opts.timeoutMs ?? 30_000,
    onProgress: opts.onProgress,
    signal: ctx.signal,
  });
}
