/**
 * A Proxmox VE node simulator for tests and the `pve-cbt demo`: in a temporary root it lays out
 *
 *   ROOT/etc/pve/qemu-server/VMID.conf    VM configs in qemu-server syntax (see pve-conf.ts)
 *   ROOT/etc/vzdump.conf                  `script: PATH` selects the vzdump hook
 *   ROOT/etc/pve/user.cfg                 pools, once `setPool` is called (user-cfg.ts)
 *   ROOT/var/run/qemu-server/VMID.{qmp,pid,qga}
 *   ROOT/var/lock/qemu-server/lock-VMID.conf  qemu-server's per-VM flock (daemon/pve/pve-lock.ts)
 *   ROOT/var/lib/vz/images/VMID/vm-VMID-disk-N.FMT, ROOT/var/lib/vz/snippets/, ROOT/var/lib/vz/dump/
 *   ROOT/usr/sbin/pvesm                   shim answering `pvesm path|alloc|free` for storage `local`
 *                                         (and `ceph`, an RBD storage on a real cluster: sim-rbd-storage.ts)
 *   ROOT/reference/VMID/KEY.raw           raw twin of every disk holding the bytes it must contain
 *
 * and runs real qemu-system-x86_64 (TCG, no guest OS) per VM with the hook phases of the facts table
 * (sim-vm.ts). Plain TypeScript without jest globals; jest glue lives in jest-cleanup.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { QmpClient } from '../qmp/qmp-client';
import { clearQmpTranscript, qmpTranscript } from '../qmp/qmp-transcript';
import { SimSpecError, SimStateError } from './sim-errors';
import { ProcessReaper } from './process-reaper';
import { renderConf } from './pve-conf';
import { renderUserCfg, type SimPool } from './user-cfg';
import type { DiskLayout } from './qemu-command';
import { SimVmImpl } from './sim-vm';
import { adoptedVmInit } from './adopted-vm';
import type { HookRun } from './hook-runner';
import { createRbdStorage, RBD_STORAGE, type SimCephSpec, type SimRbdStorage } from './sim-rbd-storage';

export type { HookRun } from './hook-runner';
export type { DiskLayout } from './qemu-command';

const execFileP = promisify(execFile);

export interface SimDiskSpec {
  /** 'scsi0', 'virtio1', 'sata0', 'ide0', 'efidisk0' ... */
  key: string;
  format: 'qcow2' | 'raw' | 'vmdk';
  sizeMiB: number;
  /** false writes `,backup=0` into the config. */
  backup?: boolean;
  /** `ceph`: an RBD image on the node's RBD storage (raw only; createPveNode needs `ceph`). Default `local`. */
  storage?: 'local' | 'ceph';
}

export interface SimVmSpec {
  vmid: number;
  name?: string;
  disks: SimDiskSpec[];
  agent?: boolean;
  /** 'local:snippets/NAME' volid, written to the config. */
  hookscript?: string;
  /** qemu-server's disk layout: `drive` (PVE 7/8, default) or `blockdev` (PVE 9, machine >= 10). */
  layout?: DiskLayout;
}

export interface SimDisk {
  key: string;
  format: string;
  volid: string;
  path: string;
  sizeBytes: number;
  /** Raw twin holding the bytes the disk must contain. */
  reference: string;
}

export interface SimVm {
  vmid: number;
  confPath: string;
  qmpPath: string;
  pidPath: string;
  qgaPath: string;
  disks: SimDisk[];
  layout: DiskLayout;
  setHookscript(volid: string | undefined): void;
  start(opts?: { paused?: boolean; migratedFrom?: string }): Promise<void>;
  stop(): Promise<void>;
  shutdown(): Promise<void>;
  reboot(): Promise<void>;
  reset(): Promise<void>;
  guestReboot(): Promise<void>;
  crash(): Promise<void>;
  /** Resolves once QEMU has exited (also on its own, e.g. `quit` from another QMP client) and post-stop ran. */
  whenStopped(timeoutMs?: number): Promise<void>;
  vzdump(mode: 'stop' | 'suspend' | 'snapshot', during?: () => Promise<void>): Promise<void>;
  pid(): number | undefined;
  running(): boolean;
  write(disk: string, w: { pattern: number; offset: number; length: number }): Promise<void>;
  writeData(disk: string, offset: number, data: Buffer): Promise<void>;
  snapshotReference(disk: string): Promise<string>;
  qmp<T>(fn: (q: QmpClient) => Promise<T>): Promise<T>;
}

