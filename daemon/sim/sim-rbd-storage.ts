/**
 * The simulator's Ceph RBD storage `ceph`, on a real cluster (the tests' one, scripts/ceph-micro.sh),
 * laid out as a PVE-managed Ceph storage is:
 *
 *   ROOT/etc/pve/storage.cfg               `dir: local` and `rbd: ceph` with `pool`, `namespace`, `content images`
 *   ROOT/etc/pve/ceph.conf                 the cluster's ceph.conf (a link; PVE keeps it there)
 *   ROOT/etc/pve/priv/ceph/ceph.keyring    the storage's keyring (a copy of the cluster's admin keyring)
 *   ROOT/usr/sbin/pvesm-rbd.sh             sourced by the pvesm shim: `path|alloc|free` on `ceph:`
 *
 * Each node gets its own RBD namespace (`cbt-<random>`) in the pool, so nodes of parallel tests never
 * see each other's `vm-100-disk-0`; `dispose` removes every image (snapshots first) and the namespace.
 * `pvesm path ceph:NAME` prints what RBDPlugin's `path` prints for a PVE-managed cluster whose storage
 * has a keyring: `rbd:POOL/NAMESPACE/NAME:conf=ROOT/etc/pve/ceph.conf:id=admin:keyring=ROOT/etc/pve/priv/ceph/ceph.keyring`
 * (no `:mon_host=`/`:auth_supported=`: RBDPlugin adds those only for an external cluster, `monhost` set).
 * `pvesm alloc ceph VMID NAME SIZE` is `rbd create` (raw only, as RBDPlugin: "unsupported format"),
 * refusing a name that exists ("rbd image 'NAME' already exists"); `pvesm free` is `rbd snap purge`
 * + `rbd rm`, as RBDPlugin's free_image. Every rbd call of the shim runs under `timeout 60`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { rbd, rbdJson } from '../proc/ceph-command';
import type { RbdImage } from '../pve/rbd-volume';

export interface SimCephSpec {
  /** ceph.conf of the cluster (CEPH_CONF). */
  readonly conf: string;
  /** Pool holding the images (RBD_POOL). */
  readonly pool: string;
  /** The cluster's admin keyring; default: `ceph.client.admin.keyring` beside conf. */
  readonly keyring?: string;
}

export const RBD_STORAGE = 'ceph';

export interface SimRbdStorage {
  readonly storage: string;
  readonly pool: string;
  readonly namespace: string;
  readonly confPath: string;
  readonly keyringPath: string;
  /** The namespace itself, for rbd CLI calls (`rbd ls`, `rbd namespace rm`). */
  readonly admin: RbdImage;
  dispose(): Promise<void>;
}

export async function createRbdStorage(root: string, spec: SimCephSpec): Promise<SimRbdStorage> {
  const pve = path.join(root, 'etc/pve');
  const priv = path.join(pve, 'priv/ceph');
  fs.mkdirSync(priv, { recursive: true, mode: 0o700 });
  const confPath = path.join(pve, 'ceph.conf');
  fs.symlinkSync(path.resolve(spec.conf), confPath);
  const keyringPath = path.join(priv, `${RBD_STORAGE}.keyring`);
  const clusterKeyring = spec.keyring ?? path.join(path.dirname(path.resolve(spec.conf)), 'ceph.client.admin.keyring');
  fs.copyFileSync(clusterKeyring, keyringPath);
  fs.chmodSync(keyringPath, 0o600);
  const namespace = `cbt-${crypto.randomBytes(5).toString('hex')}`;
  fs.writeFileSync(
    path.join(pve, 'storage.cfg'),
    `dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,images,snippets\n\nrbd: ${RBD_STORAGE}\n\tcontent images\n\tkrbd 0\n\tpool ${spec.pool}\n\tnamespace ${namespace}\n`,
  );
  const admin: RbdImage = { pool: spec.pool, namespace, image: '', options: [['conf', confPath], ['id', 'admin'], ['keyring', keyringPath]] };
  await rbd(admin, ['namespace', 'create', `${spec.pool}/${namespace}`]);
  fs.writeFileSync(path.join(root, 'usr/sbin/pvesm-rbd.sh'), shimPart(spec.pool, namespace, confPath, keyringPath));
  return {
    storage: RBD_STORAGE,
    pool: spec.pool,
    namespace,
    confPath,
    keyringPath,
    admin,
    async dispose(): Promise<void> {
      const names = (await rbdJson<string[]>(admin, ['ls', `${spec.pool}/${namespace}`]).catch(() => null)) ?? [];
      for (const name of names) {
        const img = `${spec.pool}/${namespace}/${name}`;
        await rbd(admin, ['snap', 'purge', '--no-progress', img]).catch(() => undefined);
        await rbd(admin, ['rm', '--no-progress', img]).catch(() => undefined);
      }
      await rbd(admin, ['namespace', 'rm', `${spec.pool}/${namespace}`]).catch(() => undefined);
    },
  };
}

