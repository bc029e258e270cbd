/**
 * A real winston logger whose JSON entries land in an array, for tests that check what was logged.
 */
import { Writable } from 'node:stream';
import winston from 'winston';

export function memoryLogger<T = Record<string, unknown>>(lines: T[], level = 'debug'): winston.Logger {
  return winston.createLogger({
    level,
    format: winston.format.json(),
    transports: [
      new winston.transports.Stream({
        stream: new Writable({
          write(chunk: Buffer, _enc, cb): void {
            lines.push(JSON.parse(chunk.toString()) as T);
            cb();
          },
        }),
      }),
    ],
  });
}
