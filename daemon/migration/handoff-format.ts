/**
 * The two small files through which a VM's bitmap records follow it across a live migration, kept
 * in the repository every node of the cluster shares (nothing else is shared between the daemons;
 * /etc/pve is Proxmox's and stays untouched):
 *
 *   .handoff/<vmid>/claim.json    written by the TARGET node's daemon when the hookscript's
 *                                 pre-start with PVE_MIGRATED_FROM arrives: {vmid, from, to,
 *                                 claimId = that event's seq (a UUID the target's hook made)}
 *   .handoff/<vmid>/handoff.json  written by the SOURCE node's daemon once it finds the VM's config
 *                                 in the target's folder: {vmid, from, to, claimId (from the claim
 *                                 it found, or null), disks: the bitmaps its ledger held valid for
 *                                 the QEMU that was migrated}; then it drops its ledger rows
 *
 * The claim id ties a handoff to exactly one migration without trusting clocks: the source can only
 * echo it after the target's pre-start, and the target accepts only its own. Both files are written
 * atomically (temporary file + rename) and removed by the target once it has adopted the records
 * (adopt-migrated.ts) or found them unusable. A missing or malformed file is no handoff.
 */
export const HANDOFF_DIR = '.handoff';
export const CLAIM_FORMAT = 'pve-cbt-migration-claim-1';
export const HANDOFF_FORMAT = 'pve-cbt-bitmap-handoff-1';

export interface MigrationClaim {
  readonly format: typeof CLAIM_FORMAT;
  readonly vmid: number;
  readonly from: string;
  readonly to: string;
  readonly claimId: string;
  readonly claimedAt: string;
}

export interface HandoffDisk {
  readonly disk: string;
  readonly format: string;
  readonly bitmapName: string;
  readonly generation: number;
}

export interface BitmapHandoff {
  readonly format: typeof HANDOFF_FORMAT;
  readonly vmid: number;
  readonly from: string;
  readonly to: string;
  readonly claimId: string | null;
  readonly writtenAt: string;
  readonly disks: readonly HandoffDisk[];
}

export function claimKey(vmid: number): string {
  return `${HANDOFF_DIR}/${vmid}/claim.json`;
}

export function handoffKey(vmid: number): string {
  return `${HANDOFF_DIR}/${vmid}/handoff.json`;
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 255;
const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function parseObject(data: Buffer | null): Record<string, unknown> | undefined {
  if (!data) return undefined;
  try {
    const v: unknown = JSON.parse(data.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function parseClaim(data: Buffer | null, vmid: number): MigrationClaim | undefined {
  const o = parseObject(data);
  if (!o || o.format !== CLAIM_FORMAT || o.vmid !== vmid) return undefined;
  if (!isStr(o.from) || !isStr(o.to) || !isStr(o.claimId) || !isStr(o.claimedAt)) return undefined;
  return o as unknown as MigrationClaim;
}

export function parseHandoff(data: Buffer | null, vmid: number): BitmapHandoff | undefined {
  const o = parseObject(data);
  if (!o || o.format !== HANDOFF_FORMAT || o.vmid !== vmid) return undefined;
  if (!isStr(o.from) || !isStr(o.to) || !(o.claimId === null || isStr(o.claimId)) || !isStr(o.writtenAt) || !Array.isArray(o.disks)) return undefined;
  const disksOk = o.disks.every((d: unknown) => {
    const x = d as Record<string, unknown> | null;
    return x !== null && typeof x === 'object' && isStr(x.disk) && isStr(x.format) && isStr(x.bitmapName) && isInt(x.generation);
  });
  return disksOk ? (o as unknown as BitmapHandoff) : undefined;
}
