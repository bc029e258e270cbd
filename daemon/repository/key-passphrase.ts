/**
 * Where the passphrase of a key file comes from, as proxmox-backup-client takes it from
 * PBS_ENCRYPTION_PASSWORD: a passphrase file (`--passphrase-file`, config
 * `encryption.passphraseFile`; one trailing newline is not part of it) wins over the environment
 * variable PVE_CBT_ENCRYPTION_PASSWORD. Never from the command line (it would show in `ps`), and
 * never logged. Undefined when neither is given (a kdf "none" key file needs none).
 */
import fs from 'node:fs';
import { KeyPassphraseUnreadableError } from './key-errors';

export const PASSPHRASE_ENV = 'PVE_CBT_ENCRYPTION_PASSWORD';

export function readPassphrase(opts: { file?: string; env?: NodeJS.ProcessEnv }): string | undefined {
  if (opts.file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(opts.file === '-' ? 0 : opts.file, 'utf8');
    } catch (err) {
      throw KeyPassphraseUnreadableError({ file: opts.file, reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, err);
    }
    return text.replace(/\r?\n$/, '');
  }
  const fromEnv = (opts.env ?? process.env)[PASSPHRASE_ENV];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}
