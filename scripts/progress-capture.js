#!/usr/bin/env node
/**
 * Makes docs/progress-capture.txt: `pve-cbt backup` in a real terminal (tmux) on a simulated node
 * (daemon/sim: real QEMU, real daemon from dist/), captured with `tmux capture-pane -p` while the
 * backup runs and when it has ended. First a full backup of 512 MiB of random bytes (nothing to
 * reuse), then 256 MiB of writes of which half repeat bytes the repository already holds, then the
 * incremental, whose progress shows that reuse.
 *
 *   npm run build && node scripts/progress-capture.js [OUT]
 *
 * Needs tmux and QEMU; removes everything it started.
 */
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const CLI = path.join(DIST, 'daemon', 'cli', 'main.js');
const { createPveNode } = require(path.join(DIST, 'daemon/sim/pve-node'));
const { simNodeConfig } = require(path.join(DIST, 'daemon/demo/sim-node-config'));
const MiB = 1024 * 1024;
const SESSION = `pve-cbt-capture-${process.pid}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmux = (...args) => execFileSync('tmux', args, { encoding: 'utf8' });
const pane = () => tmux('capture-pane', '-p', '-t', SESSION).replace(/\s+$/, '');

/** Runs `pve-cbt ARGS` in the tmux pane; resolves with the last screen during the run and the final one. */
async function backupInTmux(args) {
  tmux('send-keys', '-t', SESSION, 'clear', 'Enter');
  for (let i = 0; i < 40 && /^exit \d+$/m.test(pane()); i++) await sleep(100);
  tmux('send-keys', '-t', SESSION, `pve-cbt ${args.join(' ')}; echo "exit $?"`, 'Enter');
  let during = '';
  for (const end = Date.now() + 300_000; Date.now() < end; ) {
    await sleep(250);
    const screen = pane();
    if (/^exit \d+$/m.test(screen)) return { during, final: screen };
    if (/\d+% \|/.test(screen) && !/100% \|/.test(screen)) during = screen;
  }
  throw new Error('the backup did not end');
}

/** The screen without the shell's own lines (`clear`, the `echo` of the exit code stays). */
function tidy(screen) {
  return screen
    .split('\n')
    .map((l) => l.replace(/\s+$/, '').replace(/; echo "exit \$\?"$/, ''))
    .filter((l) => l !== '' && l !== '$')
    .join('\n');
}

async function main() {
  const out = process.argv[2] ?? path.join(ROOT, 'docs', 'progress-capture.txt');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-capture-'));
  const node = await createPveNode({ baseDir: work });
  let daemon;
  try {
    const vm = await node.addVm({ vmid: 101, name: 'web', disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 1024 }] });
    // 512 MiB of random bytes (nothing repeats, so the full reuses nothing).
    const kept = [];
    for (let i = 0; i < 32; i++) {
      const data = crypto.randomBytes(16 * MiB);
      if (i < 8) kept.push(data);
      await vm.writeData('scsi0', i * 16 * MiB, data);
    }
    await vm.start();
    const configFile = path.join(work, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify(simNodeConfig(node, work), null, 2));
    daemon = spawn(process.execPath, [CLI, 'daemon', '--config', configFile], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      await sleep(200);
      try {
        execFileSync(process.execPath, [CLI, 'status', '--config', configFile], { stdio: 'ignore' });
        break;
      } catch {
        // not up yet
      }
    }
    tmux('new-session', '-d', '-s', SESSION, '-x', '150', '-y', '16', 'env', '-i', `PATH=${process.env.PATH}`, 'TERM=xterm-256color', `PVE_CBT_CONFIG=${configFile}`, 'bash', '--norc', '--noprofile');
    tmux('send-keys', '-t', SESSION, `PS1='$ '; pve-cbt() { ${process.execPath} ${CLI} "$@"; }`, 'Enter');
    const full = await backupInTmux(['backup', '101']);
    // 256 MiB of writes while the VM is stopped (its qcow2 bitmap records them): a copy of the
    // first 128 MiB (bytes the repository holds) and 128 MiB of new random bytes.
    await vm.stop();
    for (let i = 0; i < 8; i++) await vm.writeData('scsi0', (512 + i * 16) * MiB, kept[i]);
    for (let i = 0; i < 8; i++) await vm.writeData('scsi0', (640 + i * 16) * MiB, crypto.randomBytes(16 * MiB));
    await vm.start();
    const inc = await backupInTmux(['backup', '101']);
    const text = [
      '# `pve-cbt backup 101` in tmux (`tmux capture-pane -p`), made by scripts/progress-capture.js on a',
      '# simulated node (real QEMU, real daemon). The full backup of 512 MiB of random bytes, during and at its end:',
      '',
      tidy(full.during),
      '',
      tidy(full.final),
      '',
      '# 256 MiB written: a copy of 128 MiB the repository already holds, and 128 MiB of new bytes. The incremental:',
      '',
      tidy(inc.during),
      '',
      tidy(inc.final),
      '',
    ].join('\n');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, text);
    process.stdout.write(text);
  } finally {
    try {
      tmux('kill-session', '-t', SESSION);
    } catch {
      // no session
    }
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.on('exit', r));
    }
    await node.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
