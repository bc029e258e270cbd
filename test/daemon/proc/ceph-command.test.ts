/**
 * Calls into Ceph are bounded: an `rbd` against a cluster that does not answer (a monitor address
 * nobody listens on) is killed at its bound and is CBT_CEPH_TIMEOUT; a refusal by rbd itself is
 * CBT_CEPH_COMMAND_FAILED with rbd's message. Real rbd CLI (ceph-common), no cluster needed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rbd } from '../../../daemon/proc/ceph-command';
import type { RbdImage } from '../../../daemon/pve/rbd-volume';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-ceph-'));
  // a monitor on a port nothing listens on: librados retries until it is killed
  fs.writeFileSync(path.join(dir, 'ceph.conf'), '[global]\nmon host = 127.0.0.1:9\nauth cluster required = none\nauth service required = none\nauth client required = none\n');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const img = (): RbdImage => ({ pool: 'rbd', image: 'vm-1-disk-0', options: [['conf', path.join(dir, 'ceph.conf')]] });

test('a cluster that does not answer: killed at the bound, CBT_CEPH_TIMEOUT naming the command', async () => {
  await expect(rbd(img(), ['snap', 'ls', 'rbd/vm-1-disk-0'], { timeoutMs: 1500 })).rejects.toMatchObject({
    code: 'CBT_CEPH_TIMEOUT',
    details: { command: 'rbd snap ls rbd/vm-1-disk-0', timeoutMs: 1500 },
  });
});

test('rbd refusing the call: CBT_CEPH_COMMAND_FAILED with its own message', async () => {
  await expect(rbd(img(), ['no-such-subcommand'], { timeoutMs: 30_000 })).rejects.toMatchObject({
    code: 'CBT_CEPH_COMMAND_FAILED',
    details: { stderr: expect.stringMatching(/no-such-subcommand|unrecognized|error/i) },
  });
});