/** Bash sourced by the pvesm shim before its own dispatch; handles storage `ceph` and exits. */
function shimPart(pool: string, ns: string, conf: string, keyring: string): string {
  return `# pvesm shim, storage '${RBD_STORAGE}' (rbd, pool ${pool}, namespace ${ns}); sourced by pvesm
rbd_() { timeout 60 rbd -c "${conf}" --id admin --keyring "${keyring}" "$@"; }
rbd_name_ok() { [[ "$1" =~ ^((base|vm)-[0-9]+-[^/@:[:space:]]+)$ ]] || { echo "unable to parse rbd volume name '$1'" >&2; exit 255; }; }
case "$1" in
path)
  case "$2" in ${RBD_STORAGE}:*)
    name="\${2#${RBD_STORAGE}:}"; rbd_name_ok "$name"
    echo "rbd:${pool}/${ns}/$name:conf=${conf}:id=admin:keyring=${keyring}"; exit 0 ;;
  esac ;;
alloc)
  if [ "$2" = ${RBD_STORAGE} ]; then
    vmid="$3"; name="$4"; size="$5"; fmt=raw
    [ "$6" = --format ] && fmt="$7"
    [ "$fmt" = raw ] || { echo "unsupported format '$fmt'" >&2; exit 255; }
    [[ "$name" =~ ^vm-$vmid- ]] || { echo "illegal name '$name' - should be 'vm-$vmid-*'" >&2; exit 255; }
    rbd_name_ok "$name"
    case "$size" in
      *G) kib=$(( \${size%G} * 1024 * 1024 )) ;; *M) kib=$(( \${size%M} * 1024 )) ;; *K) kib=\${size%K} ;;
      *) [[ "$size" =~ ^[0-9]+$ ]] || { echo "size: value '$size' is not a size" >&2; exit 255; }; kib="$size" ;;
    esac
    if rbd_ ls "${pool}/${ns}" 2>/dev/null | grep -qxF -- "$name"; then echo "rbd image '$name' already exists" >&2; exit 255; fi
    rbd_ create --size "\${kib}K" "${pool}/${ns}/$name" >&2 || { echo "rbd create $name failed" >&2; exit 255; }
    echo "successfully created '${RBD_STORAGE}:$name'"; exit 0
  fi ;;
free)
  case "$2" in ${RBD_STORAGE}:*)
    name="\${2#${RBD_STORAGE}:}"; rbd_name_ok "$name"
    rbd_ snap purge --no-progress "${pool}/${ns}/$name" >&2 || { echo "rbd snap purge $name failed" >&2; exit 255; }
    rbd_ rm --no-progress "${pool}/${ns}/$name" >&2 || { echo "rbd rm $name failed" >&2; exit 255; }
    exit 0 ;;
  esac ;;
esac
`;
}
