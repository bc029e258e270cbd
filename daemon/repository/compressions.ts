/**
 * How new blobs are stored (the config's `compression` is checked against this list). Its own
 * module so that the config schema, which every CLI start loads, does not load lz4 with
 * file-formats.ts (which re-exports it).
 */
export const COMPRESSIONS = ['auto', 'none'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
