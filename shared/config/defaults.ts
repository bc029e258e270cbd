/**
 * Embedded defaults shared by the hooks (which must start fast and so read config without a schema
 * validator) and the daemon's validated config. Paths follow Proxmox VE's own layout.
 */
export const DEFAULT_CONFIG_PATH = '/etc/pve-cbt/config.json';
export const CONFIG_ENV = 'PVE_CBT_CONFIG';

export const DEFAULTS = Object.freeze({
  qemuServerConfigDir: '/etc/pve/qemu-server',
  qemuServerRunDir: '/var/run/qemu-server',
  qemuServerLockDir: '/var/lock/qemu-server',
  pvesmPath: '/usr/sbin/pvesm',
  repository: '/var/lib/pve-cbt/repository',
  stateDir: '/var/lib/pve-cbt',
  socketPath: '/run/pve-cbt/pve-cbt.sock',
  logDir: '/var/log/pve-cbt',
  qmPath: '/usr/sbin/qm',
  logLevel: 'info',
  logMaxSize: '20m',
  logMaxFiles: '14d',
  compression: 'auto',
  concurrency: 1,
  // A hook may delay a VM start by at most this (Node start-up included); the hooks clamp to 50..2000.
  hookTimeoutMs: 1500,
  strictHooks: false,
});

/** `notify` in the config: as Proxmox does by default, mail to root through the local MTA, on failures. */
export const NOTIFY_DEFAULTS = Object.freeze({
  mailto: 'root',
  on: 'failure',
  sendmail: '/usr/sbin/sendmail',
});

/**
 * Repository chunk size in bytes: a power of two and a multiple of 64 KiB (QEMU's default dirty
 * bitmap granularity), so a dirty cluster never straddles two chunks. 64 KiB = the bitmap granule,
 * so an incremental stores what changed (issue 15): in a format-2 repository chunks live in pack
 * files, and a chunk no longer costs a file creation (the reason format 1 measured 256 KiB best,
 * daemon/repository/COMPRESSION.md). Incrementals and full-compares keep their base's chunk size.
 */
export const DEFAULT_CHUNK_SIZE = 65536;

/** pve-cbt only ever touches QEMU dirty bitmaps whose name starts with this prefix. */
export const BITMAP_PREFIX = 'pve-cbt-';
