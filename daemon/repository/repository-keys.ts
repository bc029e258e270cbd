/**
 * The keys a process opens the configured repository with: none without `encryption.keyFile`,
 * else the key file unlocked with its passphrase (key-passphrase.ts). One place, so the daemon,
 * the CLI's local commands and `serve` agree.
 */
import type { CbtConfig } from '../config/config-schema';
import { loadRepositoryKeys, type RepositoryKeys } from './key-file';
import { readPassphrase } from './key-passphrase';

export function configuredRepositoryKeys(config: Pick<CbtConfig, 'encryption'>, env: NodeJS.ProcessEnv = process.env): RepositoryKeys | undefined {
  const keyFile = config.encryption?.keyFile;
  if (!keyFile) return undefined;
  return loadRepositoryKeys(keyFile, readPassphrase({ file: config.encryption.passphraseFile, env }));
}
