import path from 'node:path';
import { usePveNode } from './jest-cleanup';
import { installLoggingHook, type LoggingHook } from '../../daemon/sim/logging-hook';
import type { SimVm } from '../../daemon/sim/pve-node';
import { SimVzdumpError } from '../../daemon/sim/sim-errors';
import { vmBitmaps } from '../../daemon/sim/vm-bitmaps';

// vzdump hook phases (pve-manager VZDump.pm + qemu-server VZDump/QemuServer.pm) interleaved with the
// guest hookscript phases they cause. Guest lines read "VMID PHASE", vzdump lines "PHASE [MODE VMID]".
const sim = usePveNode();

describe('vzdump phases', () => {
  let vm: SimVm;
  let vzHook: LoggingHook;
  let log: string;

  beforeAll(async () => {
    vm = await sim.node.addVm({ vmid: 500, name: 'web', disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'virtio1', format: 'raw', sizeMiB: 4 }] });
  });

  function setup(vzFail: string[] = []): void {
    log = path.join(sim.node.root, `vzdump-${Date.now()}-${Math.random()}.log`);
    vzHook = installLoggingHook(sim.node, 'vzdump-hook.sh', { logPath: log, failPhases: vzFail });
    const guest = installLoggingHook(sim.node, 'guest-hook.sh', { logPath: log });
    sim.node.setVzdumpScript(vzHook.path);
    vm.setHookscript(guest.volid);
  }

  afterEach(async () => {
    sim.node.setVzdumpScript(undefined);
    vm.setHookscript(undefined);
    if (vm.running()) await vm.stop();
  });

  it('stop mode of a running VM: QEMU stops, is started paused for the backup (new pid) and resumed', async () => {
    await vm.start();
    setup();
    const oldPid = vm.pid();
    let duringPid: number | undefined;
    let duringStatus: unknown;
    await vm.vzdump('stop', async () => {
      duringPid = vm.pid();
      duringStatus = await vm.qmp((q) => q.execute('query-status'));
    });
    expect(vzHook.lines()).toEqual([
      'job-init',
      'job-start',
      'backup-start stop 500',
      'pre-stop stop 500',
      '500 pre-stop',
      '500 post-stop',
      '500 pre-start',
      '500 post-start',
      'backup-end stop 500',
      'pre-restart stop 500',
      'post-restart stop 500',
      'log-end stop 500',
      'job-end',
    ]);
    expect(duringPid).toBeDefined();
    expect(duringPid).not.toBe(oldPid);
    expect(duringStatus).toMatchObject({ running: true });
    expect(vm.pid()).toBe(duringPid);
  });

  it('stop mode drops transient bitmaps (new QEMU process)', async () => {
    await vm.start();
    setup();
    await vm.qmp((q) => q.execute('block-dirty-bitmap-add', { node: 'drive-virtio1', name: 'pve-cbt-t', persistent: false }));
    await vm.vzdump('stop');
    expect(await vmBitmaps(vm, 'virtio1')).toEqual([]);
  });

  it('snapshot mode: no guest hooks, same QEMU process, backup after post-restart', async () => {
    await vm.start();
    setup();
    const pid = vm.pid();
    await vm.vzdump('snapshot', async () => {
      expect(vm.pid()).toBe(pid);
    });
    expect(vzHook.lines()).toEqual([
      'job-init', 'job-start',
      'backup-start snapshot 500', 'pre-stop snapshot 500', 'pre-restart snapshot 500', 'post-restart snapshot 500',
      'backup-end snapshot 500', 'log-end snapshot 500', 'job-end',
    ]);
    expect(vm.pid()).toBe(pid);
  });

  it('suspend mode: paused then resumed in the same process, restart phases after backup-end', async () => {
    await vm.start();
    setup();
    const pid = vm.pid();
    await vm.vzdump('suspend');
    expect(vzHook.lines()).toEqual([
      'job-init', 'job-start',
      'backup-start suspend 500', 'pre-stop suspend 500',
      'backup-end suspend 500', 'pre-restart suspend 500', 'post-restart suspend 500', 'log-end suspend 500', 'job-end',
    ]);
    expect(vm.pid()).toBe(pid);
    expect(await vm.qmp((q) => q.execute('query-status'))).toMatchObject({ running: true });
  });

  it('a stopped VM is backed up in stop mode: started paused (pre-start, post-start), then stopped (pre-stop, post-stop)', async () => {
    setup();
    let runningDuring = false;
    await vm.vzdump('snapshot', async () => {
      runningDuring = vm.running();
    });
    expect(runningDuring).toBe(true);
    expect(vzHook.lines()).toEqual([
      'job-init', 'job-start',
      'backup-start stop 500',
      '500 pre-start', '500 post-start',
      'backup-end stop 500',
      '500 pre-stop', '500 post-stop',
      'log-end stop 500', 'job-end',
    ]);
    expect(vm.running()).toBe(false);
  });

  it('runs the hook with vzdump\'s emptied environment: no PATH, TARGET at backup-end, LOGFILE at log-end', async () => {
    await vm.start();
    setup();
    const before = sim.node.hookLog.length;
    await vm.vzdump('snapshot');
    const runs = sim.node.hookLog.slice(before).filter((r) => r.kind === 'vzdump');
    const envKeys = Object.fromEntries(runs.map((r) => [r.phase, Object.keys(r.env).sort().join(',')]));
    expect(envKeys).toEqual({
      'job-init': 'DUMPDIR,STOREID',
      'job-start': 'DUMPDIR,STOREID',
      'backup-start': 'DUMPDIR,HOSTNAME,STOREID,VMTYPE',
      'pre-stop': 'DUMPDIR,HOSTNAME,STOREID,VMTYPE',
      'pre-restart': 'DUMPDIR,HOSTNAME,STOREID,VMTYPE',
      'post-restart': 'DUMPDIR,HOSTNAME,STOREID,VMTYPE',
      'backup-end': 'DUMPDIR,HOSTNAME,STOREID,TARGET,VMTYPE',
      'log-end': 'DUMPDIR,HOSTNAME,LOGFILE,STOREID,VMTYPE',
      'job-end': 'DUMPDIR,STOREID',
    });
    const end = runs.find((r) => r.phase === 'backup-end')!;
    expect(end.env).toMatchObject({ STOREID: 'local', DUMPDIR: sim.node.dumpDir, VMTYPE: 'qemu', HOSTNAME: 'web' });
    expect(end.env.TARGET).toMatch(new RegExp(`^${sim.node.dumpDir}/vzdump-qemu-500-\\d{4}_\\d\\d_\\d\\d-\\d\\d_\\d\\d_\\d\\d\\.vma\\.zst$`));
    expect(runs.find((r) => r.phase === 'log-end')!.env.LOGFILE).toBe(end.env.TARGET.replace(/\.vma\.zst$/, '.log'));
  });

  it('a failing hook fails the backup; backup-abort, log-end and job-end still run', async () => {
    await vm.start();
    setup(['pre-stop']);
    const err = await vm.vzdump('stop').catch((e: unknown) => e);
    expect(SimVzdumpError.is(err)).toBe(true);
    expect((err as { details: unknown }).details).toMatchObject({ vmid: 500, mode: 'stop', phase: 'pre-stop' });
    expect(vzHook.lines()).toEqual([
      'job-init', 'job-start',
      'backup-start stop 500', 'pre-stop stop 500',
      'backup-abort stop 500', 'log-end stop 500', 'job-end',
    ]);
    expect(vm.running()).toBe(true);
  });

  it('an error during the backup aborts it and restarts the VM', async () => {
    await vm.start();
    setup();
    await expect(vm.vzdump('suspend', async () => Promise.reject(new Error('disk read failed')))).rejects.toThrow('disk read failed');
    expect(vzHook.lines().slice(-5)).toEqual([
      'pre-restart suspend 500', 'post-restart suspend 500', 'backup-abort suspend 500', 'log-end suspend 500', 'job-end',
    ]);
    expect(await vm.qmp((q) => q.execute('query-status'))).toMatchObject({ running: true });
  });

  it('a failing job-start aborts the job before any guest phase', async () => {
    await vm.start();
    setup(['job-start']);
    await expect(vm.vzdump('snapshot')).rejects.toMatchObject({ code: 'CBT_SIM_VZDUMP', details: { phase: 'job-start' } });
    expect(vzHook.lines()).toEqual(['job-init', 'job-start', 'job-abort']);
  });
});
