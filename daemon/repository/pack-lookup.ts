/**
 * The global lookup of a format-2 repository: digest → where the blob lives
 * ({packId, offset, storedLength, plainLength, kind}), for reads, restore, verify, GC and dedup.
 *
 * Built lazily from the packs' index files (pack-index-file.ts): `refresh` lists `.packs/*` and
 * reads every .idx it does not know yet (and forgets packs whose .idx went away); a pack without
 * .idx is unsealed and does not exist here. A caller that misses asks for one refresh before it
 * answers "missing" (`getFresh`): another writer, in this process or another, may have sealed a
 * pack since.
 *
 * Memory (the daemon's RSS target is flat in disk size): per pack the .idx entry section as read
 * (52 bytes per blob, sorted by digest), plus one open-addressing hash table in a
 * SharedArrayBuffer, 16 bytes a slot at ≤ 1/2 load: an 8-byte digest prefix, the pack number and
 * the entry number in that pack. So about 84 bytes per blob, no strings per blob.
 *
 * The same table is the blob workers' dedup knowledge (blob-workers.ts): a worker probes it by
 * prefix only (`probeDigestPrefix`, self-contained, run from source on the workers) and answers
 * "maybe known" on a hit, which the main thread confirms here against the full digest; a false
 * positive costs one more worker trip, a miss (a slot added a moment later) a duplicate that is
 * left out of the .idx. Slots of blobs a writer appended but has not sealed yet are marked
 * PENDING (the session knows where they are); on seal they get their pack and entry, on abort
 * they become TOMBSTONE. The table grows by replacement: callers send `table` with every job, so
 * a worker always probes the current one.
 *
 * Duplicates (one digest in two packs, e.g. a repaired copy) are allowed: `all` answers every
 * location, readers try them in turn.
 */
import type { RepositoryStorage } from './storage';
import { PACKS_DIR, isPackId, packIndexKeyOf } from './pack-format';
import { decodePackIndex, entryAt, entryDigest, type PackIndexEntry } from './pack-index-file';
import type { BlobKind } from './file-formats';

export interface BlobLocation {
  packId: string;
  offset: number;
  storedLength: number;
  plainLength: number;
  kind: BlobKind;
}

/** Slot field 2 (pack number + 1) of a blob appended but not yet sealed. */
export const SLOT_PENDING = 0xfffffffe;
/** Slot field 2 of a removed blob (probing goes on past it). */
export const SLOT_TOMBSTONE = 0xffffffff;

interface PackRecord {
  id: string;
  entries: Buffer;
  count: number;
}

/**
 * True if the table has a slot with the digest's 8-byte prefix that is not a tombstone.
 * Self-contained (the blob workers run its source). Slot i: u32 [4i] prefix lo, [4i+1] prefix
 * hi, [4i+2] pack number + 1 (0 empty, 0xfffffffe pending, 0xffffffff tombstone), [4i+3] entry.
 */
export function probeDigestPrefix(table: Uint32Array, digest: Buffer): boolean {
  const mask = (table.length >>> 2) - 1;
  const lo = digest.readUInt32LE(0);
  const hi = digest.readUInt32LE(4);
  for (let i = lo & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
    const p = Atomics.load(table, 4 * i + 2);
    if (p === 0) return false;
    if (p !== 0xffffffff && table[4 * i] === lo && table[4 * i + 1] === hi) return true;
  }
  return false;
}

export class PackLookup {
  private readonly packs: (PackRecord | null)[] = [];
  private readonly packNo = new Map<string, number>();
  private slots: Uint32Array;
  private used = 0;
  /** .idx files that failed their check, by pack id (verify reports them, GC refuses to sweep). */
  readonly corrupt = new Map<string, string>();
  private loaded = false;
  private refreshing: Promise<void> | null = null;
  private generation = 0;

