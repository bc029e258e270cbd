import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterViewOf, isOnThisNode, otherNodeOf } from '../../../daemon/migration/cluster-view';
import { CLAIM_FORMAT, HANDOFF_FORMAT, parseClaim, parseHandoff } from '../../../daemon/migration/handoff-format';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-cv-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('clusterViewOf', () => {
  it('reads the node name and pmxcfs tree through the /etc/pve/qemu-server link, and finds where a VM is', () => {
    for (const n of ['pve1', 'pve2']) fs.mkdirSync(path.join(dir, 'pve/nodes', n, 'qemu-server'), { recursive: true });
    fs.symlinkSync(path.join(dir, 'pve/nodes/pve1/qemu-server'), path.join(dir, 'pve/qemu-server'));
    const view = clusterViewOf(path.join(dir, 'pve/qemu-server'));
    expect(view).toEqual({ nodeName: 'pve1', nodesDir: fs.realpathSync(path.join(dir, 'pve/nodes')) });
    fs.writeFileSync(path.join(dir, 'pve/nodes/pve1/qemu-server/100.conf'), '');
    fs.writeFileSync(path.join(dir, 'pve/nodes/pve2/qemu-server/101.conf'), '');
    expect(isOnThisNode(view!, 100)).toBe(true);
    expect(otherNodeOf(view!, 100)).toBeUndefined();
    expect(otherNodeOf(view!, 101)).toBe('pve2');
    expect(otherNodeOf(view!, 102)).toBeUndefined();
  });

  it('is no cluster for a plain folder or a missing one', () => {
    fs.mkdirSync(path.join(dir, 'etc/pve/qemu-server'), { recursive: true });
    expect(clusterViewOf(path.join(dir, 'etc/pve/qemu-server'))).toBeUndefined();
    expect(clusterViewOf(path.join(dir, 'nothing'))).toBeUndefined();
  });
});

describe('handoff files', () => {
  const claim = { format: CLAIM_FORMAT, vmid: 100, from: 'pve1', to: 'pve2', claimId: 'u', claimedAt: 't' };
  const handoff = { format: HANDOFF_FORMAT, vmid: 100, from: 'pve1', to: 'pve2', claimId: 'u', writtenAt: 't', disks: [{ disk: 'scsi0', format: 'raw', bitmapName: 'pve-cbt-scsi0-g1', generation: 1 }] };
  const buf = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

  it('parses what is well-formed and for this VM, and nothing else', () => {
    expect(parseClaim(buf(claim), 100)).toEqual(claim);
    expect(parseHandoff(buf(handoff), 100)).toEqual(handoff);
    expect(parseHandoff(buf({ ...handoff, claimId: null }), 100)).toMatchObject({ claimId: null });
    for (const bad of [null, buf('not json'), buf('[]'), buf({ ...claim, vmid: 101 }), buf({ ...claim, format: 'x' }), buf({ ...claim, to: 5 }), buf({ ...claim, claimId: '' })]) {
      expect(parseClaim(bad, 100)).toBeUndefined();
    }
    for (const bad of [buf({ ...handoff, disks: 'x' }), buf({ ...handoff, disks: [{ disk: 'scsi0' }] }), buf({ ...handoff, disks: [{ ...handoff.disks[0], generation: -1 }] }), buf({ ...handoff, vmid: 7 })]) {
      expect(parseHandoff(bad, 100)).toBeUndefined();
    }
  });
});
