/**
 * `pve-cbt key`: the key file of an encrypted repository (daemon/repository/key-file.ts).
 *   key create PATH [--kdf scrypt|none]   a new random master key in a new key file (0600, never
 *                                         overwrites); scrypt: protected by a passphrase
 *   key show PATH                         kdf, creation time and fingerprint (no passphrase needed)
 *   key export PATH [--paperkey]          the key file for safe keeping, or its paper form
 *   key import PAPER PATH                 a key file typed back from its paper form
 * The passphrase comes from `--passphrase-file FILE` ('-': stdin) or PVE_CBT_ENCRYPTION_PASSWORD
 * (key-passphrase.ts), never from the command line. A repository is encrypted when it is created
 * with `encryption.keyFile` in the config (the daemon creates it at its first start).
 * JSON (beside `ok`): create/show/import `{ path, kdf, created, fingerprint }`; export
 * `{ path, fingerprint, keyFile }` or with --paperkey `{ path, fingerprint, paperkey }`.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  formatFingerprint,
  generateMasterKey,
  paperKey,
  parsePaperKey,
  readKeyFile,
  sealKeyFile,
  unlockKeyFile,
  writeNewKeyFile,
  KEY_KDFS,
  type KeyFileJson,
  type KeyKdf,
} from '../../repository/key-file';
import { readPassphrase } from '../../repository/key-passphrase';
import { KeyFileUnreadableError } from '../../repository/key-errors';
import { defineCommand } from '../command';

const PASSPHRASE_OPTION = { flags: '--passphrase-file <file>', description: "read the passphrase from this file ('-': stdin); default: $PVE_CBT_ENCRYPTION_PASSWORD" };
const PATH_PARAM = { name: 'path', description: 'the key file', required: true };

function info(file: string, k: KeyFileJson) {
  return { path: file, kdf: k.kdf, created: k.created, fingerprint: k.fingerprint };
}

function infoText(what: string, file: string, k: KeyFileJson): string {
  return `${what} ${file}: kdf ${k.kdf}, created ${k.created}\nfingerprint ${formatFingerprint(k.fingerprint)}`;
}

const createSub = defineCommand<{ kdf: KeyKdf; passphraseFile?: string }, { path: string }>({
  name: 'create',
  summary: 'create a new key file with a random master key',
  params: [PATH_PARAM],
  options: [{ flags: '--kdf <kdf>', description: 'scrypt: protected by a passphrase; none: unprotected (unattended daemons)', default: 'scrypt', choices: KEY_KDFS }, PASSPHRASE_OPTION],
  examples: ['PVE_CBT_ENCRYPTION_PASSWORD=... pve-cbt key create /etc/pve-cbt/repository.key', 'pve-cbt key create --kdf none /etc/pve-cbt/repository.key'],
  async run(ctx) {
    const file = path.resolve(ctx.args.path);
    const passphrase = ctx.opts.kdf === 'scrypt' ? readPassphrase({ file: ctx.opts.passphraseFile, env: ctx.env }) : undefined;
    const k = sealKeyFile(generateMasterKey(), { kdf: ctx.opts.kdf, passphrase, now: ctx.now(), file });
    writeNewKeyFile(file, k);
    const hint = 'keep a copy away from the repository (pve-cbt key export): without it the backups cannot be read';
    return { data: info(file, k), text: `${infoText('created key file', file, k)}\n${hint}` };
  },
});

const showSub = defineCommand<Record<string, never>, { path: string }>({
  name: 'show',
  summary: "show a key file's kdf and fingerprint",
  params: [PATH_PARAM],
  examples: ['pve-cbt key show /etc/pve-cbt/repository.key --json'],
  async run(ctx) {
    const file = path.resolve(ctx.args.path);
    const k = readKeyFile(file);
    return { data: info(file, k), text: infoText('key file', file, k) };
  },
});

const exportSub = defineCommand<{ paperkey?: boolean }, { path: string }>({
  name: 'export',
  summary: 'print the key file (or its paper form) for safe keeping',
  params: [PATH_PARAM],
  options: [{ flags: '--paperkey', description: 'a form to print on paper and type back with key import' }],
  examples: ['pve-cbt key export /etc/pve-cbt/repository.key > /media/usb/repository.key', 'pve-cbt key export --paperkey /etc/pve-cbt/repository.key | lp'],
  async run(ctx) {
    const file = path.resolve(ctx.args.path);
    const k = readKeyFile(file);
    if (ctx.opts.paperkey) {
      const paper = paperKey(k);
      return { data: { path: file, fingerprint: k.fingerprint, paperkey: paper }, text: paper.trimEnd() };
    }
    return { data: { path: file, fingerprint: k.fingerprint, keyFile: k }, text: JSON.stringify(k, null, 2) };
  },
});

const importSub = defineCommand<{ passphraseFile?: string }, { paper: string; path: string }>({
  name: 'import',
  summary: 'write a key file typed back from its paper form',
  params: [{ name: 'paper', description: "the typed paper form ('-': stdin)", required: true }, PATH_PARAM],
  options: [PASSPHRASE_OPTION],
  examples: ['pve-cbt key import paper.txt /etc/pve-cbt/repository.key'],
  async run(ctx) {
    let text: string;
    try {
      text = fs.readFileSync(ctx.args.paper === '-' ? 0 : ctx.args.paper, 'utf8');
    } catch (err) {
      throw KeyFileUnreadableError({ file: ctx.args.paper, reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, err);
    }
    const k = parsePaperKey(text);
    const file = path.resolve(ctx.args.path);
    // The fingerprint proves the typed key is whole; scrypt files need the passphrase for that.
    unlockKeyFile(file, k, k.kdf === 'scrypt' ? readPassphrase({ file: ctx.opts.passphraseFile, env: ctx.env }) : undefined);
    writeNewKeyFile(file, k);
    return { data: info(file, k), text: infoText('imported key file', file, k) };
  },
});

export const keyCommand = defineCommand({
  name: 'key',
  summary: 'create, show and export the key file of an encrypted repository',
  subcommands: [createSub, showSub, exportSub, importSub],
});
