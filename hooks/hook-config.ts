/**
 * The hooks' view of /etc/pve-cbt/config.json (or $PVE_CBT_CONFIG, or the path baked into the
 * installed hook because vzdump empties the environment). Read with plain JSON.parse, not the
 * daemon's schema validator, so that a hook starts fast; only the keys a hook needs are taken and a
 * missing file means defaults. A malformed file or value is reported (one warning) and replaced by
 * its default: a hook never fails because of its configuration. A config that is not a trusted
 * regular file (trusted-file.ts: root-owned, nobody else can write it or its directories) is not
 * read at all, never blocks, and means defaults too.
 */
import { isCbtError } from '../shared/errors/cbt-error';
import { CONFIG_ENV, DEFAULTS, DEFAULT_CONFIG_PATH } from '../shared/config/defaults';
import { readTrustedFile } from './trusted-file';

/** Far more than any real config; a bigger file is not read. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface HookConfig {
  socketPath: string;
  stateDir: string;
  qemuServerRunDir: string;
  /** Bound on the hook's whole run up to the acknowledgement, Node start-up included. */
  hookTimeoutMs: number;
  /** Opt-in: exit non-zero when the daemon did not acknowledge (a pre-start then aborts the VM start). */
  strictHooks: boolean;
}

/** Even a configured timeout stays within this: a VM start must never wait long for pve-cbt. */
export const HOOK_TIMEOUT_RANGE_MS = Object.freeze({ min: 50, max: 2000 });

export const HOOK_DEFAULTS: Readonly<HookConfig> = Object.freeze({
  socketPath: DEFAULTS.socketPath,
  stateDir: DEFAULTS.stateDir,
  qemuServerRunDir: DEFAULTS.qemuServerRunDir,
  hookTimeoutMs: clampTimeout(DEFAULTS.hookTimeoutMs),
  strictHooks: DEFAULTS.strictHooks,
});

function clampTimeout(ms: number): number {
  return Math.min(HOOK_TIMEOUT_RANGE_MS.max, Math.max(HOOK_TIMEOUT_RANGE_MS.min, ms));
}

export function hookConfigPath(env: NodeJS.ProcessEnv, bakedConfigPath?: string): string {
  return env[CONFIG_ENV] || bakedConfigPath || DEFAULT_CONFIG_PATH;
}

export async function readHookConfig(
  env: NodeJS.ProcessEnv,
  bakedConfigPath?: string,
): Promise<{ config: HookConfig; configPath: string; warnings: string[] }> {
  const configPath = hookConfigPath(env, bakedConfigPath);
  const config: HookConfig = { ...HOOK_DEFAULTS };
  const warnings: string[] = [];
  let raw: unknown;
  try {
    const text = await readTrustedFile(configPath, { follow: true, maxBytes: MAX_CONFIG_BYTES });
    if (text === undefined) return { config, configPath, warnings };
    raw = JSON.parse(text);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = isCbtError(err) ? `${err.code}: ${err.message}` : (e.code ?? e.message);
    warnings.push(`config ${configPath} unreadable (${why}), using defaults`);
    return { config, configPath, warnings };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    warnings.push(`config ${configPath} is not a JSON object, using defaults`);
    return { config, configPath, warnings };
  }
  const obj = raw as Record<string, unknown>;
  for (const key of ['socketPath', 'stateDir', 'qemuServerRunDir'] as const) {
    if (obj[key] === undefined) continue;
    if (typeof obj[key] === 'string' && (obj[key] as string).startsWith('/')) config[key] = obj[key] as string;
    else warnings.push(`config ${key} must be an absolute path, using ${config[key]}`);
  }
  if (obj.hookTimeoutMs !== undefined) {
    const t = obj.hookTimeoutMs;
    if (typeof t === 'number' && Number.isFinite(t)) config.hookTimeoutMs = clampTimeout(t);
    else warnings.push(`config hookTimeoutMs must be a number, using ${config.hookTimeoutMs}`);
  }
  if (obj.strictHooks !== undefined) {
    if (typeof obj.strictHooks === 'boolean') config.strictHooks = obj.strictHooks;
    else warnings.push('config strictHooks must be true or false, using false');
  }
  return { config, configPath, warnings };
}
