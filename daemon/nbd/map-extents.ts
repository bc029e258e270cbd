/**
 * The whole extent map of an export (or of a range) for one metadata context, fetched in bounded
 * block status steps so that one reply never has to describe more than `stepSize` bytes, and merged.
 */
import { type Extent, mergeExtents } from './extent';
import type { NbdClient } from './nbd-client';

export const DEFAULT_MAP_STEP = 1024 * 1024 * 1024;

export async function mapExtents(
  client: NbdClient,
  context: string,
  opts: { offset?: number; length?: number; stepSize?: number } = {},
): Promise<Extent[]> {
  const offset = opts.offset ?? 0;
  const length = opts.length ?? client.size - offset;
  const step = opts.stepSize ?? DEFAULT_MAP_STEP;
  const out: Extent[] = [];
  for (let at = offset; at < offset + length; at += step) {
    const part = await client.blockStatus(context, at, Math.min(step, offset + length - at));
    for (const e of part) out.push(e);
  }
  return mergeExtents(out);
}
