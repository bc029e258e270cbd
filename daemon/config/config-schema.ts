/**
 * The one schema of `/etc/pve-cbt/config.json` (JSON Schema draft-07, checked by ajv 8 with
 * `useDefaults`), and the `CbtConfig` type it yields. Every object rejects unknown keys, every key
 * has a default except a job's `id`, `vms` and `schedule`, so an absent file is a valid config.
 * `examples` and `description` feed the hints of CBT_CONFIG_INVALID; checks a schema cannot express
 * (calendar syntax, the repository's parent directory, unique job ids) live in `load-config.ts`.
 * When adding a key: add it to the schema, to `CbtConfig`, and (if hooks read it) to shared defaults.
 */
import { DEFAULTS, DEFAULT_CHUNK_SIZE, NOTIFY_DEFAULTS } from '../../shared/config/defaults';
import { IPC_LIMIT_DEFAULTS } from '../ipc/ipc-limits';
import { COMPRESSIONS, type Compression } from '../repository/compressions';

export const LOG_LEVELS = ['error', 'warn', 'info', 'verbose', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const NOTIFY_ON = ['failure', 'always'] as const;
export type NotifyOn = (typeof NOTIFY_ON)[number];

export { COMPRESSIONS, type Compression };

/** Which VMs a job backs up: explicit ids, every VM on the node, or a PVE pool / tag. */
export type VmSelector = readonly number[] | 'all' | { readonly pool: string } | { readonly tag: string };

/** Retention in the style of PBS/vzdump `prune-backups`; all absent means keep everything. */
export interface Retention {
  readonly keepLast?: number;
  readonly keepHourly?: number;
  readonly keepDaily?: number;
  readonly keepWeekly?: number;
  readonly keepMonthly?: number;
  readonly keepYearly?: number;
}

export interface JobConfig {
  readonly id: string;
  readonly vms: VmSelector;
  /** A Proxmox calendar event, see daemon/schedule/calendar-event.ts. */
  readonly schedule: string;
  readonly retention: Retention;
  readonly enabled: boolean;
}

export interface CbtConfig {
  readonly qemuServerConfigDir: string;
  readonly qemuServerRunDir: string;
  /** Where qemu-server keeps its per-VM flock files (`lock-VMID.conf`). */
  readonly qemuServerLockDir: string;
  readonly pvesmPath: string;
  readonly qmPath: string;
  /** A directory, or `s3://BUCKET/PREFIX` with the endpoint and keys in `s3`. */
  readonly repository: string;
  /** Endpoint and keys of an `s3://` repository (daemon/repository/s3-storage.ts). */
  readonly s3?: S3RepositoryConfig;
  readonly stateDir: string;
  readonly socketPath: string;
  readonly logDir: string;
  readonly logLevel: LogLevel;
  /** winston-daily-rotate-file `maxSize`, e.g. '20m'. */
  readonly logMaxSize: string;
  /** winston-daily-rotate-file `maxFiles`: a count ('10') or an age ('14d'). */
  readonly logMaxFiles: string;
  /**
   * Bytes; a power of two and a multiple of 65536. Unset: the repository's own (its marker's
   * chunkSize: 64 KiB in format 2; format 1 keeps 256 KiB, one file per chunk).
   */
  readonly chunkSize?: number;
  readonly compression: Compression;
  /** How many backups run at once across all VMs. */
  readonly concurrency: number;
  readonly hookTimeoutMs: number;
  /** When true a hook that cannot reach the daemon fails the VM operation instead of spooling. */
  readonly strictHooks: boolean;
  /** The control socket closes a connection that sends no request for this long. */
  readonly ipcIdleTimeoutMs: number;
  readonly jobs: readonly JobConfig[];
  readonly verify: VerifyConfig;
  readonly notify: NotifyConfig;
  readonly encryption: EncryptionConfig;
}

/**
 * Encryption of the repository (key-file.ts): with `keyFile` the daemon creates the repository
 * encrypted under that key, and every process opens it with the key. Chosen at creation: a key
 * for an existing unencrypted repository, or none for an encrypted one, is refused at start.
 */
export interface EncryptionConfig {
  /** A key file made by `pve-cbt key create`; absent: the repository is not encrypted. */
  readonly keyFile?: string;
  /** A file holding the key file's passphrase (kdf scrypt); else PVE_CBT_ENCRYPTION_PASSWORD. */
  readonly passphraseFile?: string;
}

/**
 * Who hears about backups, verifies and scheduled jobs (daemon/notify/): mail through sendmail
 * (to root by default, as Proxmox does) and an optional webhook that gets the JSON summary.
 */
export interface NotifyConfig {
  /** Recipients; a string is one recipient. An empty list sends no mail. */
  readonly mailto: string | readonly string[];
  /** 'failure' (default): only failed runs; 'always': every run. */
  readonly on: NotifyOn;
  /** The MTA's sendmail interface (Postfix on Proxmox VE). */
  readonly sendmail: string;
  readonly webhook?: WebhookConfig;
}

export interface WebhookConfig {
  /** http:// or https://; gets an HTTP POST of the JSON summary. */
  readonly url: string;
  /** Extra request headers, e.g. an Authorization token. */
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}

/** Where an `s3://` repository lives: any S3-compatible endpoint (Ceph radosgw, MinIO, AWS). */
export interface S3RepositoryConfig {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** No progress on one S3 request for this long fails it (CBT_S3_TIMEOUT). */
  readonly timeoutMs: number;
  /** The per-node cache of pack indexes and manifests; default `<stateDir>/s3-cache`. */
  readonly cacheDir?: string;
}

/** The verify job: re-reads the whole repository; monthly by default, as PBS recommends. */
export interface VerifyConfig {
  readonly schedule: string;
  readonly enabled: boolean;
}

/** 64 KiB … 16 MiB: powers of two, hence multiples of 65536. */
export const CHUNK_SIZES = Array.from({ length: 9 }, (_, i) => 65536 * 2 ** i);

const absolutePath = (def: string, description: string) => ({
  type: 'string',
  pattern: '^/',
  default: def,
  description,
  examples: [def],
});

const keep = (what: string) => ({ type: 'integer', minimum: 1, description: `how many ${what} backups to keep`, examples: [7] });

const jobSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'vms', 'schedule'],
  properties: {
    id: {
      type: 'string',
      pattern: '^[a-z0-9][a-z0-9_-]{0,63}$',
      description: 'a job id: lower-case letters, digits, - and _',
      examples: ['nightly'],
    },
    vms: {
      description: "a list of VM ids, 'all', { \"pool\": NAME } or { \"tag\": NAME }",
      examples: [[100, 101], 'all', { pool: 'production' }, { tag: 'backup' }],
      anyOf: [
        { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'integer', minimum: 100, maximum: 999999999 } },
        { const: 'all' },
        { type: 'object', additionalProperties: false, required: ['pool'], properties: { pool: { type: 'string', minLength: 1 } } },
        { type: 'object', additionalProperties: false, required: ['tag'], properties: { tag: { type: 'string', minLength: 1 } } },
      ],
    },
    schedule: { type: 'string', description: 'a Proxmox calendar event', examples: ['daily 02:00', 'mon..fri 22:30', '*/4:00'] },
    retention: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'prune options; none set keeps every backup',
      examples: [{ keepDaily: 7, keepWeekly: 4 }],
      properties: {
        keepLast: keep('latest'),
        keepHourly: keep('hourly'),
        keepDaily: keep('daily'),
        keepWeekly: keep('weekly'),
        keepMonthly: keep('monthly'),
        keepYearly: keep('yearly'),
      },
    },
    enabled: { type: 'boolean', default: true, examples: [true] },
  },
} as const;

