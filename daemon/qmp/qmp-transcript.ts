/**
 * Bounded transcripts of QMP traffic, one ring per socket, as QEMU's iotests keep theirs: every
 * line a QmpClient of this process sends or receives (commands, replies, events) and each
 * disconnect, newest last, each line cut at MAX_LINE characters, the last MAX_LINES kept.
 *
 * Off unless a process turns it on (`recordQmpTranscripts`): the simulator's jest glue does
 * (test/sim/jest-cleanup.ts), so that a failed test prints what the engine and the test said to
 * each VM of its node (`PveNode.qmpTranscripts`). While off, `noteQmp` is one check and nothing is
 * kept; the daemon and the demo never turn it on.
 */
const MAX_LINES = 200;
const MAX_LINE = 2000;

let rings: Map<string, string[]> | undefined;

export function recordQmpTranscripts(): void {
  rings ??= new Map();
}

export function noteQmp(socketPath: string, direction: '->' | '<-' | '--', line: string): void {
  if (!rings) return;
  let ring = rings.get(socketPath);
  if (!ring) rings.set(socketPath, (ring = []));
  ring.push(`${new Date().toISOString()} ${direction} ${line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}... (${line.length} chars)` : line}`);
  if (ring.length > MAX_LINES) ring.splice(0, ring.length - MAX_LINES);
}

/** The recorded lines of one socket, oldest first (empty when recording is off). */
export function qmpTranscript(socketPath: string): string[] {
  return [...(rings?.get(socketPath) ?? [])];
}

export function clearQmpTranscript(socketPath: string): void {
  rings?.delete(socketPath);
}
