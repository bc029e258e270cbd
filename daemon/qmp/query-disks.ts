/**
 * Lists a running VM's disks with their format node and dirty bitmaps (layout rules in
 * block-layout.ts). `query-named-block-nodes` is only asked for when a drive's top node is a filter
 * (PVE 9 `-blockdev` layout, or an implicit backup filter), to keep the session short.
 */
import { disksFromBlockInfo, needsNamedNodes, type QemuDisk, type RawBlockInfo, type RawBlockNode } from './block-layout';
import type { QmpClient } from './qmp-client';

export type { QemuBitmap, QemuDisk } from './block-layout';

export async function queryDisks(qmp: QmpClient): Promise<QemuDisk[]> {
  const blocks = await qmp.execute<RawBlockInfo[]>('query-block');
  const named = needsNamedNodes(blocks)
    ? await qmp.execute<RawBlockNode[]>('query-named-block-nodes', { flat: true })
    : [];
  return disksFromBlockInfo(blocks, named);
}
