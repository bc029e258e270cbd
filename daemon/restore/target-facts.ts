/**
 * The facts target-decision.ts decides on, read from the node: what the target is (following
 * symlinks), whether its directory exists, which processes have it open (/proc, open-files.ts),
 * and which volumes of the node's VM configs it is (node-volumes.ts, through `pvesm path`), with
 * each such VM's running QEMU (the run dir's pid file, checked against /proc).
 *
 * A volume is the target when both exist and are the same file or device (device+inode, or the
 * device number), or when their canonical paths are equal (a volume whose file or LV is absent).
 * An RBD image target (`rbd:` name) has its own facts (rbd-target-facts.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileIdentity, processesHolding, sameFile, type FileIdentity } from '../pve/open-files';
import { nodeVolumes, type VolumePathCache } from '../pve/node-volumes';
import { readQemuProcess } from '../pve/qemu-process';
import { parseRbdName } from '../pve/rbd-volume';
import { gatherRbdTargetFacts } from './rbd-target-facts';
import type { TargetFacts, TargetKind, TargetVolume, UnresolvedVolume } from './target-decision';

export interface NodePaths {
  readonly qemuServerConfigDir: string;
  readonly qemuServerRunDir: string;
  readonly pvesmPath: string;
  /** Where /proc is (tests may point elsewhere); default /proc. */
  readonly procDir?: string;
}

function statOrUndefined(p: string, follow = true): fs.Stats | undefined {
  try {
    return follow ? fs.statSync(p) : fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

function kindOf(st: fs.Stats | undefined, lst: fs.Stats | undefined): TargetKind {
  if (!st) return lst ? 'file' : 'missing'; // a dangling symlink is an existing name
  if (st.isFile()) return 'file';
  if (st.isBlockDevice()) return 'block device';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'character device';
}

/** The path with every symlink of its existing directories resolved. */
function canonical(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
    } catch {
      return abs;
    }
  }
}

export async function gatherTargetFacts(target: string, node: NodePaths, cache?: VolumePathCache): Promise<TargetFacts> {
  const rbdImage = parseRbdName(target);
  if (rbdImage) return gatherRbdTargetFacts(target, rbdImage, node, cache);
  const abs = path.resolve(target);
  const st = statOrUndefined(abs);
  const kind = kindOf(st, statOrUndefined(abs, false));
  const dir = path.dirname(abs);
  const dirExists = statOrUndefined(dir)?.isDirectory() ?? false;
  const id: FileIdentity | undefined = st ? fileIdentity(st) : undefined;
  const holders = id ? processesHolding(id, node.procDir) : [];
  const canonicalTarget = canonical(abs);
  const volumes: TargetVolume[] = [];
  const unresolved: UnresolvedVolume[] = [];
  for (const v of await nodeVolumes(node, cache)) {
    if (v.path === undefined) {
      unresolved.push({ vmid: v.vmid, disk: v.disk, volid: v.volid, reason: v.reason });
      continue;
    }
    const vst = statOrUndefined(v.path);
    const same = (id && vst && sameFile(id, fileIdentity(vst))) || canonical(v.path) === canonicalTarget;
    if (!same) continue;
    volumes.push({ vmid: v.vmid, disk: v.disk, volid: v.volid, qemuPid: readQemuProcess(node.qemuServerRunDir, v.vmid)?.pid });
  }
  return { target: abs, kind, dir, dirExists, holders, volumes, unresolved };
}