export interface PveNode {
  root: string;
  configDir: string;
  runDir: string;
  /** qemu-server's flock files (`lock-VMID.conf`). */
  lockDir: string;
  storageDir: string;
  snippetsDir: string;
  dumpDir: string;
  pvesmPath: string;
  vzdumpConfPath: string;
  /** The RBD storage `ceph`, when the node was created with a cluster. */
  rbdStorage: SimRbdStorage | undefined;
  /** Node name (`PVE::INotify::nodename`). */
  nodeName: string;
  addVm(spec: SimVmSpec): Promise<SimVm>;
  /** A VM whose VMID.conf someone else wrote (e.g. a restore), learnt from that file (adopted-vm.ts). */
  adoptVm(vmid: number): Promise<SimVm>;
  vm(vmid: number): SimVm;
  /** Writes or removes the `script:` line of vzdump.conf. */
  setVzdumpScript(scriptPath: string | undefined): void;
  /** Creates or replaces a pool in /etc/pve/user.cfg (`pveum pool add` + `modify --vms`), as PVE writes it. */
  setPool(name: string, pool: SimPool): void;
  /** Every hookscript and vzdump hook invocation, in order. */
  hookLog: HookRun[];
  /** Recent QMP traffic of each VM of this node, this process's clients (qmp-transcript.ts), for a failed test to print. */
  qmpTranscripts(): string;
  cleanup(): Promise<void>;
}

/**
 * A node's seat in a simulated cluster (pve-cluster.ts): its name, the cluster-wide config tree
 * (pmxcfs: `nodes/NODE/qemu-server/VMID.conf`, linked as ROOT/etc/pve/qemu-server like on PVE) and
 * the image directory every node of the cluster shares (ROOT/var/lib/vz/images links to it).
 */
export interface ClusterSeat {
  nodeName: string;
  pmxcfsDir: string;
  sharedImagesDir: string;
}

/** Node-wide state shared with the VMs. */
export interface NodeContext {
  root: string;
  runDir: string;
  lockDir: string;
  snippetsDir: string;
  dumpDir: string;
  vzdumpConfPath: string;
  nodeName: string;
  env: Record<string, string>;
  hookLog: HookRun[];
  reaper: ProcessReaper;
  directIo: boolean;
}

const DISK_KEY = /^(ide[0-3]|sata[0-5]|scsi([12]?[0-9]|30)|virtio(1[0-5]|[0-9])|efidisk0|tpmstate0)$/;

/** What live-migration.ts needs besides the public API: the node's context and its VM table. */
export interface NodeInternals {
  ctx: NodeContext;
  vms: Map<number, SimVmImpl>;
}
const internals = new WeakMap<PveNode, NodeInternals>();

export function nodeInternals(node: PveNode): NodeInternals {
  const i = internals.get(node);
  if (!i) throw SimStateError({ vmid: 0, op: 'use the node', reason: 'not created by createPveNode' });
  return i;
}

