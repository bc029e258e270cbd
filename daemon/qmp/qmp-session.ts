/**
 * Short QMP sessions. qemu-server needs the VM's single QMP socket back quickly, so pve-cbt never
 * holds it across a long operation: connect, run a few commands, close — also when `fn` throws.
 */
import { QmpClient, type QmpConnectOptions } from './qmp-client';

export async function withQmp<T>(
  socketPath: string,
  fn: (qmp: QmpClient) => Promise<T>,
  opts?: QmpConnectOptions,
): Promise<T> {
  const qmp = await QmpClient.connect(socketPath, opts);
  try {
    return await fn(qmp);
  } finally {
    await qmp.close();
  }
}
