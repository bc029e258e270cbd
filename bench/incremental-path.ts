/**
 * An incremental end to end, as the peers bench times it (../shared/peers/pve-cbt-peer.sh): a 2 GiB
 * qcow2 with 1 GiB of random data on a simulated PVE node (real QEMU), the daemon as its own process,
 * a full through the CLI, then 328 random 64 KiB blocks rewritten through the guest device and
 * `pve-cbt backup VMID --json` spawned and timed until it exits. Three such incrementals; medians.
 *
 *   outside the disk work   CLI wall time − the engine's disk time (`durationMs` of the disk):
 *                           process start, IPC, the daemon's task, QMP, fleecing setup/teardown,
 *                           commit, bitmaps, ledger, catalog, CLI exit (docs/incremental-path.md)
 *   baseline                `pve-cbt --version` in the same run: what any CLI command costs at least
 *   target                  outside ≤ 4× `--version` (issue 15: a 21 MB incremental must not cost
 *                           0.7 s outside its disk work; on this machine `--version` is ~0.1 s)
 *
 * With `PVE_CBT_TRACE_OUT=FILE` the spans of the last incremental (shared/trace/trace-spans.ts) of
 * CLI and daemon are written there. With `CBT_AB_OLD_DIST=DIR` (another build's dist/), the
 * incrementals alternate between that build's daemon + CLI and this one's on the same node, state
 * and repository, and the ratio new/old of the time outside the disk work is reported too.
 * `CBT_INC_ROUNDS=N` runs N incrementals (N pairs with CBT_AB_OLD_DIST) instead of 3.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BenchResult } from './support/bench-result';
import { changeBlocks, createCliRig, DIST, disksOf, type CliRig } from './support/cli-rig';
import { settle } from './support/settle';
import { backupPhases, type Span } from './support/trace-phases';

/** `CBT_INC_ROUNDS=N`: more alternating pairs when the machine is noisy (default 3). */
const ROUNDS = Math.max(1, Number(process.env.CBT_INC_ROUNDS) || 3);
const BLOCKS = 328;
const MAX_OUTSIDE_PER_VERSION = 4;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Medians over rounds of each phase (trace-phases.ts), printed as a table. */
function printPhases(label: string, runs: IncRun[]): void {
  let tables: [string, number][][];
  try {
    tables = runs.map((r) => backupPhases(r.spans));
  } catch (err) {
    console.log(`  ${label}: no phases (${(err as Error).message}: a build without trace spans)`);
    return;
  }
  if (tables.length === 0) return;
  console.log(`  ${label}: phases, medians of ${tables.length} rounds (ms)`);
  tables[0].forEach(([name], i) => console.log(`    ${name.padEnd(58)} ${median(tables.map((t) => t[i][1])).toFixed(1).padStart(8)}`));
}

function readSpans(file: string): Span[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Span);
}

interface IncRun {
  wallMs: number;
  diskMs: number;
  outsideMs: number;
  bytesRead: number;
  bytesStored: number;
  spans: Span[];
}

async function incremental(rig: CliRig, round: number, distDir: string, traceFile: string): Promise<IncRun> {
  await changeBlocks(rig.vm, BLOCKS, 1000 + round, rig.work);
  settle();
  fs.writeFileSync(traceFile, '');
  const r = await rig.cli(['backup', String(rig.vm.vmid), '--json'], { distDir, traceFile });
  const disks = disksOf(r.json);
  if (r.code !== 0 || disks.length !== 1 || disks[0].mode !== 'incremental') {
    throw new Error(`incremental ${round} failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
  const diskMs = disks[0].durationMs;
  return { wallMs: r.ms, diskMs, outsideMs: r.ms - diskMs, bytesRead: disks[0].bytesRead, bytesStored: disks[0].bytesStored, spans: readSpans(traceFile) };
}

export async function run(): Promise<BenchResult[]> {
  const oldDist = process.env.CBT_AB_OLD_DIST;
  const rigTrace = path.join(fs.mkdtempSync('/tmp/cbt-trace-'), 'trace.jsonl');
  const rig = await createCliRig({ sizeMiB: 2048, dataMiB: 1024, traceFile: rigTrace });
  const results: BenchResult[] = [];
  try {
    await rig.startDaemon();
    await rig.vm.start();
    const versions: number[] = [];
    for (let i = 0; i < 5; i++) versions.push((await rig.cli(['--version'])).ms);
    const versionMs = median(versions);
    settle();
    const full = await rig.cli(['backup', String(rig.vm.vmid), '--json']);
    if (full.code !== 0) throw new Error(`full failed (exit ${full.code}): ${full.stdout}${full.stderr}`);

    const runs: IncRun[] = [];
    const oldRuns: IncRun[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      if (oldDist) {
        await rig.stopDaemon();
        await rig.startDaemon(oldDist);
        oldRuns.push(await incremental(rig, 2 * i + 1, oldDist, rigTrace));
        await rig.stopDaemon();
        await rig.startDaemon(DIST);
      }
      runs.push(await incremental(rig, 2 * i, DIST, rigTrace));
    }
    const out = process.env.PVE_CBT_TRACE_OUT;
    if (out) {
      fs.writeFileSync(out, `${JSON.stringify({ new: runs.map((r) => r.spans), old: oldRuns.map((r) => r.spans) })}\n`);
    }
    const last = runs[runs.length - 1];
    printPhases('old build', oldRuns);
    printPhases('this build', runs);

    const outside = median(runs.map((r) => r.outsideMs));
    results.push({ name: 'CLI start: pve-cbt --version', value: Math.round(versionMs), unit: 'ms' });
    results.push({ name: `incremental end to end through the CLI (read ${last.bytesRead} B)`, value: Math.round(median(runs.map((r) => r.wallMs))), unit: 'ms' });
    results.push({ name: 'incremental disk work (engine durationMs)', value: Math.round(median(runs.map((r) => r.diskMs))), unit: 'ms' });
    results.push({
      name: 'incremental outside the disk work',
      value: Math.round(outside),
      unit: 'ms',
      baseline: 'pve-cbt --version',
      ratio: outside / versionMs,
      target: `<= ${MAX_OUTSIDE_PER_VERSION}`,
      pass: outside <= MAX_OUTSIDE_PER_VERSION * versionMs,
    });
    if (oldRuns.length > 0) {
      const oldOutside = median(oldRuns.map((r) => r.outsideMs));
      results.push({ name: `old build (${oldDist}): incremental outside the disk work`, value: Math.round(oldOutside), unit: 'ms' });
      results.push({ name: 'incremental outside the disk work, new / old (alternating)', value: Math.round(outside), unit: 'ms', baseline: 'old build', ratio: outside / oldOutside });
      results.push({
        name: 'incremental end to end, new / old (alternating)',
        value: Math.round(median(runs.map((r) => r.wallMs))),
        unit: 'ms',
        baseline: 'old build',
        ratio: median(runs.map((r) => r.wallMs)) / median(oldRuns.map((r) => r.wallMs)),
      });
    }
    return results;
  } finally {
    await rig.cleanup();
    fs.rmSync(path.dirname(rigTrace), { recursive: true, force: true });
  }
}
