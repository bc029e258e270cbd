/**
 * The external programs pve-cbt runs, named in one place and found on PATH at the moment they run
 * (so a QEMU unpacked beside the system's and put first on PATH is the one used, by every caller).
 *
 * - `qemu-img`, `qemu-nbd`, `qemu-io`: QEMU's tools; the version on PATH must match the QEMU that
 *   runs the VMs, so there is no fixed /usr/bin default anywhere.
 * - `qemu-system-x86_64`: the VM a live restore starts on the served backup (daemon/restore/).
 * - `sync`: coreutils, for `sync --file-system` of the repository.
 * - `systemd-notify`: systemd's, for sd_notify READY/RELOADING/STOPPING (service/sd-notify.ts).
 * - `flock`: util-linux, to hold Proxmox's per-VM lock (daemon/pve/pve-lock.ts).
 * - `rbd`: Ceph's RBD CLI (ceph-common), for RBD snapshots and diffs (ceph-command.ts).
 * - `pvesm`: Proxmox's storage manager. Its path is the config key `pvesmPath` (default
 *   /usr/sbin/pvesm, where Proxmox installs it): hooks and daemons may run with a PATH without sbin.
 * - `sendmail`: the MTA's mail interface for notifications; its path is the config key
 *   `notify.sendmail` (default /usr/sbin/sendmail, Postfix on Proxmox VE), for the same reason.
 *
 * `programPath` returns the first executable regular file of that name in PATH's absolute
 * entries; without PATH it searches systemd's default. When none is found it returns the bare name,
 * so spawning fails with the usual ENOENT naming the program, at the place that needs it.
 * An explicit path in an option (tests, `qemuImg` in a config object) always wins over this.
 */
import fs from 'node:fs';
import path from 'node:path';

export const EXTERNAL_PROGRAMS = ['qemu-img', 'qemu-nbd', 'qemu-io', 'sync', 'systemd-notify', 'flock', 'qemu-system-x86_64', 'rbd'] as const;
export type ExternalProgram = (typeof EXTERNAL_PROGRAMS)[number];

/** systemd's PATH for services, used when the environment has none. */
export const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of `name` on PATH (relative PATH entries are skipped), else `name` itself. */
export function programPath(name: ExternalProgram, env: NodeJS.ProcessEnv = process.env): string {
  const dirs = (env.PATH || FALLBACK_PATH).split(':');
  for (const dir of dirs) {
    if (!path.isAbsolute(dir)) continue;
    const file = path.join(dir, name);
    if (isExecutableFile(file)) return file;
  }
  return name;
}
