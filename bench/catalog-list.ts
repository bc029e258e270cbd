/**
 * `pve-cbt list` and `pve-cbt status` over a big repository (issue 18): 1,000 VMs × 365 daily
 * backups, through the real CLI (in-process `runCli`, the same code `pve-cbt` runs after Node's own
 * start) and, for `status`, the real daemon (in-process `runDaemon` on a simulated node, asked over
 * its socket). Target: `list` (one row per VM), `list VMID` and `status VMID` each under 100 ms.
 *
 * The repository: a folder per backup with a manifest in it, real ones (one 1 GiB disk, ~2.9 KB)
 * for the VMs the bench looks into and hard links to real ones elsewhere (see `populate`), and
 * the same backups in the node's catalog file, in one transaction; a few VMs of the range also
 * exist on the simulated node. The folders are
 * then left to settle (catalog-sync.ts keeps a folder's mark only once its time is 2 s old) and one
 * `list` catches the catalog up, as the daemon's first listing would on a real node.
 * The same commands also as processes, as an admin runs them (`pve-cbt list`, `list --json`,
 * `list VMID --json`, `status`, `status VMID`: wall time with Node's start, against `node -e 0`
 * measured in the same loop), with the same 100 ms target.
 * Also shown, without a target: `list --all` (it prints every backup: 365,000 rows, one line each,
 * so no bound like 100 ms applies) and `list --refresh` (every VM folder listed again).
 * Answers are checked: the groups against the backups they sum, `list VMID` against the repository.
 * PVE_CBT_BENCH_LIST_VMS / PVE_CBT_BENCH_LIST_BACKUPS shrink the repository for a quick run.
 */
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import { BackupCatalog } from '../daemon/catalog/backup-catalog';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { COMMANDS } from '../daemon/cli/registry';
import { runCli } from '../daemon/cli/run-cli';
import { validateConfig } from '../daemon/config/load-config';
import { simNodeConfig } from '../daemon/demo/sim-node-config';
import { createLogger, closeLogger } from '../daemon/log/create-logger';
import { Repository } from '../daemon/repository/repository';
import { displayBackupId, formatBackupId } from '../daemon/repository/backup-id';
import { geometry } from '../daemon/repository/disk-index';
import { MANIFEST_FORMAT, sealManifest, serializeManifest } from '../daemon/repository/manifest';
import { catalogFile, type Services } from '../daemon/service/services';
import { runDaemon } from '../daemon/service/run-daemon';
import { createPveNode } from '../daemon/sim/pve-node';
import { DEFAULT_CHUNK_SIZE } from '../shared/config/defaults';
import type { BenchResult } from './support/bench-result';
import { mulberry32 } from './support/prng';

const GiB = 1024 ** 3;
const DAY = 86_400_000;
const TARGET_MS = 100;
const RUNS = 7;
const FIRST_VMID = 100;
/** VMs of the range that also exist on the simulated node (stopped, one qcow2 disk each). */
const NODE_VMS = 3;

function envInt(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isSafeInteger(v) && v > 0 ? v : dflt;
}

/**
 * Folders on disk and the backups in the catalog, synchronous (nothing else runs). Real manifests
 * (recorded through BackupCatalog.recordBackup, as a commit records them) for the `sampled` VMs,
 * the ones the bench lists one by one and asks `status` about, and for each VM's first backup; every
 * other folder holds a hard link to its VM's first manifest (what the daemon's start-up looks for:
 * a folder without a manifest is a partial backup) and its catalog rows are inserted directly, with
 * the same columns a commit writes.
 */
