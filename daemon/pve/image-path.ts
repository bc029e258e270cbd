/**
 * Which image names from `pvesm path` (or a path written in a VM config) pve-cbt hands to QEMU's
 * tools. QEMU reads much more than file names from a file name: `json:{…}` opens any file or
 * protocol the JSON describes, `nbd:`/`ssh:`/`http:` reach other hosts, a leading `-` is read
 * as an option by a tool that is not given `--`, and a relative path depends on the cwd. So only
 * the forms real Proxmox storages print are accepted:
 *
 *   /ABSOLUTE/PATH        directory, NFS, CIFS, ZFS (/dev/zvol/…), LVM (/dev/VG/LV), pass-through
 *   rbd:POOL/IMAGE[:…]    Ceph RBD (RBDPlugin: `rbd:pool/[ns/]image:mon_host=…:id=…:keyring=…`)
 *   iscsi://PORTAL/TARGET/LUN   the iSCSI (libiscsi) direct storage
 *
 * An absolute path comes back normalized (`//`, `.`, `..` resolved); a path naming a directory
 * (trailing `/`), any control character or white space in a protocol form is refused. To accept
 * another storage's form, add a row to PROTOCOL_FORMS with a pattern as tight as these.
 * Pure: the caller turns a refusal into CBT_PVE_PATH_REFUSED with vmid, volid and path.
 */
import path from 'node:path';

/** Why a name is refused: stable words for callers and tests; `problem` is the prose. */
export type ImagePathRefusal = 'empty' | 'control-character' | 'directory' | 'option-like' | 'json-pseudo-filename' | 'protocol' | 'relative';

export type ImagePathCheck = { ok: true; path: string } | { ok: false; refusal: ImagePathRefusal; problem: string };

/** Protocol forms of real storages; each pattern covers the whole name. */
export const PROTOCOL_FORMS: readonly { readonly storage: string; readonly pattern: RegExp }[] = [
  { storage: 'rbd', pattern: /^rbd:[A-Za-z0-9_.][A-Za-z0-9_.-]*\/[^\s]+$/ },
  { storage: 'iscsi', pattern: /^iscsi:\/\/[A-Za-z0-9_.:[\]-]+\/[^\s/]+\/\d+$/ },
];

const CONTROL = /[\u0000-\u001f\u007f]/;

const refuse = (refusal: ImagePathRefusal, problem: string): ImagePathCheck => ({ ok: false, refusal, problem });

export function checkImagePath(printed: string): ImagePathCheck {
  if (printed === '') return refuse('empty', 'empty');
  if (CONTROL.test(printed)) return refuse('control-character', 'contains a control character');
  if (printed.startsWith('/')) {
    const normalized = path.posix.normalize(printed);
    if (normalized === '/' || normalized.endsWith('/')) return refuse('directory', 'names a directory, not an image');
    return { ok: true, path: normalized };
  }
  if (PROTOCOL_FORMS.some((f) => f.pattern.test(printed))) return { ok: true, path: printed };
  if (printed.startsWith('-')) return refuse('option-like', 'would be read as an option');
  if (/^json:/i.test(printed)) return refuse('json-pseudo-filename', 'a json: pseudo-filename can open any file or protocol');
  const protocol = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(printed);
  if (protocol) return refuse('protocol', `'${protocol[1]}:' is not a form any accepted storage uses (${PROTOCOL_FORMS.map((f) => `${f.storage}`).join(', ')} or an absolute path)`);
  return refuse('relative', 'a relative path');
}
