/** "vzdump busy" says what is going on, not `waited 0 ms` (the default is not to wait). */
import { BackupVzdumpBusyError } from '../../../daemon/backup/backup-errors';

test.each<[number, string]>([
  [0, 'VM 101 is being backed up by vzdump; pve-cbt does not start a backup meanwhile'],
  [12, 'VM 101 is being backed up by vzdump; pve-cbt does not start a backup meanwhile'],
  [30_400, 'VM 101 is being backed up by vzdump (still after waiting 30 s); pve-cbt does not start a backup meanwhile'],
])('waited %i ms', (waitedMs, message) => {
  const err = BackupVzdumpBusyError({ vmid: 101, waitedMs });
  expect(err.message).toBe(message);
  expect(err.details.waitedMs).toBe(waitedMs);
});
