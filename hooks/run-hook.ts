/**
 * What both hooks do, in order: read the config, parse Proxmox's arguments, deliver the event
 * (daemon, else spool; bounded by hookTimeoutMs), then run the chained script pve-cbt replaced and
 * return its exit status. pve-cbt's own troubles never change the exit status (fail-open) unless
 * `strictHooks` is set; they are reported as one line on stderr, which Proxmox shows in the task log.
 *
 * Start-up cost matters (a hook runs on every VM start): this module graph loads node-ipc and Node
 * built-ins only, never ajv, winston or better-sqlite3.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { LifecycleEvent } from '../shared/ipc/messages';
import { parseGuestArgs, parseVzdumpArgs, type ParsedArgs } from './hook-args';
import { readHookChain, runChained, type ChainTarget } from './hook-chain';
import { HOOK_DEFAULTS, readHookConfig, type HookConfig } from './hook-config';
import { deliverEvent } from './deliver-event';
import { readQemuPid } from './qemu-pid';

export type HookKind = 'guest' | 'vzdump';

export interface RunHookOptions {
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  /** Config path baked into the installed hook (vzdump runs hooks with an emptied environment). */
  configPath?: string;
  /** Where the one diagnostic line goes (stderr in production). */
  report?: (line: string) => void;
}

/** Exit status when strictHooks is on and the daemon did not acknowledge. */
export const STRICT_FAILURE_STATUS = 1;

export async function runHook(kind: HookKind, opts: RunHookOptions): Promise<number> {
  const problems: string[] = [];
  let config: HookConfig = HOOK_DEFAULTS;
  let parsed: ParsedArgs = { ok: false, error: 'not parsed' };
  let strictFailure = false;
  try {
    const c = readHookConfig(opts.env, opts.configPath);
    config = c.config;
    problems.push(...c.warnings);
    parsed = kind === 'guest' ? parseGuestArgs(opts.argv) : parseVzdumpArgs(opts.argv);
    if (!parsed.ok) {
      problems.push(`${parsed.error}; no event sent`);
    } else {
      const delivery = await deliverEvent(buildEvent(kind, parsed, opts.env, config), config);
      if (delivery.outcome === 'spooled') problems.push(`daemon did not acknowledge (${delivery.reason}); event spooled to ${delivery.spool}`);
      if (delivery.outcome === 'lost') problems.push(`event lost: ${delivery.reason}`);
      strictFailure = delivery.outcome !== 'acked' && config.strictHooks;
    }
  } catch (err) {
    problems.push(`internal error: ${err instanceof Error ? err.message : String(err)}`);
  }

  let target: ChainTarget | undefined;
  try {
    const chain = readHookChain(config.stateDir);
    target = kind === 'vzdump' ? chain.vzdump : parsed.vmid === undefined ? undefined : chain.guests[String(parsed.vmid)];
  } catch (err) {
    problems.push(`chain file unreadable, chained hook not run: ${(err as Error).message}`);
  }
  const report = opts.report ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (problems.length > 0) report(`pve-cbt ${kind} hook ${opts.argv.join(' ').slice(0, 80)}: ${problems.join('; ')}`);

  let status = 0;
  if (target && isSelf(target.path)) {
    report(`pve-cbt ${kind} hook: chain target ${target.path} is this hook itself; not run`);
    target = undefined;
  }
  if (target) {
    const r = runChained(target, opts.argv, opts.env);
    if (r.error) report(`pve-cbt ${kind} hook: ${r.error}`);
    status = r.status;
  }
  return status === 0 && strictFailure ? STRICT_FAILURE_STATUS : status;
}

/** A chain pointing back at pve-cbt's own hook would make every run start itself again. */
function isSelf(targetPath: string): boolean {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(targetPath) === fs.realpathSync(process.argv[1]);
  } catch {
    return false;
  }
}

function buildEvent(kind: HookKind, args: ParsedArgs & { ok: true }, env: NodeJS.ProcessEnv, config: HookConfig): LifecycleEvent {
  const ev: LifecycleEvent = {
    phase: args.phase,
    source: kind === 'guest' ? 'hookscript' : 'vzdump',
    time: new Date().toISOString(),
    seq: randomUUID(),
  };
  if (args.vmid !== undefined) {
    ev.vmid = args.vmid;
    const pid = readQemuPid(config.qemuServerRunDir, args.vmid);
    if (pid !== undefined) ev.qemuPid = pid;
  }
  if (args.mode !== undefined) ev.mode = args.mode;
  if (kind === 'guest' && args.phase === 'pre-start' && env.PVE_MIGRATED_FROM) ev.migratedFrom = env.PVE_MIGRATED_FROM;
  return ev;
}

/** Entry point of an installed hook: runs with the process's arguments and exits with the status. */
export function runHookProcess(kind: HookKind, opts: { configPath?: string } = {}): void {
  runHook(kind, { argv: process.argv.slice(2), env: process.env, configPath: opts.configPath }).then(
    (status) => process.exit(status),
    (err: unknown) => {
      process.stderr.write(`pve-cbt ${kind} hook: internal error: ${String(err)}\n`);
      process.exit(0);
    },
  );
}