  constructor(private readonly storage: RepositoryStorage, initialSlots = 1 << 12) {
    this.slots = new Uint32Array(new SharedArrayBuffer(initialSlots * 16));
  }

  /** The shared table the workers probe (replaced when it grows: pass the current one per job). */
  get table(): Uint32Array {
    return this.slots;
  }

  /** Counts refreshes: a caller that saw no refresh since it began may ask for one. */
  get generationNow(): number {
    return this.generation;
  }

  get packCount(): number {
    return this.packNo.size;
  }

  /** Loads the .idx files once. */
  async ensureLoaded(): Promise<void> {
    if (!this.loaded) await this.refresh();
  }

  /** Reads the .idx files not known yet and forgets packs whose .idx is gone; concurrent calls share one run. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** Every pack id with a readable .idx. */
  packIds(): string[] {
    return [...this.packNo.keys()];
  }

  /** The entries of one known pack. */
  packEntries(packId: string): PackIndexEntry[] {
    const n = this.packNo.get(packId);
    const p = n === undefined ? null : this.packs[n];
    if (!p) return [];
    return Array.from({ length: p.count }, (_, i) => entryAt(p.entries, i));
  }

  /** A location of the blob, or null. Loads lazily. */
  async get(digest: string): Promise<BlobLocation | null> {
    return (await this.all(digest))[0] ?? null;
  }

  /** Every location of the blob, refreshing once when there is none (see the module header). */
  async getFresh(digest: string): Promise<BlobLocation[]> {
    await this.ensureLoaded();
    const gen = this.generation;
    let locs = this.allSync(digest);
    if (locs.length) return locs;
    if (this.refreshing) await this.refreshing;
    if (this.generation === gen) await this.refresh();
    locs = this.allSync(digest);
    return locs;
  }

  async all(digest: string): Promise<BlobLocation[]> {
    await this.ensureLoaded();
    return this.allSync(digest);
  }

  /** Every location known now (no loading). */
  allSync(digestHex: string): BlobLocation[] {
    const digest = Buffer.from(digestHex, 'hex');
    const out: BlobLocation[] = [];
    const mask = (this.slots.length >>> 2) - 1;
    const lo = digest.readUInt32LE(0);
    const hi = digest.readUInt32LE(4);
    for (let i = lo & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const p = this.slots[4 * i + 2];
      if (p === 0) break;
      if (p === SLOT_TOMBSTONE || p === SLOT_PENDING || this.slots[4 * i] !== lo || this.slots[4 * i + 1] !== hi) continue;
      const pack = this.packs[p - 1];
      if (!pack) continue;
      const e = this.slots[4 * i + 3];
      if (!entryDigest(pack.entries, e).equals(digest)) continue;
      const { offset, storedLength, plainLength, kind } = entryAt(pack.entries, e);
      out.push({ packId: pack.id, offset, storedLength, plainLength, kind });
    }
    return out;
  }

  /** Adds a sealed pack (its .idx entry section); slots pending for its digests are taken over. */
  addPack(packId: string, entries: Buffer, count: number): void {
    if (this.packNo.has(packId)) return;
    const no = this.packs.length;
    this.packs.push({ id: packId, entries, count });
    this.packNo.set(packId, no);
    for (let e = 0; e < count; e++) {
      const d = entryDigest(entries, e);
      const slot = this.findSlot(d, SLOT_PENDING);
      if (slot >= 0) {
        this.slots[4 * slot + 3] = e;
        Atomics.store(this.slots, 4 * slot + 2, no + 1);
      } else this.insertSlot(d, no + 1, e);
    }
  }

  /** Forgets a pack (its .idx was removed): its slots become tombstones. */
  removePack(packId: string): void {
    const no = this.packNo.get(packId);
    if (no === undefined) return;
    this.packNo.delete(packId);
    this.packs[no] = null;
    for (let i = 0; i < this.slots.length >>> 2; i++) if (this.slots[4 * i + 2] === no + 1) Atomics.store(this.slots, 4 * i + 2, SLOT_TOMBSTONE);
  }

