/**
 * What both hooks do, in order: read the config, parse Proxmox's arguments, read the chain file,
 * deliver the event (daemon, else spool; the daemon wait bounded by hookTimeoutMs), then run the
 * chained script pve-cbt replaced and return its exit status. pve-cbt's own troubles never change
 * the exit status (fail-open) unless `strictHooks` is set; they are reported as one line on stderr,
 * which Proxmox shows in the task log.
 *
 * Time bound: pve-cbt's own part (everything before the chained script) ends by hookTimeoutMs plus
 * WATCHDOG_GRACE_MS after the process started, whatever hangs: every file is read without blocking
 * (trusted-file.ts) and a watchdog abandons whatever is still running then. As for the daemon wait
 * (deliver-event.ts), a start-up so slow that it ate the budget still leaves MIN_WAIT_MS plus the
 * grace to pve-cbt's part: a loaded host then waits a little longer instead of losing every event. The chained script is
 * the admin's own and runs as long as it runs, as it did before pve-cbt.
 *
 * Trust: the config, hook-chain.json, the spool and the chained script are used only when nobody but
 * root can have written them (trusted-file.ts); otherwise they are ignored and reported.
 *
 * Start-up cost matters (a hook runs on every VM start): this module graph loads node-ipc and Node
 * built-ins only, never ajv, winston or better-sqlite3.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { isCbtError } from '../shared/errors/cbt-error';
import type { LifecycleEvent } from '../shared/ipc/messages';
import { parseGuestArgs, parseVzdumpArgs, type ParsedArgs } from './hook-args';
import { checkChained, readTrustedHookChain, runChained, type ChainTarget } from './hook-chain';
import { HOOK_DEFAULTS, HOOK_TIMEOUT_RANGE_MS, readHookConfig, type HookConfig } from './hook-config';
import { MIN_WAIT_MS, deliverEvent, ipcWaitMs } from './deliver-event';
import { removeBitmapsWithoutDaemon } from './park-fallback';
import { readQemuPid } from './qemu-pid';
import { Watchdog } from './watchdog';

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

/** Time left after the daemon wait for writing the spool (an fsync) before the watchdog gives up. */
export const WATCHDOG_GRACE_MS = 500;

export async function runHook(kind: HookKind, opts: RunHookOptions): Promise<number> {
  const problems: string[] = [];
  const state: { config: HookConfig; parsed: ParsedArgs; target?: ChainTarget; acked: boolean; done: boolean } = {
    config: HOOK_DEFAULTS,
    parsed: { ok: false, error: 'not parsed' },
    acked: false,
    done: false,
  };
  // Until the config says otherwise, the longest bound a config may set.
  const startedMs = process.uptime() * 1000;
  const watchdog = new Watchdog(Math.max(HOOK_TIMEOUT_RANGE_MS.max, startedMs + MIN_WAIT_MS) + WATCHDOG_GRACE_MS);
  const own = ownPart(kind, opts, state, problems, watchdog, startedMs)
    .catch((err: unknown) => {
      problems.push(`internal error: ${err instanceof Error ? err.message : String(err)}`);
    })
    .then(() => {
      state.done = true;
    });
  await Promise.race([own, watchdog.expired]);
  watchdog.stop();
  // A snapshot: the abandoned part may still add to `problems` later, unreported.
  const reported = [...problems];
  if (!state.done) reported.push(`gave up after ${Math.round(process.uptime() * 1000)} ms (watchdog, bound ${Math.round(watchdog.deadline)} ms, hook code started at ${Math.round(startedMs)} ms): something blocked; event may not be recorded`);
  const strictFailure = !state.acked && state.parsed.ok && state.config.strictHooks;

  const report = opts.report ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (reported.length > 0) report(`pve-cbt ${kind} hook ${opts.argv.join(' ').slice(0, 80)}: ${reported.join('; ')}`);

  let status = 0;
  let target = state.target;
  if (target && isSelf(target.path)) {
    report(`pve-cbt ${kind} hook: chain target ${target.path} is this hook itself; not run`);
    target = undefined;
  }
  if (target) {
    const check = await checkChained(target);
    if ('run' in check) {
      const r = runChained(target, check.run, opts.argv, opts.env);
      if (r.error) report(`pve-cbt ${kind} hook: ${r.error}`);
      status = r.status;
    } else {
      report(`pve-cbt ${kind} hook: ${check.error}`);
      status = check.status;
    }
  }
  return status === 0 && strictFailure ? STRICT_FAILURE_STATUS : status;
}

