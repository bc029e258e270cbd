/**
 * Which image formats keep a QEMU dirty bitmap across a QEMU exit: only qcow2 stores bitmaps in
 * the image ("persistent"); on raw and vmdk a bitmap lives in QEMU's memory ("transient") and is
 * gone when that QEMU process ends. The one place this rule is written: the ledger's demotions,
 * the mode decision and the disk planner all ask here.
 */

const PERSISTENT_BITMAP_FORMATS: ReadonlySet<string> = new Set(['qcow2']);

/** Whether a bitmap on an image of `format` survives QEMU's exit (and can be read offline). */
export function bitmapPersists(format: string): boolean {
  return PERSISTENT_BITMAP_FORMATS.has(format);
}
