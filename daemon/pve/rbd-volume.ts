/**
 * Ceph RBD volumes as Proxmox and QEMU name them. Pure, table-tested (test/daemon/pve/rbd-volume.test.ts).
 *
 * Two spellings of one image:
 * - the legacy filename RBDPlugin's `path` prints and qemu-server hands to `-drive file=`:
 *   `rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:conf=FILE][:mon_host=H\:P;…][:auth_supported=none][:id=ID:keyring=FILE]`
 *   (options are `:`-separated `key=value`; a `:` inside a value is escaped `\:`);
 * - the pseudo-filename QEMU reports for it in `query-block` (QEMU 7.2 and 10 do not echo the
 *   legacy form): `json:{"driver":"raw","file":{"driver":"rbd","pool":…,"namespace":…,"image":…,
 *   "snapshot":…,"conf":…,"user":…,"=keyvalue-pairs":"[\"keyring\",\"…\"]"}}`.
 * `parseRbdName` reads both into one `RbdImage`; `sameRbdImage` compares what identifies the image
 * (pool, namespace, image, snapshot); `rbdName` writes the legacy form back (e.g. for a snapshot of
 * the image, `@SNAP`); `rbdCliArgs` gives the `rbd` CLI the same cluster and identity.
 */

export interface RbdImage {
  readonly pool: string;
  readonly namespace?: string;
  readonly image: string;
  readonly snapshot?: string;
  /** `conf`, `id`, `keyring`, `mon_host`, `auth_supported`, …, in their order (values unescaped). */
  readonly options: readonly (readonly [string, string])[];
}

export function isRbdName(name: string): boolean {
  return parseRbdName(name) !== undefined;
}

/** Splits on `:` that is not escaped with a backslash; `\:` and `\\` are unescaped. */
function splitEscaped(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
    } else if (ch === ':') {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

function escapeValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

function option(img: RbdImage, key: string): string | undefined {
  return img.options.find(([k]) => k === key)?.[1];
}

export function rbdOption(img: RbdImage, key: string): string | undefined {
  return option(img, key);
}

function parseLegacy(name: string): RbdImage | undefined {
  const [spec, ...opts] = splitEscaped(name.slice('rbd:'.length));
  const at = spec.indexOf('@');
  const path = at < 0 ? spec : spec.slice(0, at);
  const snapshot = at < 0 ? undefined : spec.slice(at + 1);
  const parts = path.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) return undefined;
  if (snapshot !== undefined && snapshot === '') return undefined;
  const options: [string, string][] = [];
  for (const o of opts) {
    const eq = o.indexOf('=');
    if (eq <= 0) return undefined;
    options.push([o.slice(0, eq), o.slice(eq + 1)]);
  }
  const [pool, namespace, image] = parts.length === 3 ? parts : [parts[0], undefined, parts[1]];
  return { pool, ...(namespace ? { namespace } : {}), image, ...(snapshot ? { snapshot } : {}), options };
}

interface JsonRbd {
  driver?: string;
  pool?: string;
  namespace?: string;
  image?: string;
  snapshot?: string;
  conf?: string;
  user?: string;
  '=keyvalue-pairs'?: string;
  file?: JsonRbd;
}

function parseJsonName(name: string): RbdImage | undefined {
  let top: JsonRbd;
  try {
    top = JSON.parse(name.slice('json:'.length)) as JsonRbd;
  } catch {
    return undefined;
  }
  // raw over rbd (what -drive format=raw gives), or the rbd node itself
  const node = top.driver === 'rbd' ? top : top.driver === 'raw' && top.file?.driver === 'rbd' ? top.file : undefined;
  if (!node || typeof node.pool !== 'string' || typeof node.image !== 'string') return undefined;
  const options: [string, string][] = [];
  if (node.conf) options.push(['conf', node.conf]);
  if (node.user) options.push(['id', node.user]);
  if (node['=keyvalue-pairs']) {
    try {
      const kv = JSON.parse(node['=keyvalue-pairs']) as string[];
      for (let i = 0; i + 1 < kv.length; i += 2) options.push([kv[i], kv[i + 1]]);
    } catch {
      return undefined;
    }
  }
  return {
    pool: node.pool,
    ...(node.namespace ? { namespace: node.namespace } : {}),
    image: node.image,
    ...(node.snapshot ? { snapshot: node.snapshot } : {}),
    options,
  };
}

/** Either spelling; undefined when the name is not an RBD image. */
export function parseRbdName(name: string): RbdImage | undefined {
  if (name.startsWith('rbd:')) return parseLegacy(name);
  if (name.startsWith('json:')) return parseJsonName(name);
  return undefined;
}

/** `POOL[/NAMESPACE]/IMAGE[@SNAP]`, the image spec the rbd CLI takes. */
export function rbdImageSpec(img: Pick<RbdImage, 'pool' | 'namespace' | 'image' | 'snapshot'>): string {
  return `${img.pool}/${img.namespace ? `${img.namespace}/` : ''}${img.image}${img.snapshot ? `@${img.snapshot}` : ''}`;
}

/** The legacy filename QEMU's tools open. */
export function rbdName(img: RbdImage): string {
  return `rbd:${rbdImageSpec(img)}${img.options.map(([k, v]) => `:${k}=${escapeValue(v)}`).join('')}`;
}

/** The same image at a snapshot (or without one). */
export function atSnapshot(img: RbdImage, snapshot: string | undefined): RbdImage {
  const { snapshot: _old, ...rest } = img;
  return snapshot === undefined ? rest : { ...rest, snapshot };
}

export function sameRbdImage(a: RbdImage, b: RbdImage): boolean {
  return a.pool === b.pool && (a.namespace ?? '') === (b.namespace ?? '') && a.image === b.image && (a.snapshot ?? '') === (b.snapshot ?? '');
}

/** Cluster and identity options for the `rbd` CLI, from the filename's options. */
export function rbdCliArgs(img: RbdImage): string[] {
  const args: string[] = [];
  const conf = option(img, 'conf');
  if (conf) args.push('-c', conf);
  const mon = option(img, 'mon_host');
  if (mon) args.push('-m', mon.replace(/;/g, ','));
  const auth = option(img, 'auth_supported');
  if (auth) args.push('--auth_supported', auth);
  const id = option(img, 'id');
  if (id) args.push('--id', id);
  const keyring = option(img, 'keyring');
  if (keyring) args.push('--keyring', keyring);
  return args;
}