/** pve-cbt's own part of the run, bounded by the watchdog: config, arguments, chain file, delivery. */
async function ownPart(
  kind: HookKind,
  opts: RunHookOptions,
  state: { config: HookConfig; parsed: ParsedArgs; target?: ChainTarget; acked: boolean; done: boolean },
  problems: string[],
  watchdog: Watchdog,
  startedMs: number,
): Promise<void> {
  const c = await readHookConfig(opts.env, opts.configPath);
  state.config = c.config;
  problems.push(...c.warnings);
  const budget = c.config.hookTimeoutMs;
  watchdog.setDeadline(Math.max(budget, startedMs + Math.min(MIN_WAIT_MS, budget)) + WATCHDOG_GRACE_MS);
  const parsed = kind === 'guest' ? parseGuestArgs(opts.argv) : parseVzdumpArgs(opts.argv);
  state.parsed = parsed;
  // Read before the delivery, so that a delivery the watchdog abandons still lets the chained script run.
  try {
    const chain = await readTrustedHookChain(state.config.stateDir);
    state.target = kind === 'vzdump' ? chain.vzdump : parsed.vmid === undefined ? undefined : chain.guests[String(parsed.vmid)];
  } catch (err) {
    problems.push(`chain file ignored, chained hook not run: ${isCbtError(err) ? `${err.code}: ${err.message}` : (err as Error).message}`);
  }
  if (!parsed.ok) {
    problems.push(`${parsed.error}; no event sent`);
  } else {
    const ev = await buildEvent(kind, parsed, opts.env, state.config);
    const waitMs = ipcWaitMs(state.config.hookTimeoutMs, process.uptime() * 1000);
    watchdog.setDeadline(Math.max(watchdog.deadline, process.uptime() * 1000 + waitMs + WATCHDOG_GRACE_MS));
    const delivery = await deliverEvent(ev, state.config, waitMs);
    if (delivery.outcome === 'spooled') problems.push(`daemon did not acknowledge (${delivery.reason}); event spooled to ${delivery.spool}`);
    if (delivery.outcome === 'lost') problems.push(`event lost: ${delivery.reason}`);
    state.acked = delivery.outcome === 'acked';
    // No daemon to park the bitmaps: take them out of the stopped images here (park-fallback.ts).
    if (kind === 'guest' && parsed.phase === 'post-stop' && parsed.vmid !== undefined && delivery.outcome !== 'acked' && delivery.reason.startsWith('CBT_IPC_UNAVAILABLE')) {
      const end = process.uptime() * 1000 + state.config.hookTimeoutMs;
      watchdog.setDeadline(Math.max(watchdog.deadline, end + WATCHDOG_GRACE_MS));
      problems.push(...(await removeBitmapsWithoutDaemon(state.config.stateDir, parsed.vmid, end)).map((p) => `bitmap removal: ${p}`));
    }
  }
}

/** A chain pointing back at pve-cbt's own hook would make every run start itself again. */
function isSelf(targetPath: string): boolean {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(targetPath) === fs.realpathSync(process.argv[1]);
  } catch {
    return false;
  }
}

async function buildEvent(kind: HookKind, args: ParsedArgs & { ok: true }, env: NodeJS.ProcessEnv, config: HookConfig): Promise<LifecycleEvent> {
  const ev: LifecycleEvent = {
    phase: args.phase,
    source: kind === 'guest' ? 'hookscript' : 'vzdump',
    time: new Date().toISOString(),
    seq: randomUUID(),
  };
  if (args.vmid !== undefined) {
    ev.vmid = args.vmid;
    const pid = await readQemuPid(config.qemuServerRunDir, args.vmid);
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
