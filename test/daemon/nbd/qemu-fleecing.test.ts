/**
 * The client against QEMU's own NBD server exporting a point-in-time view of a running VM's disk
 * (the fleecing recipe of shared/docs/pve-qemu-facts.md) with the frozen dirty bitmap: extents must
 * equal nbdinfo's, bytes must equal the disk's reference at the freeze, and guest writes after the
 * freeze must not show.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mapExtents } from '../../../daemon/nbd/map-extents';
import { NbdClient } from '../../../daemon/nbd/nbd-client';
import { readRanges } from '../../../daemon/nbd/nbd-reader';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { nbdinfoMap, sha256 } from './qemu-nbd-server';

const MiB = 1024 * 1024;
const K64 = 64 * 1024;
const sim = usePveNode();

async function fleece(vm: SimVm, key: string, dir: string): Promise<{ socket: string; teardown: () => Promise<void> }> {
  const drive = `drive-${key}`;
  const disk = vm.disks.find((d) => d.key === key);
  if (!disk) throw new Error(`no disk ${key}`);
  const scratch = path.join(dir, `${key}-scratch.qcow2`);
  const socket = path.join(dir, `${key}.nbd`);
  execFileSync('qemu-img', ['create', '-f', 'qcow2', scratch, String(disk.sizeBytes)], { stdio: 'ignore' });
  const nodeName = await vm.qmp(async (q) => (await queryDisks(q)).find((d) => d.device === drive)?.nodeName);
  if (!nodeName) throw new Error(`no node for ${drive}`);
  await vm.qmp(async (q) => {
    await q.execute('blockdev-add', { driver: 'qcow2', 'node-name': `fleece-${key}`, file: { driver: 'file', filename: scratch }, backing: nodeName });
    await q.execute('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: drive, name: 'b1', persistent: disk.format === 'qcow2' } },
        { type: 'block-dirty-bitmap-disable', data: { node: drive, name: 'b0' } },
        { type: 'blockdev-backup', data: { device: drive, target: `fleece-${key}`, sync: 'none', 'job-id': `job-${key}` } },
      ],
    });
    await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socket } } });
    await q.execute('block-export-add', { type: 'nbd', id: `exp-${key}`, 'node-name': `fleece-${key}`, name: key, bitmaps: [{ node: nodeName, name: 'b0' }] });
  });
  return {
    socket,
    teardown: async () => {
      await vm.qmp(async (q) => {
        await q.execute('block-export-del', { id: `exp-${key}` });
        await q.execute('block-job-cancel', { device: `job-${key}`, force: true });
        for (let i = 0; i < 500 && (await q.execute<Array<unknown>>('query-block-jobs')).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
        for (let i = 0; i < 500; i++) {
          try {
            await q.execute('blockdev-del', { 'node-name': `fleece-${key}` });
            break;
          } catch (err) {
            if (i === 499) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        await q.execute('nbd-server-stop');
      });
      fs.rmSync(scratch, { force: true });
    },
  };
}

test.each(['qcow2', 'raw'] as const)('point-in-time export of a running %s disk with its frozen dirty bitmap', async (format) => {
  const vmid = format === 'qcow2' ? 201 : 202;
  const vm = await sim.node.addVm({ vmid, disks: [{ key: 'scsi0', format, sizeMiB: 16 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x11, offset: MiB, length: K64 });
  await vm.qmp((q) => q.execute('block-dirty-bitmap-add', { node: 'drive-scsi0', name: 'b0', persistent: format === 'qcow2' }));
  await vm.write('scsi0', { pattern: 0x22, offset: 2 * MiB, length: 2 * K64 });
  await vm.write('scsi0', { pattern: 0x23, offset: 9 * MiB + 4096, length: 4096 });
  await vm.write('scsi0', { pattern: 0x24, offset: 16 * MiB - 512, length: 512 });
  const frozen = await vm.snapshotReference('scsi0');
  const dir = fs.mkdtempSync(path.join(sim.node.root, 'fleece-'));
  const { socket, teardown } = await fleece(vm, 'scsi0', dir);
  try {
    // The guest keeps writing; the export must not see it.
    await vm.write('scsi0', { pattern: 0x33, offset: 2 * MiB, length: K64 });
    await vm.write('scsi0', { pattern: 0x34, offset: 5 * MiB, length: K64 });
    const uri = `nbd+unix:///scsi0?socket=${socket}`;
    const client = await NbdClient.connect({ socketPath: socket, exportName: 'scsi0', metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'], timeoutMs: 10_000 });
    try {
      expect(client.size).toBe(16 * MiB);
      const alloc = await mapExtents(client, 'base:allocation');
      const dirty = await mapExtents(client, 'qemu:dirty-bitmap:b0');
      expect(alloc).toEqual(nbdinfoMap(uri));
      expect(dirty).toEqual(nbdinfoMap(uri, 'qemu:dirty-bitmap:b0'));
      expect(dirty.filter((e) => e.flags & 1).map((e) => [e.offset, e.length])).toEqual([
        [2 * MiB, 2 * K64],
        [9 * MiB, K64],
        [16 * MiB - K64, K64],
      ]);
      const image = await client.read(0, client.size);
      expect(sha256(image)).toBe(sha256(fs.readFileSync(frozen)));

      // Incremental-style read of exactly the dirty ranges, through the bulk reader.
      const ref = fs.readFileSync(frozen);
      let bytes = 0;
      await readRanges(
        dirty.filter((e) => e.flags & 1),
        (offset, data) => {
          bytes += data.length;
          expect(data.equals(ref.subarray(offset, offset + data.length))).toBe(true);
        },
        { connect: () => NbdClient.connect({ socketPath: socket, exportName: 'scsi0', timeoutMs: 10_000 }) },
      );
      expect(bytes).toBe(4 * K64);
    } finally {
      await client.close();
    }
  } finally {
    await teardown();
  }
  await vm.stop();
});
