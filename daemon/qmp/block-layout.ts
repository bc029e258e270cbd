/**
 * Pure mapping from QEMU's `query-block` (+ `query-named-block-nodes {flat: true}`) JSON to the
 * VM's disks, for both qemu-server layouts:
 *
 * - PVE 7/8 `-drive`: `device: "drive-scsi0"`, `inserted` is normally the format node (auto name
 *   `#blockNNN`) and carries the dirty bitmaps. During a `blockdev-backup` a copy-before-write filter
 *   sits on top (verified on 7.2: query-block then shows the filter with anonymous job bitmaps).
 * - PVE 9 `-blockdev`: `device: ""`, `inserted.node-name: "drive-scsi0"` is a throttle filter whose
 *   `file` child is the format node; the bitmaps are on that format node, found in the named nodes.
 *
 * Filters are walked down through `image.backing-image` (QEMU reports a filter's child there) and the
 * format node is matched among the named nodes by (driver, filename). Removable-media devices (cd-rom,
 * floppy) and drives without a medium are not disks and are skipped.
 */
import { QmpLayoutError } from './qmp-errors';

export interface QemuBitmap {
  name: string;
  count: number;
  granularity: number;
  recording: boolean;
  busy: boolean;
  persistent: boolean;
  inconsistent: boolean;
}

export interface QemuDisk {
  /** Config key: 'scsi0'. */
  drive: string;
  /** 'drive-scsi0': accepted as `node` by QMP in both layouts. */
  device: string;
  qdev?: string;
  /** Driver of the format node: 'qcow2' | 'raw' | 'vmdk'. */
  format: string;
  /** The format node, where bitmaps live. */
  nodeName: string;
  file: string;
  /** Virtual size in bytes. */
  size: number;
  bitmaps: QemuBitmap[];
}

export interface RawImageInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'backing-image'?: RawImageInfo;
}

export interface RawBitmap {
  name?: string;
  count: number;
  granularity: number;
  recording: boolean;
  busy: boolean;
  persistent: boolean;
  inconsistent?: boolean;
}

/** `BlockDeviceInfo`: query-block's `inserted` and each entry of query-named-block-nodes. */
export interface RawBlockNode {
  'node-name': string;
  drv: string;
  file: string;
  image: RawImageInfo;
  'dirty-bitmaps'?: RawBitmap[];
}

export interface RawBlockInfo {
  device: string;
  qdev?: string;
  removable?: boolean;
  inserted?: RawBlockNode;
}

/** Drivers that store a guest disk's bytes; the walk stops at the first one. */
const FORMAT_DRIVERS = new Set(['qcow2', 'raw', 'vmdk', 'qed', 'vpc', 'vhdx', 'vdi', 'parallels', 'luks']);
/** Protocol drivers used without a format node on top; also end the walk. */
const PROTOCOL_DRIVERS = new Set(['file', 'host_device', 'rbd', 'iscsi', 'nbd', 'gluster', 'nfs']);

/** True when some drive's top node is a filter, i.e. the named nodes are needed to find the format node. */
export function needsNamedNodes(blocks: RawBlockInfo[]): boolean {
  return blocks.some((b) => isDisk(b) && !isTerminal(b.inserted!.drv));
}

export function disksFromBlockInfo(blocks: RawBlockInfo[], namedNodes: RawBlockNode[] = []): QemuDisk[] {
  const disks: QemuDisk[] = [];
  for (const block of blocks) {
    if (!isDisk(block)) continue;
    const top = block.inserted!;
    const device = block.device !== '' ? block.device : top['node-name'];
    const node = findFormatNode(device, top, namedNodes);
    const qdev = normalizeQdev(block.qdev);
    disks.push({
      drive: device.startsWith('drive-') ? device.slice('drive-'.length) : (qdev ?? device),
      device,
      ...(qdev !== undefined ? { qdev } : {}),
      format: node.drv,
      nodeName: node['node-name'],
      file: node.file,
      size: node.image['virtual-size'],
      // Block jobs keep anonymous internal bitmaps (e.g. on a copy-before-write filter); only named ones are ours to see.
      bitmaps: (node['dirty-bitmaps'] ?? []).filter((b) => typeof b.name === 'string' && b.name !== '').map(toBitmap),
    });
  }
  return disks;
}

/** A cd-rom or floppy is a removable-media device; a drive without any device also reports removable. */
function isDisk(block: RawBlockInfo): boolean {
  return block.inserted !== undefined && !(block.removable === true && block.qdev !== undefined && block.qdev !== '');
}

function isTerminal(drv: string): boolean {
  return FORMAT_DRIVERS.has(drv) || PROTOCOL_DRIVERS.has(drv);
}

/**
 * query-block's `image` nests every child as `backing-image` (flat named nodes do not), so the chain
 * is walked there and only the final format node is looked up among the named nodes.
 */
function findFormatNode(device: string, top: RawBlockNode, namedNodes: RawBlockNode[]): RawBlockNode {
  if (isTerminal(top.drv)) return top;
  let image = top.image;
  for (let depth = 0; !isTerminal(image.format); depth++) {
    const child = image['backing-image'];
    if (!child) throw QmpLayoutError({ device, reason: `filter ${image.format} reports no child` });
    if (depth > 16) throw QmpLayoutError({ device, reason: 'filter chain too deep' });
    image = child;
  }
  const node = namedNodes.find((n) => n.drv === image.format && n.file === image.filename);
  if (!node) throw QmpLayoutError({ device, reason: `no named node ${image.format} ${image.filename} below ${top['node-name']}` });
  return node;
}

/** virtio-blk reports `/machine/peripheral/virtio1/virtio-backend`; Proxmox's id is `virtio1`. */
function normalizeQdev(qdev: string | undefined): string | undefined {
  if (!qdev) return undefined;
  const m = /^\/machine\/peripheral\/([^/]+)/.exec(qdev);
  if (m) return m[1];
  return qdev.startsWith('/') ? undefined : qdev;
}

function toBitmap(b: RawBitmap): QemuBitmap {
  return {
    name: b.name!,
    count: b.count,
    granularity: b.granularity,
    recording: b.recording,
    busy: b.busy,
    persistent: b.persistent,
    inconsistent: b.inconsistent === true,
  };
}
