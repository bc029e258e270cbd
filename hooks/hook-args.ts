/**
 * Parses the arguments Proxmox passes to the hooks (pure; see shared/docs/pve-qemu-facts.md):
 * guest hookscript `VMID PHASE`; vzdump hook `PHASE` (job phases) or `PHASE MODE VMID`.
 * A phase pve-cbt does not know is not an error for the chained script, which still runs: only the
 * event is skipped. `vmid`/`chainable` tell the caller whether chaining is still possible.
 */
import {
  GUEST_PHASES,
  VMID_MAX,
  VMID_MIN,
  VZDUMP_GUEST_PHASES,
  VZDUMP_JOB_PHASES,
  VZDUMP_MODES,
  type VzdumpMode,
} from '../shared/ipc/messages';

export type ParsedArgs =
  | { ok: true; vmid?: number; phase: string; mode?: VzdumpMode }
  | { ok: false; error: string; vmid?: number };

export function parseGuestArgs(argv: readonly string[]): ParsedArgs {
  if (argv.length !== 2) return { ok: false, error: `expected arguments VMID PHASE, got ${argv.length} argument(s)` };
  const vmid = parseVmid(argv[0]);
  if (vmid === undefined) return { ok: false, error: `bad VMID "${clip(argv[0])}"` };
  if (!(GUEST_PHASES as readonly string[]).includes(argv[1])) return { ok: false, error: `unknown phase "${clip(argv[1])}"`, vmid };
  return { ok: true, vmid, phase: argv[1] };
}

export function parseVzdumpArgs(argv: readonly string[]): ParsedArgs {
  if (argv.length === 1) {
    if (!(VZDUMP_JOB_PHASES as readonly string[]).includes(argv[0])) return { ok: false, error: `unknown job phase "${clip(argv[0])}"` };
    return { ok: true, phase: argv[0] };
  }
  if (argv.length === 3) {
    const [phase, mode, vmidArg] = argv;
    const vmid = parseVmid(vmidArg);
    if (vmid === undefined) return { ok: false, error: `bad VMID "${clip(vmidArg)}"` };
    if (!(VZDUMP_MODES as readonly string[]).includes(mode)) return { ok: false, error: `unknown mode "${clip(mode)}"`, vmid };
    if (!(VZDUMP_GUEST_PHASES as readonly string[]).includes(phase)) return { ok: false, error: `unknown phase "${clip(phase)}"`, vmid };
    return { ok: true, vmid, phase, mode: mode as VzdumpMode };
  }
  return { ok: false, error: `expected arguments PHASE or PHASE MODE VMID, got ${argv.length} argument(s)` };
}

function parseVmid(s: string): number | undefined {
  if (!/^[1-9][0-9]{0,8}$/.test(s)) return undefined;
  const n = Number(s);
  return n >= VMID_MIN && n <= VMID_MAX ? n : undefined;
}

/** Arguments end up in a one-line log message: keep them short and printable. */
function clip(s: string): string {
  const printable = s.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}...` : printable;
}
