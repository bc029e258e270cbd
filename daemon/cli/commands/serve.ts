/**
 * `pve-cbt serve BACKUP --disk DISK [--socket PATH | --tcp 127.0.0.1:PORT]`: exports one disk of a
 * backup read-only over NBD (daemon/nbd/nbd-server.ts) until SIGINT/SIGTERM. Opens the repository
 * read-only (never creates one). Prints the NBD URI (one JSON line with --json). TCP listens on
 * loopback only unless another address is given explicitly with --tcp.
 */
import path from 'node:path';
import { NbdExportServer } from '../../nbd/nbd-server';
import { configuredRepositoryKeys } from '../../repository/repository-keys';
import { ServeDiskSource } from '../../repository/serve-source';
import { repositoryStorageOf } from '../../repository/repository-storage-of';
import { displayBackupId } from '../../repository/backup-id';
import { CliUsageError } from '../cli-errors';
import { defineCommand } from '../command';

interface ServeOptions {
  disk: string;
  socket?: string;
  tcp?: string;
}

function parseTcp(raw: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(raw);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw CliUsageError({ command: 'serve', problem: `--tcp ${raw} is not HOST:PORT`, hint: 'e.g. --tcp 127.0.0.1:10809' });
  }
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

export const serveCommand = defineCommand<ServeOptions, { backup: string }>({
  name: 'serve',
  summary: 'export one disk of a backup read-only over NBD until interrupted',
  usage: '[options] <backup> --disk <disk> [--socket <path> | --tcp <host:port>]',
  params: [{ name: 'backup', description: "backup id as printed by 'list'", required: true }],
  options: [
    { flags: '--disk <disk>', description: 'disk name, e.g. scsi0' },
    { flags: '--socket <path>', description: 'unix socket to listen on' },
    { flags: '--tcp <host:port>', description: 'TCP address to listen on (host defaults to 127.0.0.1)' },
  ],
  examples: ["pve-cbt serve vm/101/2026-11-25T02:00:03Z --disk scsi0 --socket /run/pve-cbt-101.sock"],
  async run(ctx) {
    const { disk, socket, tcp } = ctx.opts;
    if (!disk) throw CliUsageError({ command: 'serve', problem: '--disk is required', hint: "see 'pve-cbt serve --help'" });
    if (socket && tcp) throw CliUsageError({ command: 'serve', problem: '--socket and --tcp exclude each other', hint: 'give one' });
    if (!socket && !tcp) throw CliUsageError({ command: 'serve', problem: 'one of --socket or --tcp is required', hint: 'e.g. --socket /run/pve-cbt.sock' });
    const where = socket ? { path: path.resolve(socket) } : parseTcp(tcp as string);
    const config = ctx.loadConfig();
    const reader = await ServeDiskSource.open(config.repository, ctx.args.backup, disk, configuredRepositoryKeys(config, ctx.env), repositoryStorageOf(config));
    try {
      const server = new NbdExportServer({ exportName: disk, source: reader });
      const addr = await server.listen(where);
      const uri =
        typeof addr === 'string'
          ? `nbd+unix:///${disk}?socket=${addr}`
          : `nbd://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}/${disk}`;
      const shown = displayBackupId(ctx.args.backup);
      const info = { backup: shown, disk, size: reader.size, uri };
      if (ctx.json) ctx.out.json(info);
      else ctx.out.line(`serving ${disk} of ${shown} read-only at ${uri} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await server.close();
      // A stream: its one JSON line was the output; no envelope follows it.
      return ctx.json ? undefined : { text: `stopped serving ${disk} of ${shown}` };
    } finally {
      await reader.close();
    }
  },
});
