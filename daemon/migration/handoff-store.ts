/**
 * Reads, writes and removes the claim and handoff files (handoff-format.ts) in the shared repository,
 * through its storage (atomic writes; a missing key reads as undefined).
 */
import type { RepositoryStorage } from '../repository/storage';
import { claimKey, handoffKey, parseClaim, parseHandoff, type BitmapHandoff, type MigrationClaim } from './handoff-format';

export async function readClaim(storage: RepositoryStorage, vmid: number): Promise<MigrationClaim | undefined> {
  return parseClaim(await storage.read(claimKey(vmid)), vmid);
}

export async function readHandoff(storage: RepositoryStorage, vmid: number): Promise<BitmapHandoff | undefined> {
  return parseHandoff(await storage.read(handoffKey(vmid)), vmid);
}

export async function writeClaim(storage: RepositoryStorage, claim: MigrationClaim): Promise<void> {
  await storage.writeAtomic(claimKey(claim.vmid), Buffer.from(`${JSON.stringify(claim)}\n`));
}

export async function writeHandoff(storage: RepositoryStorage, handoff: BitmapHandoff): Promise<void> {
  await storage.writeAtomic(handoffKey(handoff.vmid), Buffer.from(`${JSON.stringify(handoff)}\n`));
}

/** Removes both files of a VM (the handoff first: a claim without a handoff is harmless). */
export async function consumeHandoff(storage: RepositoryStorage, vmid: number): Promise<void> {
  await storage.remove(handoffKey(vmid));
  await storage.remove(claimKey(vmid));
}
