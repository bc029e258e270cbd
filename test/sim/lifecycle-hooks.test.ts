import fs from 'node:fs';
import path from 'node:path';
import { usePveNode } from './jest-cleanup';
import { installLoggingHook } from '../../daemon/sim/logging-hook';
import { isAlive, waitForExit } from '../../daemon/sim/process-reaper';
import type { SimVm } from '../../daemon/sim/pve-node';
import { SimHookAbortError, SimStateError } from '../../daemon/sim/sim-errors';

// Hook phases per operation, as in the table of shared/docs/pve-qemu-facts.md.
const sim = usePveNode({ env: { PVE_CBT_TEST_MARK: 'node-env' } });

describe('guest hookscript phases', () => {
  let vm: SimVm;
  beforeAll(async () => {
    vm = await sim.node.addVm({ vmid: 400, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
  });
  afterEach(async () => {
    vm.setHookscript(undefined);
    if (vm.running()) await vm.stop();
  });

  function hook(name: string, failPhases?: string[]): ReturnType<typeof installLoggingHook> {
    const h = installLoggingHook(sim.node, name, { failPhases });
    vm.setHookscript(h.volid);
    return h;
  }

  it('start runs pre-start then post-start, with CPUs running, and the node environment', async () => {
    const h = hook('start.sh');
    const before = sim.node.hookLog.length;
    await vm.start();
    expect(h.lines()).toEqual(['400 pre-start', '400 post-start']);
    const runs = sim.node.hookLog.slice(before);
    expect(runs.map((r) => [r.kind, r.argv, r.exitCode])).toEqual([
      ['guest', ['400', 'pre-start'], 0],
      ['guest', ['400', 'post-start'], 0],
    ]);
    expect(runs[0].script).toBe(path.join(sim.node.snippetsDir, 'start.sh'));
    expect(runs[0].env.PVE_CBT_TEST_MARK).toBe('node-env');
    expect(runs[0].env.PATH).toBeDefined();
    expect(await vm.qmp((q) => q.execute('query-status'))).toMatchObject({ status: 'running' });
  });

  it('stop and shutdown run pre-stop then post-stop, and QEMU is gone', async () => {
    for (const op of ['stop', 'shutdown'] as const) {
      await vm.start();
      const h = hook(`${op}.sh`);
      const pid = vm.pid()!;
      await vm[op]();
      expect(h.lines()).toEqual(['400 pre-stop', '400 post-stop']);
      expect(isAlive(pid)).toBe(false);
      expect(vm.running()).toBe(false);
      expect(vm.pid()).toBeUndefined();
      vm.setHookscript(undefined);
    }
  });

  it('reboot runs pre-stop, post-stop, pre-start, post-start with a new QEMU pid', async () => {
    await vm.start();
    const h = hook('reboot.sh');
    const oldPid = vm.pid()!;
    await vm.reboot();
    expect(h.lines()).toEqual(['400 pre-stop', '400 post-stop', '400 pre-start', '400 post-start']);
    expect(vm.pid()).toBeDefined();
    expect(vm.pid()).not.toBe(oldPid);
    expect(isAlive(oldPid)).toBe(false);
  });

  it('reset and guest reboot run no hook and keep the pid', async () => {
    await vm.start();
    const h = hook('reset.sh');
    const pid = vm.pid();
    await vm.reset();
    await vm.guestReboot();
    expect(h.lines()).toEqual([]);
    expect(vm.pid()).toBe(pid);
  });

  it('a crash runs post-stop only', async () => {
    await vm.start();
    const h = hook('crash.sh');
    const pid = vm.pid()!;
    await vm.crash();
    expect(h.lines()).toEqual(['400 post-stop']);
    expect(isAlive(pid)).toBe(false);
  });

  it('QEMU exiting on its own (quit from another QMP client, outside kill) runs post-stop like qmeventd', async () => {
    await vm.start();
    const h = hook('own-exit.sh');
    await vm.qmp((q) => q.execute('quit')).catch(() => undefined);
    await vm.whenStopped();
    expect(h.lines()).toEqual(['400 post-stop']);
    expect(vm.running()).toBe(false);
    await vm.start();
    const pid = vm.pid()!;
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 30_000);
    // The next operation first finishes the cleanup of an exit it may not have noticed yet.
    await vm.start();
    expect(h.lines()).toEqual(['400 post-stop', '400 pre-start', '400 post-start', '400 post-stop', '400 pre-start', '400 post-start']);
  });

  it('no hook runs when the config is gone (VM migrated away)', async () => {
    await vm.start();
    const h = hook('gone.sh');
    const conf = fs.readFileSync(vm.confPath);
    fs.rmSync(vm.confPath);
    try {
      await vm.crash();
      expect(h.lines()).toEqual([]);
    } finally {
      fs.writeFileSync(vm.confPath, conf);
    }
  });

  it('a failing pre-start aborts the start: no QEMU, no post-start', async () => {
    const h = hook('fail-pre-start.sh', ['pre-start']);
    // A crash leaves a stale pid file behind, as on a real node; a launch would replace it.
    const stalePid = fs.existsSync(vm.pidPath) ? fs.readFileSync(vm.pidPath, 'utf8') : undefined;
    const err = await vm.start().catch((e: unknown) => e);
    expect(SimHookAbortError.is(err)).toBe(true);
    expect((err as { details: unknown }).details).toMatchObject({ vmid: 400, phase: 'pre-start', exitCode: 1, stderr: 'failing pre-start\n' });
    expect(h.lines()).toEqual(['400 pre-start']);
    expect(vm.running()).toBe(false);
    expect(fs.existsSync(vm.pidPath) ? fs.readFileSync(vm.pidPath, 'utf8') : undefined).toBe(stalePid);
  });

  it('failing post-start, pre-stop and post-stop hooks are only recorded', async () => {
    const h = hook('fail-others.sh', ['post-start', 'pre-stop', 'post-stop']);
    const before = sim.node.hookLog.length;
    await vm.start();
    expect(vm.running()).toBe(true);
    await vm.reboot();
    expect(vm.running()).toBe(true);
    await vm.stop();
    expect(vm.running()).toBe(false);
    expect(h.lines()).toEqual([
      '400 pre-start', '400 post-start',
      '400 pre-stop', '400 post-stop', '400 pre-start', '400 post-start',
      '400 pre-stop', '400 post-stop',
    ]);
    expect(sim.node.hookLog.slice(before).map((r) => `${r.phase}:${r.exitCode}`)).toEqual([
      'pre-start:0', 'post-start:1', 'pre-stop:1', 'post-stop:1', 'pre-start:0', 'post-start:1', 'pre-stop:1', 'post-stop:1',
    ]);
  });

  it('a failing pre-start on reboot leaves the VM stopped', async () => {
    await vm.start();
    hook('fail-reboot.sh', ['pre-start']);
    await expect(vm.reboot()).rejects.toMatchObject({ code: 'CBT_SIM_HOOK_ABORT' });
    expect(vm.running()).toBe(false);
  });

  it('a migration target start sets PVE_MIGRATED_FROM for the hooks', async () => {
    hook('migrate.sh');
    const before = sim.node.hookLog.length;
    await vm.start({ migratedFrom: 'pve-other' });
    const runs = sim.node.hookLog.slice(before);
    expect(runs.map((r) => [r.phase, r.env.PVE_MIGRATED_FROM])).toEqual([
      ['pre-start', 'pve-other'],
      ['post-start', 'pve-other'],
    ]);
  });

  it('a paused start keeps the CPUs stopped', async () => {
    await vm.start({ paused: true });
    expect(await vm.qmp((q) => q.execute('query-status'))).toMatchObject({ running: false, status: 'prelaunch' });
  });

  it('a VM without hookscript runs no hook; a non-executable one fails like a failing hook', async () => {
    const before = sim.node.hookLog.length;
    await vm.start();
    await vm.stop();
    expect(sim.node.hookLog.length).toBe(before);
    const h = hook('not-executable.sh');
    fs.chmodSync(h.path, 0o644);
    await expect(vm.start()).rejects.toMatchObject({ code: 'CBT_SIM_HOOK_ABORT', details: { exitCode: 126 } });
  });

  it('refuses operations that do not fit the state', async () => {
    await expect(vm.stop()).rejects.toMatchObject({ code: SimStateError.code, details: { vmid: 400, op: 'stop' } });
    await expect(vm.write('scsi9', { pattern: 1, offset: 0, length: 1 })).rejects.toMatchObject({ code: SimStateError.code });
    await vm.start();
    await expect(vm.start()).rejects.toMatchObject({ code: SimStateError.code, details: { op: 'start' } });
  });

  // How fast (the sub-second acceptance target) is bench/sim-qemu-start.ts, against a bare QEMU launch
  // in the same run: a wall-clock bound here failed on a loaded CI machine (best of three 1.8 s).
  it('starts and stops QEMU again and again: a new QEMU each time, answering QMP, gone after the stop', async () => {
    const pids: number[] = [];
    for (let i = 0; i < 3; i++) {
      await vm.start();
      const pid = vm.pid()!;
      pids.push(pid);
      expect(await vm.qmp((q) => q.execute('query-status'))).toMatchObject({ status: 'running' });
      await vm.stop();
      expect(isAlive(pid)).toBe(false);
    }
    expect(new Set(pids).size).toBe(3);
  });
});
