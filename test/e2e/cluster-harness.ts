/**
 * End-to-end harness for a simulated two-node cluster (daemon/sim/pve-cluster.ts): per node
 * pve-cbt's real hooks installed in that node's snippets, and the real daemon (`pve-cbt daemon`
 * from dist/, a process of its own as systemd runs it) with its own stateDir, socket and logs;
 * both daemons write the SAME repository directory. Restores are read straight from that
 * repository and compared byte for byte with the simulator's reference taken when the backup was
 * asked for.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { validateConfig } from '../../daemon/config/load-config';
import type { CbtConfig } from '../../daemon/config/config-schema';
import { simNodeConfig } from '../../daemon/demo/sim-node-config';
import { attachHook, installHooks, type HookAdminOptions } from '../../daemon/hook-admin/hook-admin';
import { Repository } from '../../daemon/repository/repository';
import type { RepositoryStorage } from '../../daemon/repository/storage';
import { REQUESTS, type BackupOutcome, type BackupResult } from '../../daemon/service/requests';
import { createPveCluster, type PveCluster } from '../../daemon/sim/pve-cluster';
import type { DiskLayout, PveNode, SimVm } from '../../daemon/sim/pve-node';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { DIST, firstDifference, killChildDaemon, requireDist, startChildDaemon, type ChildDaemon } from './e2e-harness';

export interface NodeStack {
  node: PveNode;
  configFile: string;
  config: CbtConfig;
  hookOpts: HookAdminOptions;
  daemon: ChildDaemon | undefined;
  request<R>(type: string, payload: unknown, timeoutMs?: number): Promise<R>;
  /** Backs the VMs up through this node's daemon; every disk restored and compared byte-exact. */
  backupAndCheck(vms: SimVm[]): Promise<Map<number, BackupResult>>;
  /** Runs `fn` on this daemon's catalog, opened read-only beside the running daemon. */
  catalog<T>(fn: (db: Database.Database) => T): T;
}

export interface ClusterStack {
  work: string;
  cluster: PveCluster;
  repository: string;
  nodes: NodeStack[];
  stack(nodeName: string): NodeStack;
  /** Restores one disk of a backup from the shared repository; index of the first differing byte, -1 if none. */
  compareRestore(backupId: string, disk: string, reference: string): Promise<number>;
  cleanup(): Promise<void>;
}

/** `repository`: the nodes' shared repository config keys (e.g. an s3:// one), and how this process opens it. */
export interface ClusterStackOptions {
  repository?: { config: Record<string, unknown>; storage: () => RepositoryStorage };
}

export async function createClusterStack(opts: ClusterStackOptions = {}): Promise<ClusterStack> {
  requireDist();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-cl-'));
  const cluster = await createPveCluster({ baseDir: work });
  const repository = (opts.repository?.config.repository as string | undefined) ?? path.join(work, 'repository');
  const compareRestore = async (backupId: string, disk: string, reference: string): Promise<number> => {
    const target = path.join(work, `restore-${process.hrtime.bigint()}.raw`);
    const repo = await Repository.open(repository, opts.repository ? { storage: opts.repository.storage() } : {});
    try {
      await repo.restoreDisk(backupId, disk, { path: target, format: 'raw' });
      return firstDifference(fs.readFileSync(target), fs.readFileSync(reference));
    } finally {
      fs.rmSync(target, { force: true });
    }
  };
  const nodes: NodeStack[] = [];
  for (const node of cluster.nodes) {
    const nodeWork = path.join(work, node.nodeName);
    fs.mkdirSync(nodeWork);
    const configFile = path.join(nodeWork, 'config.json');
    const raw = { ...simNodeConfig(node, nodeWork), repository, ...opts.repository?.config };
    fs.writeFileSync(configFile, `${JSON.stringify(raw, null, 2)}\n`);
    const config = validateConfig(raw, configFile);
    const hookOpts: HookAdminOptions = { root: node.root, nodePath: process.execPath, distDir: DIST, stateDir: config.stateDir, configPath: configFile };
    installHooks(hookOpts);
    const ns: NodeStack = {
      node,
      configFile,
      config,
      hookOpts,
      daemon: undefined,
      request: <R>(type: string, payload: unknown, timeoutMs = 300_000) => ipcRequest<R>(config.socketPath, type, payload, { timeoutMs }),
      async backupAndCheck(vms) {
        const refs = new Map<string, string>();
        for (const vm of vms) for (const d of vm.disks) refs.set(`${vm.vmid}/${d.key}`, await vm.snapshotReference(d.key));
        try {
          const outcomes = await ns.request<BackupOutcome[]>(REQUESTS.backup, { vmids: vms.map((v) => v.vmid) });
          const out = new Map<number, BackupResult>();
          for (const o of outcomes) {
            if (!o.result) throw new Error(`backup of VM ${o.vmid} on ${node.nodeName} failed: ${o.error?.code}: ${o.error?.message}`);
            for (const d of o.result.disks) {
              const diff = await compareRestore(o.result.id, d.disk, refs.get(`${o.vmid}/${d.disk}`)!);
              if (diff !== -1) throw new Error(`restore of VM ${o.vmid} ${d.disk} from ${o.result.id} (${d.mode}) differs at byte ${diff}`);
            }
            out.set(o.vmid, o.result);
          }
          return out;
        } finally {
          for (const f of refs.values()) fs.rmSync(f, { force: true });
        }
      },
      catalog(fn) {
        const db = new Database(path.join(config.stateDir, 'catalog.sqlite'), { readonly: true, fileMustExist: true });
        try {
          return fn(db);
        } finally {
          db.close();
        }
      },
    };
    nodes.push(ns);
  }
  const cs: ClusterStack = {
    work,
    cluster,
    repository,
    nodes,
    stack(name) {
      const s = nodes.find((n) => n.node.nodeName === name);
      if (!s) throw new Error(`no node ${name}`);
      return s;
    },
    compareRestore,
    async cleanup() {
      for (const n of nodes) killChildDaemon(n.daemon);
      await Promise.all(nodes.map((n) => n.daemon?.exited));
      await cluster.cleanup();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
  return cs;
}

export async function startDaemons(cs: ClusterStack): Promise<void> {
  for (const n of cs.nodes) n.daemon = await startChildDaemon(n);
}

/** Adds a VM on `ns`'s node with the given disks (data written while stopped) and pve-cbt's hookscript attached. */
export async function addClusterVm(
  ns: NodeStack,
  vmid: number,
  disks: Array<{ key: string; format: 'qcow2' | 'raw' | 'vmdk'; sizeMiB: number }>,
  layout: DiskLayout = 'drive',
): Promise<SimVm> {
  const vm = await ns.node.addVm({ vmid, name: `vm-${vmid}`, disks, layout });
  attachHook(ns.hookOpts, vmid);
  for (const [i, d] of disks.entries()) {
    for (let k = 0; k < 3; k++) await vm.writeData(d.key, k * 2 * 1024 * 1024, Buffer.alloc(192 * 1024, (vmid + i * 7 + k) % 251));
  }
  return vm;
}

/** Polls `check` every 100 ms until it returns a value, at most `timeoutMs`. */
export async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