export const CONFIG_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  additionalProperties: false,
  properties: {
    qemuServerConfigDir: absolutePath(DEFAULTS.qemuServerConfigDir, 'where qemu-server keeps VM configs'),
    qemuServerRunDir: absolutePath(DEFAULTS.qemuServerRunDir, 'where qemu-server keeps QMP sockets and pid files'),
    qemuServerLockDir: absolutePath(DEFAULTS.qemuServerLockDir, "where qemu-server keeps its per-VM lock files (lock-VMID.conf), which pve-cbt's offline work also locks"),
    pvesmPath: absolutePath(DEFAULTS.pvesmPath, 'the pvesm binary'),
    qmPath: absolutePath(DEFAULTS.qmPath, 'the qm binary'),
    repository: {
      type: 'string',
      pattern: '^(/|s3://)',
      default: DEFAULTS.repository,
      description: 'the backup repository: a directory (its parent must exist) or s3://BUCKET/PREFIX (endpoint and keys in s3)',
      examples: [DEFAULTS.repository, 's3://pve-backups/cluster-a'],
    },
    s3: {
      type: 'object',
      additionalProperties: false,
      required: ['endpoint', 'accessKey', 'secretKey'],
      description: 'the S3 endpoint and keys of an s3:// repository',
      examples: [{ endpoint: 'http://10.0.0.5:7480', accessKey: 'ACCESS', secretKey: 'SECRET' }],
      properties: {
        endpoint: { type: 'string', pattern: '^https?://[^\\s/]+/?$', description: 'http(s)://host[:port] of the S3 endpoint', examples: ['http://10.0.0.5:7480'] },
        accessKey: { type: 'string', minLength: 1, examples: ['ACCESS'] },
        secretKey: { type: 'string', minLength: 1, examples: ['SECRET'] },
        region: { type: 'string', minLength: 1, default: 'us-east-1', description: 'the SigV4 region (radosgw accepts any)', examples: ['us-east-1'] },
        timeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 600_000,
          default: 30_000,
          description: 'an S3 request that makes no progress for this many ms fails',
          examples: [30_000],
        },
        cacheDir: {
          type: 'string',
          pattern: '^/',
          description: 'the per-node cache of pack indexes and manifests (default: s3-cache in stateDir)',
          examples: ['/var/lib/pve-cbt/s3-cache'],
        },
      },
    },
    stateDir: absolutePath(DEFAULTS.stateDir, 'daemon state: catalog, ledger, spool'),
    socketPath: absolutePath(DEFAULTS.socketPath, 'the daemon IPC socket'),
    logDir: absolutePath(DEFAULTS.logDir, 'JSON-lines log files'),
    logLevel: { type: 'string', enum: LOG_LEVELS, default: DEFAULTS.logLevel, examples: ['info'] },
    logMaxSize: {
      type: 'string',
      pattern: '^[0-9]+[kmg]?$',
      default: DEFAULTS.logMaxSize,
      description: 'rotate a log file at this size',
      examples: ['20m'],
    },
    logMaxFiles: {
      type: 'string',
      pattern: '^[0-9]+d?$',
      default: DEFAULTS.logMaxFiles,
      description: "how many log files ('10') or days ('14d') to keep",
      examples: ['14d'],
    },
    chunkSize: {
      type: 'integer',
      enum: CHUNK_SIZES,
      description: "chunk size of new fulls in bytes: a power of two, a multiple of 65536; unset: the repository's (64 KiB in format 2, 256 KiB in format 1)",
      examples: [DEFAULT_CHUNK_SIZE],
    },
    compression: { type: 'string', enum: COMPRESSIONS, default: DEFAULTS.compression, examples: ['auto'] },
    concurrency: {
      type: 'integer',
      minimum: 1,
      maximum: 64,
      default: DEFAULTS.concurrency,
      description: 'backups running at once',
      examples: [1],
    },
    hookTimeoutMs: {
      type: 'integer',
      minimum: 50,
      maximum: 2000,
      default: DEFAULTS.hookTimeoutMs,
      description: 'bound on a whole hook run in ms, Node start-up included (a VM start waits at most this long)',
      examples: [DEFAULTS.hookTimeoutMs],
    },
    strictHooks: { type: 'boolean', default: DEFAULTS.strictHooks, examples: [false] },
    ipcIdleTimeoutMs: {
      type: 'integer',
      minimum: 100,
      maximum: 3_600_000,
      default: IPC_LIMIT_DEFAULTS.idleTimeoutMs,
      description: 'the control socket closes a connection without a request in flight after this many ms without a new one',
      examples: [IPC_LIMIT_DEFAULTS.idleTimeoutMs],
    },
    jobs: { type: 'array', items: jobSchema, default: [], examples: [[{ id: 'nightly', vms: 'all', schedule: 'daily 02:00' }]] },
    encryption: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'encryption of the repository, chosen when it is created (pve-cbt key create makes the key file)',
      examples: [{ keyFile: '/etc/pve-cbt/repository.key' }],
      properties: {
        keyFile: { type: 'string', pattern: '^/', description: 'the key file (an absolute path)', examples: ['/etc/pve-cbt/repository.key'] },
        passphraseFile: { type: 'string', pattern: '^/', description: "a file holding the key file's passphrase (absolute path)", examples: ['/etc/pve-cbt/repository.pass'] },
      },
    },
    verify: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'the verify job, which re-reads every backup',
      properties: {
        schedule: { type: 'string', default: 'monthly', description: 'a Proxmox calendar event', examples: ['monthly', 'sat 03:00'] },
        enabled: { type: 'boolean', default: true, examples: [true] },
      },
    },
    notify: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'who is told about failed (or all) backups, verifies and scheduled jobs',
      properties: {
        mailto: {
          description: 'mail recipients: an address, or a list ([] sends no mail)',
          default: NOTIFY_DEFAULTS.mailto,
          examples: ['root', ['root', 'admin@example.com']],
          anyOf: [
            { type: 'string', pattern: '^[^\\s<>,]+$' },
            { type: 'array', uniqueItems: true, items: { type: 'string', pattern: '^[^\\s<>,]+$' } },
          ],
        },
        on: { type: 'string', enum: NOTIFY_ON, default: NOTIFY_DEFAULTS.on, description: "'failure': only failed runs; 'always': every run", examples: ['failure'] },
        sendmail: absolutePath(NOTIFY_DEFAULTS.sendmail, 'the sendmail program mail goes through'),
        webhook: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          description: 'an HTTP endpoint that gets a POST of the JSON summary',
          examples: [{ url: 'https://hooks.example.com/pve-cbt' }],
          properties: {
            url: { type: 'string', pattern: '^https?://[^\\s]+$', description: 'an http:// or https:// URL', examples: ['https://hooks.example.com/pve-cbt'] },
            headers: {
              type: 'object',
              default: {},
              additionalProperties: { type: 'string' },
              description: 'extra request headers',
              examples: [{ Authorization: 'Bearer TOKEN' }],
            },
            timeoutMs: { type: 'integer', minimum: 100, maximum: 120_000, default: 10_000, description: 'give up on the request after this many ms', examples: [10_000] },
          },
        },
      },
    },
  },
} as const;
