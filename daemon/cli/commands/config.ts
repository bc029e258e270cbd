/**
 * `pve-cbt config check`: validates the config exactly as the daemon will at start (same loader),
 * and shows the effective values with defaults filled in. Exit 3 with key path and hint if refused.
 * Without a config file (only the default path may be absent) it says so: the values are defaults.
 */
import fs from 'node:fs';
import { resolveConfigPath } from '../../config/load-config';
import { nextRun, parseCalendarEvent } from '../../schedule/calendar-event';
import { defineCommand } from '../command';
import { formatTime } from '../format-time';

const checkCommand = defineCommand({
  name: 'check',
  summary: 'validate the config file and show the effective config',
  examples: ['pve-cbt config check', 'pve-cbt --config ./test.json config check --json'],
  async run(ctx) {
    const config = ctx.loadConfig();
    const { file } = resolveConfigPath({ path: ctx.configPath, env: ctx.env });
    // loadConfig only tolerates an absent file at the default path, so absent here means defaults.
    const fileExists = fs.existsSync(file);
    const jobs = config.jobs.map((j) => {
      const next = j.enabled ? nextRun(parseCalendarEvent(j.schedule), ctx.now()) : null;
      return `  ${j.id}: ${j.schedule}${j.enabled ? `, next run ${next ? formatTime(next) : 'never'}` : ' (disabled)'}`;
    });
    return {
      data: { ok: true, file, fileExists, config },
      text: [fileExists ? `config ${file} is valid` : `no config file (${file} does not exist), defaults`, `repository: ${config.repository}`, `jobs: ${config.jobs.length}`, ...jobs].join('\n'),
    };
  },
});

export const configCommand = defineCommand({
  name: 'config',
  summary: 'inspect the pve-cbt config',
  subcommands: [checkCommand],
});