export async function createPveNode(opts: { baseDir?: string; env?: Record<string, string>; cluster?: ClusterSeat; ceph?: SimCephSpec } = {}): Promise<PveNode> {
  const root = fs.mkdtempSync(path.join(opts.baseDir ?? os.tmpdir(), 'cbt-pve-'));
  const configDir = path.join(root, 'etc/pve/qemu-server');
  const runDir = path.join(root, 'var/run/qemu-server');
  const lockDir = path.join(root, 'var/lock/qemu-server');
  const storageDir = path.join(root, 'var/lib/vz');
  const snippetsDir = path.join(storageDir, 'snippets');
  const dumpDir = path.join(storageDir, 'dump');
  const sbinDir = path.join(root, 'usr/sbin');
  if (opts.cluster) linkClusterSeat(root, opts.cluster);
  for (const d of [configDir, runDir, lockDir, path.join(storageDir, 'images'), snippetsDir, dumpDir, sbinDir]) {
    fs.mkdirSync(d, { recursive: true });
  }
  const pvesmPath = path.join(sbinDir, 'pvesm');
  const rbdStorage = opts.ceph ? await createRbdStorage(root, opts.ceph) : undefined;
  fs.writeFileSync(pvesmPath, pvesmShim(storageDir, rbdStorage ? path.join(sbinDir, 'pvesm-rbd.sh') : undefined), { mode: 0o755 });
  const vzdumpConfPath = path.join(root, 'etc/vzdump.conf');
  fs.writeFileSync(vzdumpConfPath, '# vzdump default settings\n\n#tmpdir: DIR\n#dumpdir: DIR\n#storage: STORAGE_ID\n#mode: snapshot|suspend|stop\n');

  const ctx: NodeContext = {
    root,
    runDir,
    lockDir,
    snippetsDir,
    dumpDir,
    vzdumpConfPath,
    nodeName: opts.cluster?.nodeName ?? 'pve-sim',
    env: { ...(process.env as Record<string, string>), ...(opts.env ?? {}) },
    hookLog: [],
    reaper: new ProcessReaper(root, runDir),
    directIo: supportsDirectIo(storageDir),
  };
  const vms = new Map<number, SimVmImpl>();
  const pools = new Map<string, SimPool>();

  const node: PveNode = {
    root,
    configDir,
    runDir,
    lockDir,
    storageDir,
    snippetsDir,
    dumpDir,
    pvesmPath,
    vzdumpConfPath,
    rbdStorage,
    nodeName: ctx.nodeName,
    hookLog: ctx.hookLog,

    async addVm(spec: SimVmSpec): Promise<SimVm> {
      validateSpec(spec, vms, rbdStorage !== undefined);
      const imagesDir = path.join(storageDir, 'images', String(spec.vmid));
      const refDir = path.join(root, 'reference', String(spec.vmid));
      fs.mkdirSync(imagesDir, { recursive: true });
      fs.mkdirSync(refDir, { recursive: true });
      const disks: SimDisk[] = [];
      for (const [i, d] of spec.disks.entries()) {
        if (d.storage === RBD_STORAGE) {
          disks.push(await allocRbdDisk(pvesmPath, spec.vmid, i, d, refDir));
          continue;
        }
        const file = `vm-${spec.vmid}-disk-${i}.${d.format}`;
        const diskPath = path.join(imagesDir, file);
        const sizeBytes = d.sizeMiB * 1024 * 1024;
        await execFileP('qemu-img', ['create', '-q', '-f', d.format, diskPath, String(sizeBytes)]);
        const reference = path.join(refDir, `${d.key}.raw`);
        fs.writeFileSync(reference, '');
        fs.truncateSync(reference, sizeBytes);
        disks.push({ key: d.key, format: d.format, volid: `local:${spec.vmid}/${file}`, path: diskPath, sizeBytes, reference });
      }
      const confPath = path.join(configDir, `${spec.vmid}.conf`);
      const name = spec.name ?? `vm${spec.vmid}`;
      fs.writeFileSync(
        confPath,
        renderConf({
          vmid: spec.vmid,
          name,
          agent: spec.agent === true,
          hookscript: spec.hookscript,
          layout: spec.layout ?? 'drive',
          disks: spec.disks.map((d, i) => ({ key: d.key, volid: disks[i].volid, sizeBytes: disks[i].sizeBytes, backup: d.backup !== false })),
        }),
      );
      const vm = new SimVmImpl(ctx, { vmid: spec.vmid, name, agent: spec.agent === true, layout: spec.layout ?? 'drive', confPath, disks });
      vms.set(spec.vmid, vm);
      return vm;
    },

    async adoptVm(vmid: number): Promise<SimVm> {
      if (vms.has(vmid)) throw SimSpecError({ reason: `VM ${vmid} already exists` });
      const vm = new SimVmImpl(ctx, await adoptedVmInit({ root, configDir, storageDir }, vmid));
      vms.set(vmid, vm);
      return vm;
    },

    vm(vmid: number): SimVm {
      const vm = vms.get(vmid);
      if (!vm) throw SimStateError({ vmid, op: 'look up', reason: 'no such VM on this node' });
      return vm;
    },

    setVzdumpScript(scriptPath: string | undefined): void {
      const lines = fs.readFileSync(vzdumpConfPath, 'utf8').split('\n').filter((l) => !/^script:/.test(l));
      while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
      if (scriptPath !== undefined) lines.push(`script: ${scriptPath}`);
      fs.writeFileSync(vzdumpConfPath, `${lines.join('\n')}\n`);
    },

    setPool(name: string, pool: SimPool): void {
      pools.set(name, pool);
      fs.writeFileSync(path.join(root, 'etc/pve/user.cfg'), renderUserCfg(pools));
    },

    qmpTranscripts(): string {
      return [...vms.values()]
        .map((vm) => {
          const lines = qmpTranscript(vm.qmpPath);
          return `QMP transcript of VM ${vm.vmid} (${vm.qmpPath}), last ${lines.length} lines:\n${lines.map((l) => `  ${l}`).join('\n')}`;
        })
        .join('\n');
    },

    async cleanup(): Promise<void> {
      await Promise.all([...vms.values()].map((vm) => vm.kill()));
      for (const vm of vms.values()) clearQmpTranscript(vm.qmpPath);
      ctx.reaper.dispose();
      await rbdStorage?.dispose();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  internals.set(node, { ctx, vms });
  return node;
}

/** PVE's /etc/pve/qemu-server is a link to nodes/NODE/qemu-server in pmxcfs; images are shared storage. */
function linkClusterSeat(root: string, seat: ClusterSeat): void {
  const nodeConfDir = path.join(seat.pmxcfsDir, 'nodes', seat.nodeName, 'qemu-server');
  fs.mkdirSync(nodeConfDir, { recursive: true });
  fs.mkdirSync(path.join(root, 'etc/pve'), { recursive: true });
  fs.symlinkSync(nodeConfDir, path.join(root, 'etc/pve/qemu-server'));
  fs.symlinkSync(path.join(seat.pmxcfsDir, 'nodes'), path.join(root, 'etc/pve/nodes'));
  fs.mkdirSync(seat.sharedImagesDir, { recursive: true });
  fs.mkdirSync(path.join(root, 'var/lib/vz'), { recursive: true });
  fs.symlinkSync(seat.sharedImagesDir, path.join(root, 'var/lib/vz/images'));
}

/** `pvesm alloc ceph VMID vm-VMID-disk-N SIZE` and `pvesm path`, as qm create does it on an RBD storage. */
async function allocRbdDisk(pvesm: string, vmid: number, i: number, d: SimDiskSpec, refDir: string): Promise<SimDisk> {
  const sizeBytes = d.sizeMiB * 1024 * 1024;
  const { stdout } = await execFileP(pvesm, ['alloc', RBD_STORAGE, String(vmid), `vm-${vmid}-disk-${i}`, `${sizeBytes / 1024}`, '--format', 'raw']);
  const m = /successfully created '([^']+)'/.exec(stdout);
  if (!m) throw SimSpecError({ reason: `pvesm alloc printed no volume id: ${stdout.trim()}` });
  const volid = m[1];
  const diskPath = (await execFileP(pvesm, ['path', volid])).stdout.trim();
  const reference = path.join(refDir, `${d.key}.raw`);
  fs.writeFileSync(reference, '');
  fs.truncateSync(reference, sizeBytes);
  return { key: d.key, format: 'raw', volid, path: diskPath, sizeBytes, reference };
}