export function populate(repoDir: string, catalog: BackupCatalog, db: ReturnType<typeof openCatalog>, vms: number, perVm: number, sampled: ReadonlySet<number>): void {
  const rnd = mulberry32(18);
  const g = geometry(GiB, DEFAULT_CHUNK_SIZE);
  const pages = Array.from({ length: g.pageCount }, (_, i) => crypto.createHash('sha256').update(`page ${i}`).digest('hex'));
  const start = Date.UTC(2025, 0, 1, 1, 0, 0);
  const insertBackup = db.prepare("INSERT INTO backups (id, vmid, time, parent, tool_version, manifest_checksum, verify_state, verified_at) VALUES (?, ?, ?, ?, 'bench', ?, 'none', NULL)");
  const insertDisk = db.prepare(
    `INSERT INTO backup_disks (backup_id, disk, format, size, chunk_size, page_entries, mode, reason, bitmap_name, bitmap_generation, consistency, bytes_read, bytes_stored, duration_ms)
     VALUES (?, 'scsi0', 'qcow2', ?, ?, ?, ?, ?, 'pve-cbt-scsi0', ?, 'frozen', ?, ?, 1000)`,
  );
  db.transaction(() => {
    for (let v = 0; v < vms; v++) {
      const vmid = FIRST_VMID + v;
      fs.mkdirSync(path.join(repoDir, 'vm', String(vmid)), { recursive: true });
      let parent: string | null = null;
      let template = '';
      for (let i = 0; i < perVm; i++) {
        const time = new Date(start + i * DAY + v * 1000);
        const id = formatBackupId(vmid, time);
        const iso = time.toISOString().replace(/\.\d{3}Z$/, 'Z');
        const mode = i === 0 ? 'full' : 'incremental';
        const reason = i === 0 ? 'first backup' : 'bitmap valid';
        const bytesRead = Math.floor(rnd() * GiB);
        const bytesStored = Math.floor(rnd() * GiB);
        const folder = path.join(repoDir, id);
        fs.mkdirSync(folder);
        if (sampled.has(vmid) || i === 0) {
          const m = sealManifest({
            format: MANIFEST_FORMAT,
            id,
            vmid,
            time: iso,
            parent,
            toolVersion: 'bench',
            disks: [
              {
                name: 'scsi0',
                format: 'qcow2',
                size: g.size,
                chunkSize: g.chunkSize,
                pageEntries: g.pageEntries,
                pages,
                mode,
                reason,
                bitmap: { name: 'pve-cbt-scsi0', generation: i + 1 },
                consistency: 'frozen',
                base: parent ? { backupId: parent, disk: 'scsi0' } : null,
                bytesRead,
                bytesStored,
                chunksStored: 100,
                pageBytesStored: 4096,
                durationMs: 1000,
              },
            ],
            extra: {},
          });
          template = path.join(folder, 'manifest.json');
          fs.writeFileSync(template, serializeManifest(m));
          catalog.recordBackup(m);
        } else {
          fs.linkSync(template, path.join(folder, 'manifest.json'));
          insertBackup.run(id, vmid, iso, parent, 'bench');
          insertDisk.run(id, g.size, g.chunkSize, g.pageEntries, mode, reason, i + 1, bytesRead, bytesStored);
        }
        parent = id;
      }
    }
  })();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

type Cli = (argv: string[]) => Promise<{ ms: number; stdout: string }>;

function cliWith(configFile: string): Cli {
  return async (argv) => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdout.on('data', (c: Buffer) => out.push(c));
    stderr.on('data', (c: Buffer) => err.push(c));
    const t0 = process.hrtime.bigint();
    const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env: { PVE_CBT_CONFIG: configFile } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (code !== 0) throw new Error(`catalog-list: pve-cbt ${argv.join(' ')} exited ${code}: ${Buffer.concat(err).toString()}`);
    return { ms, stdout: Buffer.concat(out).toString('utf8') };
  };
}

async function medianOf(cli: Cli, argv: string[]): Promise<{ ms: number; stdout: string }> {
  await cli(argv); // warm: modules loaded, statements prepared once per process as in any run
  const runs: number[] = [];
  let stdout = '';
  for (let i = 0; i < RUNS; i++) {
    const r = await cli(argv);
    runs.push(r.ms);
    stdout = r.stdout;
  }
  return { ms: median(runs), stdout };
}

