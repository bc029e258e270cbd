/**
 * Extents as NBD block status reports them: a byte range and the context's flags for it
 * (base:allocation: hole = 1, zero = 2; qemu:dirty-bitmap: dirty = 1). Pure functions only.
 */
export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

/** Joins neighbours that touch and carry the same flags; drops empty extents. Input must be sorted. */
export function mergeExtents(extents: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.length <= 0) continue;
    const last = out[out.length - 1];
    if (last && last.flags === e.flags && last.offset + last.length === e.offset) {
      last.length += e.length;
    } else {
      out.push({ offset: e.offset, length: e.length, flags: e.flags });
    }
  }
  return out;
}

/** Cuts extents to [offset, offset + length); extents outside are dropped. */
export function clipExtents(extents: Extent[], offset: number, length: number): Extent[] {
  const end = offset + length;
  const out: Extent[] = [];
  for (const e of extents) {
    const s = Math.max(e.offset, offset);
    const t = Math.min(e.offset + e.length, end);
    if (t > s) out.push({ offset: s, length: t - s, flags: e.flags });
  }
  return out;
}

/**
 * Turns block status descriptors (length, flags pairs that start at `offset`) into extents.
 * The caller checks the descriptors against the request.
 */
export function descriptorsToExtents(offset: number, descriptors: ReadonlyArray<readonly [number, number]>): Extent[] {
  const out: Extent[] = [];
  let at = offset;
  for (const [length, flags] of descriptors) {
    out.push({ offset: at, length, flags });
    at += length;
  }
  return out;
}

/** Extents whose flags match `(flags & mask) === value`, e.g. allocated data: mask HOLE|ZERO, value 0. */
export function selectExtents(extents: Extent[], mask: number, value: number): Extent[] {
  return extents.filter((e) => (e.flags & mask) === value);
}

/**
 * Splits [offset, offset + length) into pieces no longer than `maxLength`, cutting at multiples of
 * `align` where possible so that requests stay aligned to the server's preferred block size.
 */
export function splitRange(offset: number, length: number, maxLength: number, align = 1): Array<{ offset: number; length: number }> {
  if (maxLength <= 0) throw new RangeError(`maxLength must be positive, got ${maxLength}`);
  const aligning = align > 1 && maxLength >= align;
  const step = aligning ? maxLength - (maxLength % align) : maxLength;
  const out: Array<{ offset: number; length: number }> = [];
  let at = offset;
  const end = offset + length;
  while (at < end) {
    let next = Math.min(end, at + step);
    if (aligning && next < end) {
      const aligned = next - (next % align);
      if (aligned > at) next = aligned;
    }
    out.push({ offset: at, length: next - at });
    at = next;
  }
  return out;
}
