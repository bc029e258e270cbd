import { defineError } from '../../shared/errors/cbt-error';

/** Error codes of repository key files (key-file.ts) and of the keys a repository is opened with. */

export const KeyPassphraseWrongError = defineError<{ file: string }>(
  'CBT_KEY_PASSPHRASE_WRONG',
  (d) => `the passphrase does not unlock the key file ${d.file}`,
);
export const KeyPassphraseMissingError = defineError<{ file: string; hint: string }>(
  'CBT_KEY_PASSPHRASE_MISSING',
  (d) => `the key file ${d.file} is protected by a passphrase and none was given: ${d.hint}`,
);
export const KeyFileInvalidError = defineError<{ file: string; reason: string }>(
  'CBT_KEY_FILE_INVALID',
  (d) => `${d.file} is not a usable pve-cbt key file: ${d.reason}`,
);
export const KeyFileUnreadableError = defineError<{ file: string; reason: string }>(
  'CBT_KEY_FILE_UNREADABLE',
  (d) => `cannot read the key file ${d.file}: ${d.reason}`,
);
export const KeyFileExistsError = defineError<{ file: string }>(
  'CBT_KEY_FILE_EXISTS',
  (d) => `${d.file} exists already (a key file is never overwritten: its key may be the only way to read backups)`,
);
export const KeyPaperInvalidError = defineError<{ line: number; reason: string }>(
  'CBT_KEY_PAPER_INVALID',
  (d) => `paper key${d.line > 0 ? ` line ${d.line}` : ''}: ${d.reason}`,
);
export const KeyPassphraseUnreadableError = defineError<{ file: string; reason: string }>(
  'CBT_KEY_PASSPHRASE_UNREADABLE',
  (d) => `cannot read the passphrase file ${d.file}: ${d.reason}`,
);