function processMs(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

const within = (name: string, ms: number, baseline?: string): BenchResult => ({ name, value: Math.round(ms * 10) / 10, unit: 'ms', ...(baseline ? { baseline } : {}), target: `< ${TARGET_MS} ms`, pass: ms < TARGET_MS });

export async function run(): Promise<BenchResult[]> {
  const vms = envInt('PVE_CBT_BENCH_LIST_VMS', 1000);
  const perVm = envInt('PVE_CBT_BENCH_LIST_BACKUPS', 365);
  const node = await createPveNode();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-list-'));
  const abort = new AbortController();
  const logger = createLogger({ console: false });
  let daemon: Promise<void> | undefined;
  try {
    for (let v = 0; v < NODE_VMS; v++) await node.addVm({ vmid: FIRST_VMID + v, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 64 }] });
    const raw = simNodeConfig(node, work);
    const configFile = path.join(work, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify(raw));
    const config = validateConfig(raw, configFile);
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    const t0 = Date.now();
    const listedOneByOne = Array.from({ length: 20 }, (_, k) => FIRST_VMID + Math.floor((k * vms) / 20));
    const sampled = new Set([...listedOneByOne, ...Array.from({ length: NODE_VMS }, (_, v) => FIRST_VMID + v)]);
    const db = openCatalog(catalogFile(config.stateDir));
    try {
      const catalog = new BackupCatalog(db);
      const repo = await Repository.open(config.repository, { create: true, catalog });
      populate(repo.dir, catalog, db, vms, perVm, sampled);
    } finally {
      db.close();
    }
    const generatedS = (Date.now() - t0) / 1000;
    console.log(`catalog-list: ${vms} VMs × ${perVm} backups written in ${generatedS.toFixed(1)} s`);
    const scale = `${vms} VMs × ${perVm}`;
    const cli = cliWith(configFile);

    // As on a node whose backups were made over the past year: folders older than the settling window.
    await new Promise((r) => setTimeout(r, 2100));
    await cli(['list']);

    const groups = await medianOf(cli, ['list', '--json']);
    const listed = (JSON.parse(groups.stdout) as { groups: { vmid: number; backups: number; lastId: string; bytesStored: number }[] }).groups;
    if (listed.length !== vms || listed.some((g) => g.backups !== perVm)) throw new Error(`catalog-list: ${listed.length} groups listed, wrote ${vms} VMs × ${perVm}`);
    const text = await medianOf(cli, ['list']);
    if (text.stdout.trimEnd().split('\n').length !== vms + 1) throw new Error('catalog-list: the group table has the wrong number of rows');

    // One VM, over 20 VMs spread across the range; checked against the repository's own reading.
    const repo = await Repository.open(config.repository, { create: false });
    const oneVm: number[] = [];
    for (const vmid of listedOneByOne) {
      const r = await medianOf(cli, ['list', String(vmid), '--json']);
      oneVm.push(r.ms);
      const backups = (JSON.parse(r.stdout) as { backups: { id: string; disks: { bytesStored: number }[] }[] }).backups;
      const fromRepo = (await repo.listBackups(vmid)).map((b) => displayBackupId(b.id));
      if (!isDeepStrictEqual(backups.map((b) => b.id), fromRepo)) throw new Error(`catalog-list: list ${vmid} differs from the repository`);
      const group = listed.find((g) => g.vmid === vmid);
      const sum = backups.reduce((n, b) => n + b.disks.reduce((m, d) => m + d.bytesStored, 0), 0);
      if (!group || group.lastId !== fromRepo[fromRepo.length - 1] || group.bytesStored !== sum) throw new Error(`catalog-list: the group of VM ${vmid} does not sum its backups`);
    }

    const all = await cli(['list', '--all']);
    if (all.stdout.trimEnd().split('\n').length !== vms * perVm + 1) throw new Error('catalog-list: list --all misses backups');
    const refresh = await medianOf(cli, ['list', '--refresh']);

    // status through the daemon (its socket, its catalog and ledger), for one VM and for the node.
    const ready = new Promise<Services>((resolve, reject) => {
      daemon = runDaemon({ config, logger, signal: abort.signal, onReady: resolve });
      daemon.catch(reject);
    });
    await ready;
    const statusOne = await medianOf(cli, ['status', String(FIRST_VMID), '--json']);
    const st = JSON.parse(statusOne.stdout) as { vms: { vmid: number; disks: { lastBackup: { id: string } | null }[] }[] };
    const lastOf100 = listed.find((g) => g.vmid === FIRST_VMID)?.lastId;
    if (st.vms[0]?.disks[0]?.lastBackup?.id === undefined || displayBackupId(st.vms[0].disks[0].lastBackup.id) !== lastOf100) throw new Error('catalog-list: status does not show the last backup');
    const statusNode = await medianOf(cli, ['status', '--json']);
    if ((JSON.parse(statusNode.stdout) as { vms: unknown[] }).vms.length !== NODE_VMS) throw new Error('catalog-list: status does not show the node VMs');

    // The commands as an admin runs them: a process each, Node's own start included, alternating
    // with `node -e 0` so the floor is measured under the same load.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', PVE_CBT_CONFIG: configFile };
    const cliJs = path.join(__dirname, '..', 'daemon', 'cli', 'main.js');
    const asProcess: [string, string[]][] = [
      ['pve-cbt list', ['list']],
      ['pve-cbt list --json', ['list', '--json']],
      [`pve-cbt list ${listedOneByOne[10]} --json`, ['list', String(listedOneByOne[10]), '--json']],
      ['pve-cbt status', ['status']],
      [`pve-cbt status ${FIRST_VMID}`, ['status', String(FIRST_VMID)]],
    ];
    const nodeOnly: number[] = [];
    const procMs = new Map<string, number[]>(asProcess.map(([name]) => [name, []]));
    for (let i = 0; i < RUNS; i++) {
      nodeOnly.push(await processMs(['-e', '0'], env));
      for (const [name, argv] of asProcess) procMs.get(name)?.push(await processMs([cliJs, ...argv], env));
    }
    const nodeFloor = `node -e 0: ${median(nodeOnly).toFixed(0)} ms`;

    return [
      within(`list (one row per VM, ${scale}), CLI in-process`, text.ms),
      within(`list --json (groups, ${scale})`, groups.ms),
      within(`list VMID --json (${perVm} backups of one VM of ${scale}), median over 20 VMs`, median(oneVm)),
      within(`status VMID --json (${scale} in the repository), through the daemon`, statusOne.ms),
      within(`status --json (the node's ${NODE_VMS} VMs, ${scale} in the repository), through the daemon`, statusNode.ms),
      { name: `list --all (every backup, ${vms * perVm} rows), CLI in-process`, value: Math.round(all.ms), unit: 'ms' },
      { name: `list --refresh (every VM folder listed again, ${scale})`, value: Math.round(refresh.ms), unit: 'ms' },
      ...asProcess.map(([name]) => within(`${name} as a process (${scale}; wall time, median of ${RUNS})`, median(procMs.get(name) ?? []), nodeFloor)),
      { name: `generating the repository (${scale}: folders, manifests, catalog)`, value: Math.round(generatedS * 10) / 10, unit: 's' },
    ];
  } finally {
    abort.abort(new Error('bench done'));
    await daemon?.catch(() => undefined);
    await closeLogger(logger);
    await node.cleanup();
    // rm(1): fs.rmSync takes minutes over 365,000 folders.
    execFileSync('rm', ['-rf', work]);
  }
}
