/**
 * Test helper: one qemu-system-x86_64 with the simulator's command line (daemon/sim/qemu-command.ts:
 * TCG, no guest OS, the disk behind its guest device) but kept in the foreground, because HMP
 * `qemu-io` prints its results on QEMU's stdout, which a daemonized QEMU sends to /dev/null. Reads
 * through the guest device therefore come back here, parsed from `read -v`'s hex dump.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { qemuArgs, type DiskLayout, type QemuDiskArg } from '../../../daemon/sim/qemu-command';
import { QmpClient } from '../../../daemon/qmp/qmp-client';
import { hmp } from '../../../daemon/qmp/hmp';

export class ForegroundQemu {
  private stdout = '';
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly qmp: QmpClient,
  ) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      this.stdout += d;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async start(dir: string, disk: QemuDiskArg, layout: DiskLayout): Promise<ForegroundQemu> {
    const qmpPath = path.join(dir, `qemu-${layout}.qmp`);
    const args = qemuArgs({ vmid: 100, name: `serve-${layout}`, qmpPath, pidPath: path.join(dir, `qemu-${layout}.pid`), disks: [disk], paused: false, layout, directIo: false });
    return ForegroundQemu.fromArgs(args, qmpPath);
  }

  /**
   * Any simulator command line (`-daemonize` dropped), connected on `qmpPath`; with `extraMonitor`
   * a second QMP monitor is added there for this helper, so the code under test keeps the VM's own.
   */
  static async fromArgs(commandLine: string[], qmpPath: string, extraMonitor = false): Promise<ForegroundQemu> {
    const args = commandLine.filter((a) => a !== '-daemonize');
    if (extraMonitor) args.push('-chardev', `socket,id=qmp-test,path=${qmpPath},server=on,wait=off`, '-mon', 'chardev=qmp-test,mode=control');
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += String(d)));
    try {
      // Not daemonized, so nothing says when the QMP socket exists: wait for it (or for QEMU's exit).
      for (let i = 0; !fs.existsSync(qmpPath); i++) {
        if (child.exitCode !== null || i >= 600) throw new Error(child.exitCode !== null ? 'QEMU exited' : 'no QMP socket after 60 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      const qmp = await QmpClient.connect(qmpPath, { connectAttempts: 12, retryBaseDelayMs: 50, maxRetryDelayMs: 1_000 });
      return new ForegroundQemu(child, qmp);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`QEMU did not come up (exit ${child.exitCode}, signal ${child.signalCode}): ${(err as Error).message}; stderr: ${stderr}`);
    }
  }

  /**
   * Runs a qemu-io command on the guest device and returns what it printed, up to its summary line
   * (`read|wrote N/N bytes at offset X`) or an error line (hex-dump lines carry a `:` after their
   * offset, so their ASCII column cannot be taken for one).
   */
  async qemuIo(device: string, cmd: string): Promise<string> {
    const done = /^(?:read|wrote) \d+\/\d+ bytes at offset \d+$|^[^:\n]*(?:failed|error)[^\n]*$/m;
    const from = this.stdout.length;
    const monitor = await hmp(this.qmp, `qemu-io -d ${device} "${cmd}"`);
    if (monitor.trim() !== '') throw new Error(`qemu-io ${cmd}: ${monitor}`);
    for (;;) {
      const out = this.stdout.slice(from);
      const m = done.exec(out);
      if (m) return out.slice(0, m.index + m[0].length);
      if (this.child.exitCode !== null) throw new Error(`QEMU exited during qemu-io ${cmd}: ${out}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** `read -v OFFSET LENGTH` through the guest device, hex dump turned back into bytes. */
  async read(device: string, offset: number, length: number): Promise<Buffer> {
    const out = await this.qemuIo(device, `read -v ${offset} ${length}`);
    if (!out.includes(`read ${length}/${length} bytes at offset ${offset}`)) throw new Error(`read ${offset}+${length}: ${out.slice(-300)}`);
    const buf = Buffer.alloc(length);
    let seen = 0;
    for (const line of out.split('\n')) {
      const m = /^([0-9a-f]{8}):((?: {1,2}[0-9a-f]{2}){1,16})/.exec(line);
      if (!m) continue;
      const at = parseInt(m[1], 16) - offset;
      const bytes = m[2].trim().split(/\s+/).map((h) => parseInt(h, 16));
      Buffer.from(bytes).copy(buf, at);
      seen += bytes.length;
    }
    if (seen !== length) throw new Error(`read ${offset}+${length}: dump had ${seen} bytes: ${out.slice(-300)}`);
    return buf;
  }

  async write(device: string, pattern: number, offset: number, length: number): Promise<void> {
    const out = await this.qemuIo(device, `write -P 0x${pattern.toString(16)} ${offset} ${length}`);
    if (!out.includes(`wrote ${length}/${length} bytes at offset ${offset}`)) throw new Error(`write: ${out}`);
  }

  /** Quits QEMU over QMP and waits for the process; SIGKILL if it lingers. */
  async quit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try {
      await this.qmp.execute('quit');
    } catch {
      // the connection may drop before the reply
    }
    await this.qmp.close().catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
