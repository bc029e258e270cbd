/**
 * Edits of a qemu-server VM config's text as `qm` makes them (pure; pve-conf.ts writes the first
 * version): the current section's `key: value` lines (kept sorted, as the simulator renders them),
 * and the `[snapname]` sections after it. Snapshots form a tree through `parent:`; deleting one hands
 * its parent to its children and to the current config, as qemu-server's snapshot_delete does.
 */

interface ParsedConf {
  current: Map<string, string>;
  snapshots: { name: string; entries: Map<string, string> }[];
}

function parse(text: string): ParsedConf {
  const out: ParsedConf = { current: new Map(), snapshots: [] };
  let target = out.current;
  for (const line of text.split('\n')) {
    const sec = /^\[([^\]]+)\]\s*$/.exec(line);
    if (sec) {
      const entries = new Map<string, string>();
      out.snapshots.push({ name: sec[1], entries });
      target = entries;
      continue;
    }
    const m = /^([a-z][a-z0-9_-]*):\s?(.*)$/i.exec(line);
    if (m) target.set(m[1], m[2]);
  }
  return out;
}

function render(c: ParsedConf): string {
  const section = (m: Map<string, string>): string =>
    [...m.keys()]
      .sort()
      .map((k) => `${k}: ${m.get(k)}\n`)
      .join('');
  return [section(c.current), ...c.snapshots.map((s) => `[${s.name}]\n${section(s.entries)}`)].join('\n');
}

/** A `key: value` of the current section. */
export function confGet(text: string, key: string): string | undefined {
  return parse(text).current.get(key);
}

/** Every `key: value` of the current section. */
export function confEntries(text: string): Record<string, string> {
  return Object.fromEntries(parse(text).current);
}

/** Sets (or, with undefined, removes) keys of the current section; snapshot sections are kept. */
export function confSet(text: string, changes: Record<string, string | undefined>): string {
  const c = parse(text);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) c.current.delete(k);
    else c.current.set(k, v);
  }
  return render(c);
}

export function snapshotNames(text: string): string[] {
  return parse(text).snapshots.map((s) => s.name);
}

/** The first free `unusedN` key. */
export function nextUnusedKey(text: string): string {
  const cur = parse(text).current;
  let n = 0;
  while (cur.has(`unused${n}`)) n++;
  return `unused${n}`;
}

/**
 * `qm snapshot`: a `[name]` section holding the current config (its `parent` included) plus
 * `snaptime` and, for a vmstate snapshot, `extra`; the current config's parent becomes `name`.
 */
export function confAddSnapshot(text: string, name: string, extra: Record<string, string>): string {
  const c = parse(text);
  const entries = new Map(c.current);
  for (const k of ['lock', 'pending']) entries.delete(k);
  for (const [k, v] of Object.entries(extra)) entries.set(k, v);
  c.snapshots.push({ name, entries });
  c.current.set('parent', name);
  return render(c);
}

/** `qm delsnapshot`: drops the section; whoever had it as parent gets its parent (or none). */
export function confDeleteSnapshot(text: string, name: string): string {
  const c = parse(text);
  const gone = c.snapshots.find((s) => s.name === name);
  if (!gone) return text;
  const grand = gone.entries.get('parent');
  c.snapshots = c.snapshots.filter((s) => s !== gone);
  for (const m of [c.current, ...c.snapshots.map((s) => s.entries)]) {
    if (m.get('parent') !== name) continue;
    if (grand === undefined) m.delete('parent');
    else m.set('parent', grand);
  }
  return render(c);
}

/** Whether any snapshot section names `volid` (qemu-server refuses to delete such a volume). */
export function snapshotsUseVolume(text: string, volid: string): string[] {
  return parse(text)
    .snapshots.filter((s) => [...s.entries.values()].some((v) => v.split(',')[0] === volid))
    .map((s) => s.name);
}
