/**
 * The mirror's buf-size under a live restore's speed limit (live-restore-qmp.ts): about one second
 * of the limit in 64 KiB steps, never below 64 KiB or above QEMU's 16 MiB default; no limit leaves
 * QEMU's default.
 */
import { mirrorBufSize } from '../../../daemon/restore/live-restore-qmp';

const KiB = 1024;
const MiB = 1024 * KiB;

test.each([
  [0, undefined],
  [-1, undefined],
  [Number.NaN, undefined],
  [1, 64 * KiB],
  [1 * KiB, 64 * KiB],
  [64 * KiB, 64 * KiB],
  [64 * KiB + 1, 128 * KiB],
  [10 * MiB, 10 * MiB],
  [10 * MiB + 5, 10 * MiB + 64 * KiB],
  [16 * MiB, 16 * MiB],
  [1024 * MiB, 16 * MiB],
])('speed %p B/s -> buf-size %p', (speed, want) => {
  expect(mirrorBufSize(speed)).toBe(want);
});
