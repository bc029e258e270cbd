/**
 * Reads one chunk whole from the source disk over an NBD connection of its own, beside the
 * connections of the running read. The chunk assembler asks for it when a partly changed chunk's
 * base copy cannot be read from the repository (missing or damaged): the source still has the
 * bytes, from the same point in time (the fleecing snapshot, or a stopped VM's image).
 */
import type { NbdClient } from '../nbd/nbd-client';

export async function readWholeChunk(connect: () => Promise<NbdClient>, offset: number, into: Buffer): Promise<void> {
  const client = await connect();
  try {
    await client.readInto(offset, into);
  } finally {
    await client.close();
  }
}
