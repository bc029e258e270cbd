/**
 * Runs the benchmarks: `npm run bench` (every bench) or `node dist/bench/run-all.js NAME...` (the
 * named ones, e.g. `repository-compression`). A bench is a `bench/<name>.ts` next to this file,
 * compiled to dist/bench/<name>.js, exporting `async function run(): Promise<BenchResult[]>`.
 * They run one after another (they measure throughput; in parallel they would measure each
 * other), then a table is printed and everything is written to `bench-results.json` in the
 * current directory.
 *
 * A missed target is a result, not a failure: it is marked MISSED in the table and listed at the
 * end, and the exit code stays 0. Only a bench that throws (or a name that does not exist) makes
 * the exit code 1 (2), because then there is no number to report.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BenchResult } from './support/bench-result';

interface Row extends BenchResult {
  bench: string;
}

const SELF = path.basename(__filename, path.extname(__filename));

function benchFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const f of fs.readdirSync(dir).sort()) {
    const m = /^([a-z0-9][a-z0-9-]*)\.js$/.exec(f);
    if (m && m[1] !== SELF) files.set(m[1], path.join(dir, f));
  }
  return files;
}

function fmt(n: number | undefined, digits = 4): string {
  if (n === undefined || !Number.isFinite(n)) return n === undefined ? '' : String(n);
  return Math.abs(n) >= 10 ** digits ? n.toFixed(0) : String(Number(n.toPrecision(digits)));
}

function table(rows: Row[]): string {
  const head = ['bench', 'name', 'value', 'unit', 'baseline', 'ratio', 'target', 'pass'];
  const cells = rows.map((r) => [
    r.bench,
    r.name,
    fmt(r.value),
    r.unit,
    r.baseline ?? '',
    r.ratio === undefined ? '' : fmt(r.ratio, 3),
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'yes' : 'MISSED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i === 2 || i === 5 ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const available = benchFiles(__dirname);
  const unknown = argv.filter((n) => !available.has(n.replace(/\.(js|ts)$/, '')));
  if (unknown.length > 0) {
    console.error(`run-all: no bench named ${unknown.join(', ')}; available: ${[...available.keys()].join(', ') || 'none'}`);
    return 2;
  }
  const names = argv.length > 0 ? argv.map((n) => n.replace(/\.(js|ts)$/, '')) : [...available.keys()];
  const rows: Row[] = [];
  const errors: { bench: string; message: string }[] = [];
  const startedAt = new Date();
  for (const bench of names) {
    const t0 = process.hrtime.bigint();
    console.log(`run-all: ${bench} ...`);
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(available.get(bench) as string) as { run?: () => Promise<BenchResult[]> };
      if (typeof mod.run !== 'function') throw new Error('does not export run()');
      const results = await mod.run();
      rows.push(...results.map((r) => ({ bench, ...r })));
      console.log(`run-all: ${bench} done in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`);
    } catch (err) {
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      errors.push({ bench, message });
      console.error(`run-all: ${bench} FAILED: ${message}`);
    }
  }

  console.log(`\n${table(rows)}\n`);
  const missed = rows.filter((r) => r.pass === false);
  for (const r of missed) console.log(`target MISSED: ${r.bench} / ${r.name}: ${fmt(r.value)} ${r.unit}, target ${r.target ?? '?'}`);
  for (const e of errors) console.log(`bench FAILED: ${e.bench}: ${e.message.split('\n')[0]}`);
  const withTarget = rows.filter((r) => r.pass !== undefined).length;
  console.log(`${rows.length} results from ${names.length - errors.length}/${names.length} benches; ${withTarget - missed.length}/${withTarget} targets met`);

  const out = path.resolve('bench-results.json');
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    host: { platform: os.platform(), arch: os.arch(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem() },
    results: rows,
    missed: missed.map((r) => ({ bench: r.bench, name: r.name })),
    errors,
  };
  fs.writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`written ${out}`);
  return errors.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
