import { PassThrough } from 'node:stream';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { createProgressLog } from '../../../daemon/log/progress-log';

test('logs at most once per interval and once at completion, with context from the child logger', async () => {
  const out = new PassThrough();
  const lines: string[] = [];
  out.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
  const logger = createLogger({ console: { stream: out } });
  let t = 0;
  const report = createProgressLog({ logger: logger.child({ vmid: 101, disk: 'scsi0' }), message: 'reading', intervalMs: 30_000, now: () => t });
  for (t = 1000; t <= 65_000; t += 1000) report({ done: t * 1000, total: 65_000_000 });
  report({ done: 65_000_000, total: 65_000_000 });
  await closeLogger(logger);
  expect(lines).toEqual([
    'info  vm=101 disk=scsi0 reading done=30000000 total=65000000 percent=46 bytesPerSecond=1000000',
    'info  vm=101 disk=scsi0 reading done=60000000 total=65000000 percent=92 bytesPerSecond=1000000',
    'info  vm=101 disk=scsi0 reading done=65000000 total=65000000 percent=100 bytesPerSecond=1000000',
  ]);
});