function validateSpec(spec: SimVmSpec, vms: Map<number, unknown>, hasRbd: boolean): void {
  if (!Number.isInteger(spec.vmid) || spec.vmid < 100) throw SimSpecError({ reason: `vmid ${spec.vmid} must be an integer >= 100` });
  if (vms.has(spec.vmid)) throw SimSpecError({ reason: `VM ${spec.vmid} already exists` });
  const seen = new Set<string>();
  for (const d of spec.disks) {
    if (!DISK_KEY.test(d.key)) throw SimSpecError({ reason: `disk key ${d.key} is not a Proxmox disk key` });
    if (seen.has(d.key)) throw SimSpecError({ reason: `disk key ${d.key} used twice` });
    if (!(d.sizeMiB > 0) || !Number.isInteger(d.sizeMiB)) throw SimSpecError({ reason: `disk ${d.key}: sizeMiB must be a positive integer` });
    if (d.storage === RBD_STORAGE) {
      if (!hasRbd) throw SimSpecError({ reason: `disk ${d.key}: storage ceph needs a node created with a Ceph cluster (createPveNode({ ceph }))` });
      if (d.format !== 'raw') throw SimSpecError({ reason: `disk ${d.key}: RBD images are raw` });
      if (spec.layout === 'blockdev') throw SimSpecError({ reason: `disk ${d.key}: RBD disks are simulated in the drive layout only` });
    }
    seen.add(d.key);
  }
  if (spec.layout === 'blockdev' && spec.disks.some((d) => d.key === 'efidisk0' || d.key === 'tpmstate0')) {
    throw SimSpecError({ reason: 'efidisk0/tpmstate0 have no device in the simulator, which the blockdev layout needs' });
  }
  if (spec.hookscript !== undefined && !spec.hookscript.startsWith('local:snippets/')) {
    throw SimSpecError({ reason: `hookscript ${spec.hookscript} must be a local:snippets/ volid` });
  }
}

