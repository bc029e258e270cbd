import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createOffThreadExec, type OffThreadExec } from '../../../daemon/proc/exec-off-thread';
import { pvesmPath } from '../../../daemon/pve/pvesm';
import { readVmDisks } from '../../../daemon/pve/vm-disks';

describe('vm-disks with a pvesm shim', () => {
  let dir: string;
  let shim: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    shim = path.join(dir, 'pvesm');
    // Maps STORAGE:REST to DIR/STORAGE/REST like a directory storage; "hang:" sleeps; "bad:" fails.
    fs.writeFileSync(
      shim,
      `#!/bin/sh\n[ "$1" = path ] || exit 2\ncase "$2" in hang:*) sleep 5;; bad:*) echo "storage 'bad' does not exist" >&2; exit 255;;\n` +
        // "say:TEXT" prints TEXT as the path, like a hostile or broken storage plugin would.
        `  say:*) printf '%s\\n' "\${2#say:}"; exit 0;; esac\n` +
        `echo "${dir}/$(echo "$2" | sed 's/:/\\//')"\n`,
      { mode: 0o755 },
    );
    fs.mkdirSync(path.join(dir, 'conf'));
    fs.writeFileSync(
      path.join(dir, 'conf', '101.conf'),
      'scsi0: local:101/vm-101-disk-0.qcow2,size=16M\nide2: none,media=cdrom\nscsi1: lvm:vm-101-disk-1,size=8M\n[snap1]\nscsi2: local:101/old.qcow2\n',
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('resolves paths through pvesm', async () => {
    const { config, disks } = await readVmDisks(101, { qemuServerConfigDir: path.join(dir, 'conf'), pvesmPath: shim });
    expect(config.vmid).toBe(101);
    expect(disks.map((d) => [d.key, d.format, d.path])).toEqual([
      ['scsi0', 'qcow2', path.join(dir, 'local/101/vm-101-disk-0.qcow2')],
      ['scsi1', 'raw', path.join(dir, 'lvm/vm-101-disk-1')],
    ]);
  });

  test('missing config → CBT_PVE_CONFIG_MISSING', async () => {
    await expect(readVmDisks(999, { qemuServerConfigDir: path.join(dir, 'conf'), pvesmPath: shim })).rejects.toMatchObject({
      code: 'CBT_PVE_CONFIG_MISSING',
    });
  });

  test('pvesm error and timeout → CBT_PVE_PVESM_FAILED', async () => {
    await expect(pvesmPath(shim, 'bad:x')).rejects.toMatchObject({ code: 'CBT_PVE_PVESM_FAILED', details: { volid: 'bad:x' } });
    const t0 = Date.now();
    await expect(pvesmPath(shim, 'hang:x', { timeoutMs: 300 })).rejects.toMatchObject({ code: 'CBT_PVE_PVESM_FAILED' });
    expect(Date.now() - t0).toBeLessThan(10_000); // the 300 ms timeout ended the hung pvesm, not a hang
  });

  describe('pvesm run off the event loop (the daemon\'s exec-off-thread) answers as in-thread', () => {
    let off: OffThreadExec;
    beforeAll(() => (off = createOffThreadExec()));
    afterAll(() => off.close());

    test('paths, refusals, failures and the timeout', async () => {
      const conf = { qemuServerConfigDir: path.join(dir, 'conf'), pvesmPath: shim };
      const inThread = await readVmDisks(101, conf);
      await expect(readVmDisks(101, { ...conf, pvesmExec: off.exec })).resolves.toEqual(inThread);
      await expect(pvesmPath(shim, 'say:relative/a.raw', { exec: off.exec })).rejects.toMatchObject({ code: 'CBT_PVE_PATH_REFUSED' });
      await expect(pvesmPath(shim, 'bad:x', { exec: off.exec })).rejects.toMatchObject({
        code: 'CBT_PVE_PVESM_FAILED',
        details: { volid: 'bad:x', reason: "storage 'bad' does not exist" },
      });
      await expect(pvesmPath(shim, 'hang:x', { timeoutMs: 300, exec: off.exec })).rejects.toMatchObject({
        code: 'CBT_PVE_PVESM_FAILED',
        details: { reason: 'timed out after 300 ms' },
      });
      await expect(pvesmPath(path.join(dir, 'no-such-pvesm'), 'local:x', { exec: off.exec })).rejects.toMatchObject({ code: 'CBT_PVE_PVESM_FAILED' });
    });

    test('after close, calls run on the calling thread', async () => {
      const other = createOffThreadExec();
      await other.close();
      await expect(pvesmPath(shim, 'local:101/a.qcow2', { exec: other.exec })).resolves.toBe(path.join(dir, 'local/101/a.qcow2'));
    });
  });

  test('absolute paths are passed through', async () => {
    await expect(pvesmPath('/nonexistent', '/dev/sdb')).resolves.toBe('/dev/sdb');
  });

  test.each([
    ['--help', 'option-like'],
    ['-U', 'option-like'],
    ['json:{"driver":"file","filename":"/etc/hostname"}', 'json-pseudo-filename'],
    ['nbd:unix:/x', 'protocol'],
    ['relative/path', 'relative'],
  ])('pvesm printing %j → CBT_PVE_PATH_REFUSED (%s)', async (printed, refusal) => {
    await expect(pvesmPath(shim, `say:${printed}`, { vmid: 101 })).rejects.toMatchObject({
      code: 'CBT_PVE_PATH_REFUSED',
      details: { vmid: 101, volid: `say:${printed}`, path: printed, refusal },
    });
  });

  test('a refused path names the VM when resolved from its config', async () => {
    fs.writeFileSync(path.join(dir, 'conf', '102.conf'), 'scsi0: local:102/vm-102-disk-0.raw,size=1M\nscsi1: say:relative/path,size=1M\n');
    await expect(readVmDisks(102, { qemuServerConfigDir: path.join(dir, 'conf'), pvesmPath: shim })).rejects.toMatchObject({
      code: 'CBT_PVE_PATH_REFUSED',
      details: { vmid: 102, volid: 'say:relative/path', path: 'relative/path', refusal: 'relative' },
    });
  });

  test('printed paths come back normalized; rbd: passes as printed', async () => {
    await expect(pvesmPath(shim, 'say://mnt/pve/x/./images/../images/a.raw')).resolves.toBe('/mnt/pve/x/images/a.raw');
    await expect(pvesmPath(shim, 'say:rbd:pool/vm-101-disk-0:id=admin')).resolves.toBe('rbd:pool/vm-101-disk-0:id=admin');
    await expect(pvesmPath('/nonexistent', '/dev//sdb/')).rejects.toMatchObject({ code: 'CBT_PVE_PATH_REFUSED', details: { refusal: 'directory' } });
  });
});
