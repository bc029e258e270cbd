/**
 * The daemon's memory and the repository's metadata, flat in disk size (issue 15), through the CLI
 * and the daemon as its own process (bench/support/cli-rig.ts), on real QEMU:
 *
 *   RSS, 2 GiB        VmHWM (peak resident set) of a fresh daemon after `pve-cbt backup` of a 2 GiB
 *                     qcow2 holding 1 GiB of random data (full); target ≤ 200 MiB
 *   RSS, 64 GiB       the same 1 GiB of data on a 64 GiB sparse qcow2, a fresh daemon; target: the
 *                     2 GiB figure of the same run × 1.1 at most (flat in disk size)
 *   metadata          on the 64 GiB disk after its full: the repository's growth outside the blob
 *                     store (index pages, manifest, verify/lock files) by one incremental of 16
 *                     changed 64 KiB blocks and by one of 160; target: the larger change costs at
 *                     most 10 × 1.25 the smaller one's metadata (proportional to the change), and the
 *                     small one at most 64 KiB per changed block plus 64 KiB (not the disk's size)
 * Baselines: the idle daemon's VmHWM of the same run, and the change's own bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BenchResult } from './support/bench-result';
import { changeBlocks, createCliRig, disksOf, MiB, type CliRig } from './support/cli-rig';
import { settle } from './support/settle';

const RSS_LIMIT = 200 * MiB;
/** Directories of blob data (format 1 chunks, format 2 packs): everything else is metadata. */
const BLOB_DIRS = new Set(['.chunks', '.packs', '.data']);

function treeBytes(dir: string, skipTop: Set<string>): number {
  let total = 0;
  const walk = (d: string, top: boolean): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (top && skipTop.has(e.name)) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, false);
      else if (e.isFile()) total += fs.statSync(p).size;
    }
  };
  walk(dir, true);
  return total;
}

async function fullWithFreshDaemon(rig: CliRig): Promise<{ idle: number; peak: number; ms: number }> {
  await rig.startDaemon();
  await rig.vm.start();
  const idle = rig.daemonPeakRss();
  settle();
  const r = await rig.cli(['backup', String(rig.vm.vmid), '--json']);
  const disks = disksOf(r.json);
  if (r.code !== 0 || disks[0]?.mode !== 'full') throw new Error(`full failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return { idle, peak: rig.daemonPeakRss(), ms: r.ms };
}

async function metadataOf(rig: CliRig, blocks: number, seed: number): Promise<{ meta: number; changed: number; stored: number }> {
  const changed = (await changeBlocks(rig.vm, blocks, seed, rig.work)) * 64 * 1024;
  const before = treeBytes(rig.repository, BLOB_DIRS);
  const r = await rig.cli(['backup', String(rig.vm.vmid), '--json']);
  const disks = disksOf(r.json);
  if (r.code !== 0 || disks[0]?.mode !== 'incremental') throw new Error(`incremental failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return { meta: treeBytes(rig.repository, BLOB_DIRS) - before, changed, stored: disks[0].bytesStored };
}

export async function run(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const small = await createCliRig({ sizeMiB: 2048, dataMiB: 1024 });
  let s: { idle: number; peak: number; ms: number };
  try {
    s = await fullWithFreshDaemon(small);
  } finally {
    await small.cleanup();
  }
  const big = await createCliRig({ sizeMiB: 64 * 1024, dataMiB: 1024 });
  try {
    const b = await fullWithFreshDaemon(big);
    results.push({ name: 'daemon VmHWM idle (before the full)', value: Math.round(s.idle / MiB), unit: 'MiB' });
    results.push({
      name: `daemon VmHWM after a full of 2 GiB (1 GiB data, ${Math.round(s.ms)} ms)`,
      value: Math.round(s.peak / MiB),
      unit: 'MiB',
      baseline: '200 MiB',
      ratio: s.peak / RSS_LIMIT,
      target: '<= 1',
      pass: s.peak <= RSS_LIMIT,
    });
    results.push({
      name: `daemon VmHWM after a full of 64 GiB sparse (1 GiB data, ${Math.round(b.ms)} ms)`,
      value: Math.round(b.peak / MiB),
      unit: 'MiB',
      baseline: 'the 2 GiB full',
      ratio: b.peak / s.peak,
      target: '<= 1.1',
      pass: b.peak <= 1.1 * s.peak,
    });
    const m16 = await metadataOf(big, 16, 16);
    const m160 = await metadataOf(big, 160, 160);
    results.push({
      name: `metadata of an incremental, 64 GiB disk, ${m16.changed / 65536} blocks changed (stored ${m16.stored} B)`,
      value: m16.meta,
      unit: 'B',
      baseline: `changed bytes ${m16.changed}`,
      ratio: m16.meta / m16.changed,
      target: `<= ${(m16.changed + 65536) / m16.changed} (64 KiB per block + 64 KiB)`,
      pass: m16.meta <= m16.changed + 65536,
    });
    const growth = m160.meta / m16.meta;
    const changeGrowth = m160.changed / m16.changed;
    results.push({
      name: `metadata of an incremental, 64 GiB disk, ${m160.changed / 65536} blocks changed (stored ${m160.stored} B)`,
      value: m160.meta,
      unit: 'B',
      baseline: `the ${m16.changed / 65536}-block one × change ratio ${changeGrowth.toFixed(2)}`,
      ratio: growth / changeGrowth,
      target: '<= 1.25',
      pass: growth <= 1.25 * changeGrowth,
    });
    return results;
  } finally {
    await big.cleanup();
  }
}
