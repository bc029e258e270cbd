/**
 * The verify job: scheduled monthly by default (configurable, can be disabled), it re-reads the
 * whole real repository and leaves its result where `pve-cbt status` reads it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, transports } from 'winston';
import { validateConfig } from '../../../daemon/config/load-config';
import { nextRun, parseCalendarEvent } from '../../../daemon/schedule/calendar-event';
import { Repository } from '../../../daemon/repository/repository';
import { flipBlobByte } from '../repository/blob-files';
import { runScheduledJob, scheduledJobs, VERIFY_JOB_ID, type VerifyJob } from '../../../daemon/service/scheduled-job';
import type { Services } from '../../../daemon/service/services';
import { verifyText } from '../../../daemon/cli/commands/status';
import { backupImage, seededBytes, tempDir } from '../repository/repo-test-helpers';

const verifyJobOf = (raw: unknown): VerifyJob | undefined => scheduledJobs(validateConfig(raw, '/etc/pve-cbt/config.json')).find((j): j is VerifyJob => j.id === VERIFY_JOB_ID && 'kind' in j);

describe('the verify job', () => {
  test('runs monthly by default, as PBS recommends; the schedule is configurable and the job can be disabled', () => {
    expect(verifyJobOf({})).toEqual({ kind: 'verify', id: 'verify', schedule: 'monthly', enabled: true });
    expect(nextRun(parseCalendarEvent(verifyJobOf({})?.schedule as string), new Date(2026, 11, 15, 12))).toEqual(new Date(2027, 0, 1, 0, 0));
    expect(verifyJobOf({ verify: { schedule: 'sat 03:00' } })).toMatchObject({ schedule: 'sat 03:00', enabled: true });
    expect(verifyJobOf({ verify: { enabled: false } })).toMatchObject({ schedule: 'monthly', enabled: false });
    expect(() => validateConfig({ verify: { every: 'month' } }, '/etc/pve-cbt/config.json')).toThrow(expect.objectContaining({ code: 'CBT_CONFIG_INVALID' }));
  });

  test('re-reads every backup of the real repository and records time and ok/bad counts for status', async () => {
    const dir = tempDir();
    try {
      const repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: 65536 });
      const img = path.join(dir, 'disk.img');
      const data = seededBytes('verify-job', 4 * 65536);
      fs.writeFileSync(img, data);
      await backupImage(repo, img, { vmid: 100 });
      fs.writeFileSync(img, seededBytes('other', 4 * 65536));
      const m2 = await backupImage(repo, img, { vmid: 101 });
      expect(await repo.lastVerify()).toBeNull();
      expect(verifyText(null)).toBe('last verify: never');

      // A verify of one backup is not a verify of the repository.
      expect((await repo.verify({ backupId: m2.id })).ok).toBe(true);
      expect(await repo.lastVerify()).toBeNull();
      // Damage one chunk of the second backup, in place.
      const digest = crypto.createHash('sha256').update(seededBytes('other', 4 * 65536).subarray(0, 65536)).digest('hex');
      await flipBlobByte(repo, 'chunk', digest, 1, 0xff);

      const logger = createLogger({ transports: [new transports.Console({ silent: true })] });
      const before = Date.now();
      const last = await runScheduledJob({ repo, logger } as unknown as Services, { kind: 'verify', id: 'verify', schedule: 'monthly', enabled: true });
      expect(last).toMatchObject({ ok: false, backups: 2, okBackups: 1, badBackups: 1, problems: 1 });
      expect(Date.parse((last as { time: string }).time)).toBeGreaterThanOrEqual(before - 1000);
      expect(await repo.lastVerify()).toEqual(last);
      expect(fs.existsSync(path.join(repo.dir, '.bad', `chunk-${digest}`))).toBe(true);
      expect(verifyText(await repo.lastVerify())).toMatch(/^last verify: \S+ FAILED: 1 backup\(s\) OK, 1 bad \(1 problem\(s\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