/**
 * `pvesm path VOLID` for storage `local` (dir storage at ROOT/var/lib/vz); like pvesm, no existence
 * check. `pvesm alloc local VMID NAME SIZE [--format raw|qcow2]` and `pvesm free VOLID` as PVE's dir
 * plugin does them: NAME must be `vm-VMID-*` with the format's extension, the image goes to
 * images/VMID/NAME (an existing one is refused: "disk image ... already exists"), SIZE is KiB unless
 * suffixed M or G, and alloc prints `successfully created 'local:VMID/NAME'`.
 */
function pvesmShim(storageDir: string, rbdPart: string | undefined): string {
  return `#!/bin/bash
# pvesm shim of the pve-cbt node simulator: 'path', 'alloc' and 'free' on storage 'local' (dir).
images="${storageDir}/images"
no_storage() { echo "storage '$1' does not exist" >&2; exit 255; }
${rbdPart ? `# the RBD storage 'ceph' (sim-rbd-storage.ts)
. "${rbdPart}"` : ''}
case "$1" in
path)
  [ $# -eq 2 ] || { echo "pvesm shim: usage: pvesm path VOLID" >&2; exit 255; }
  volid="$2"
  case "$volid" in
    local:snippets/*) echo "${storageDir}/snippets/\${volid#local:snippets/}" ;;
    local:iso/*) echo "${storageDir}/template/iso/\${volid#local:iso/}" ;;
    local:backup/*) echo "${storageDir}/dump/\${volid#local:backup/}" ;;
    local:[0-9]*/*) echo "$images/\${volid#local:}" ;;
    *:*) no_storage "\${volid%%:*}" ;;
    *) echo "unable to parse volume ID '$volid'" >&2; exit 255 ;;
  esac ;;
alloc)
  storage="$2"; vmid="$3"; name="$4"; size="$5"; fmt=raw
  if [ "$6" = --format ]; then fmt="$7"; [ $# -eq 7 ] || { echo "pvesm shim: usage: pvesm alloc STORAGE VMID NAME SIZE [--format FMT]" >&2; exit 255; }
  elif [ $# -ne 5 ]; then echo "pvesm shim: usage: pvesm alloc STORAGE VMID NAME SIZE [--format FMT]" >&2; exit 255; fi
  [ "$storage" = local ] || no_storage "$storage"
  [[ "$vmid" =~ ^[1-9][0-9]{2,8}$ ]] || { echo "vmid: invalid format - value does not look like a valid VM ID" >&2; exit 255; }
  case "$fmt" in raw|qcow2|vmdk) ;; *) echo "format: value '$fmt' does not have a value in the enumeration 'raw, qcow2, subvol, vmdk'" >&2; exit 255 ;; esac
  [[ "$name" =~ ^vm-$vmid- ]] || { echo "illegal name '$name' - should be 'vm-$vmid-*'" >&2; exit 255; }
  [[ "$name" =~ ^[^/]+\\.$fmt$ ]] || { echo "illegal name '$name' - wrong extension for format ('$fmt')" >&2; exit 255; }
  case "$size" in
    *G) kib=$(( \${size%G} * 1024 * 1024 )) ;; *M) kib=$(( \${size%M} * 1024 )) ;; *K) kib=\${size%K} ;;
    *) [[ "$size" =~ ^[0-9]+$ ]] || { echo "size: value '$size' is not a size" >&2; exit 255; }; kib="$size" ;;
  esac
  mkdir -p "$images/$vmid"
  file="$images/$vmid/$name"
  [ -e "$file" ] && { echo "disk image '$file' already exists" >&2; exit 255; }
  qemu-img create -q -f "$fmt" "$file" "\${kib}K" >&2 || { rm -f "$file"; echo "unable to create image: qemu-img failed" >&2; exit 255; }
  echo "successfully created 'local:$vmid/$name'" ;;
free)
  [ $# -eq 2 ] || { echo "pvesm shim: usage: pvesm free VOLID" >&2; exit 255; }
  volid="$2"
  case "$volid" in
    local:[0-9]*/*) file="$images/\${volid#local:}"
      [ -f "$file" ] || { echo "unable to free '$volid': no such volume" >&2; exit 255; }
      rm -f "$file" ;;
    *:*) no_storage "\${volid%%:*}" ;;
    *) echo "unable to parse volume ID '$volid'" >&2; exit 255 ;;
  esac ;;
*) echo "pvesm shim: only 'path', 'alloc' and 'free' are supported" >&2; exit 255 ;;
esac
`;
}

/** cache=none needs O_DIRECT, which tmpfs refuses. */
function supportsDirectIo(dir: string): boolean {
  const probe = path.join(dir, '.odirect-probe');
  try {
    const fd = fs.openSync(probe, fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_DIRECT, 0o600);
    fs.closeSync(fd);
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}