  /** Marks a digest appended by a writer and not sealed yet (dedup knowledge for the workers). */
  addPending(digest: Buffer): void {
    this.insertSlot(digest, SLOT_PENDING, 0);
  }

  /** A pending digest that will not be sealed (a duplicate left out, or an aborted session). */
  dropPending(digest: Buffer): void {
    const slot = this.findSlot(digest, SLOT_PENDING);
    if (slot >= 0) Atomics.store(this.slots, 4 * slot + 2, SLOT_TOMBSTONE);
  }

  private findSlot(digest: Buffer, value: number): number {
    const mask = (this.slots.length >>> 2) - 1;
    const lo = digest.readUInt32LE(0);
    const hi = digest.readUInt32LE(4);
    for (let i = lo & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const p = this.slots[4 * i + 2];
      if (p === 0) return -1;
      if (p === value && this.slots[4 * i] === lo && this.slots[4 * i + 1] === hi) return i;
    }
    return -1;
  }

  private insertSlot(digest: Buffer, value: number, entry: number): void {
    if ((this.used + 1) * 2 > this.slots.length >>> 2) this.grow();
    const mask = (this.slots.length >>> 2) - 1;
    const lo = digest.readUInt32LE(0);
    const hi = digest.readUInt32LE(4);
    let i = lo & mask;
    while (this.slots[4 * i + 2] !== 0) i = (i + 1) & mask;
    this.slots[4 * i] = lo;
    this.slots[4 * i + 1] = hi;
    this.slots[4 * i + 3] = entry;
    Atomics.store(this.slots, 4 * i + 2, value);
    this.used++;
  }

  /** A table twice as large (tombstones dropped); workers get it with their next job. */
  private grow(): void {
    const old = this.slots;
    let live = 0;
    for (let i = 0; i < old.length >>> 2; i++) if (old[4 * i + 2] !== 0 && old[4 * i + 2] !== SLOT_TOMBSTONE) live++;
    let slots = old.length >>> 2;
    while ((live + 1) * 2 > slots / 2) slots *= 2;
    if (slots === old.length >>> 2) slots *= 2;
    const next = new Uint32Array(new SharedArrayBuffer(slots * 16));
    const mask = slots - 1;
    for (let i = 0; i < old.length >>> 2; i++) {
      const p = old[4 * i + 2];
      if (p === 0 || p === SLOT_TOMBSTONE) continue;
      let j = old[4 * i] & mask;
      while (next[4 * j + 2] !== 0) j = (j + 1) & mask;
      next[4 * j] = old[4 * i];
      next[4 * j + 1] = old[4 * i + 1];
      next[4 * j + 2] = p;
      next[4 * j + 3] = old[4 * i + 3];
    }
    this.slots = next;
    this.used = live;
  }

  private async doRefresh(): Promise<void> {
    const seen = new Set<string>();
    for (const shard of await this.storage.list(PACKS_DIR)) {
      for (const name of await this.storage.list(`${PACKS_DIR}/${shard}`)) {
        if (!name.endsWith('.idx')) continue;
        const id = name.slice(0, -4);
        if (!isPackId(id)) continue;
        seen.add(id);
        if (this.packNo.has(id)) continue;
        const data = await this.storage.read(packIndexKeyOf(id));
        if (!data) continue;
        const decoded = decodePackIndex(data);
        if ('corrupt' in decoded) {
          this.corrupt.set(id, decoded.corrupt);
          continue;
        }
        this.corrupt.delete(id);
        this.addPack(id, decoded.entries, decoded.count);
      }
    }
    for (const id of [...this.packNo.keys()]) if (!seen.has(id)) this.removePack(id);
    for (const id of [...this.corrupt.keys()]) if (!seen.has(id)) this.corrupt.delete(id);
    this.loaded = true;
    this.generation++;
  }
}
