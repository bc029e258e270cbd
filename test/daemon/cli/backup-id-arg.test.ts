import { InvalidArgumentError } from 'commander';
import { COMMANDS } from '../../../daemon/cli/registry';
import { parseBackupIdArg } from '../../../daemon/cli/option-parsers';
import { displayBackupId, displayBackupIdsIn, normalizeBackupId } from '../../../daemon/repository/backup-id';

describe('backup ids as typed', () => {
  test.each([
    ['vm/101/2026-11-25T02:00:03Z', 'vm/101/2026-11-25T02_00_03Z'],
    ['vm/101/2026-11-25T02_00_03Z', 'vm/101/2026-11-25T02_00_03Z'],
    ['vm/999999999/2026-01-01T00:00:00Z', 'vm/999999999/2026-01-01T00_00_00Z'],
  ])('%s -> %s', (raw, id) => expect(normalizeBackupId(raw)).toBe(id));

  test.each(['vm/101/2026-11-25T02:00:03', 'ct/101/2026-11-25T02:00:03Z', 'vm/0101/2026-11-25T02:00:03Z', 'vm/101/2026-13-45T02:00:03Z', '../etc', ''])(
    'rejects %j with CBT_REPO_BAD_BACKUP_ID, and as a usage error on the command line',
    (raw) => {
      expect(() => normalizeBackupId(raw)).toThrow(expect.objectContaining({ code: 'CBT_REPO_BAD_BACKUP_ID' }));
      expect(() => parseBackupIdArg(raw)).toThrow(InvalidArgumentError);
    },
  );

  test('every example id in the help is accepted', () => {
    const ids = COMMANDS.flatMap((c) => (c.examples ?? []).flatMap((e) => e.match(/vm\/\S+/g) ?? []));
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) expect(() => parseBackupIdArg(id)).not.toThrow();
  });
});

describe('backup ids as printed', () => {
  test.each([
    ['vm/101/2026-11-25T02_00_03Z', 'vm/101/2026-11-25T02:00:03Z'],
    ['vm/101/2026-11-25T02:00:03Z', 'vm/101/2026-11-25T02:00:03Z'], // already printed form
    ['not an id', 'not an id'],
  ])('%s -> %s, and back to the folder form', (id, shown) => {
    expect(displayBackupId(id)).toBe(shown);
    if (shown.startsWith('vm/')) expect(normalizeBackupId(shown)).toBe(id.startsWith('vm/') ? normalizeBackupId(id) : id);
  });

  test('ids inside a message are shown in the PBS form, other underscores left alone', () => {
    expect(displayBackupIdsIn('backup vm/101/2026-11-25T02_00_03Z has no disk scsi1 (base vm/7001/2026-01-01T00_00_00Z) in my_repo')).toBe(
      'backup vm/101/2026-11-25T02:00:03Z has no disk scsi1 (base vm/7001/2026-01-01T00:00:00Z) in my_repo',
    );
  });
});
