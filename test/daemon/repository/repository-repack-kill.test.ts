import { killHard, killRig, startMaintenanceChild } from './kill-child-helpers';
import { expectKeptRestore, packFiles, sparsePackRepo } from './repack-fixture';

/**
 * kill -9 of a GC that repacks, at three points: in the middle of the copy (a new pack written,
 * not sealed), with the new packs sealed and no old pack deleted yet, and in the middle of the
 * deletions (one old pack gone, others left). Each time: every backup is listed, restores byte for
 * byte and verifies, right after the kill and after the next GC, which leaves no unsealed pack
 * and no pack index set aside; a third GC has nothing left to repack.
 */
const SEAL = 128 * 1024;

describe('kill -9 of a repacking GC', () => {
  const rig = killRig();

  it.each(['repack copy#2', 'repack sealed', 'remove packs#2'])('killed at %s', async (point) => {
    const { repoDir, kept } = await sparsePackRepo(rig.dir, `at-${point.replace(/\W/g, '-')}`);
    const before = packFiles(repoDir).sealed;
    const { child, reached } = startMaintenanceChild(rig, repoDir, 'gc', point, SEAL);
    expect(await reached).toBe(`AT ${point}`);
    await killHard(child);

    // The kill hit the state the point names.
    const killed = packFiles(repoDir);
    const oldLeft = before.filter((id) => killed.sealed.includes(id));
    const added = killed.sealed.filter((id) => !before.includes(id));
    expect(added.length).toBeGreaterThan(0);
    if (point === 'repack copy#2') expect([oldLeft.length, killed.unsealed.length]).toEqual([before.length, 1]);
    if (point === 'repack sealed') expect([oldLeft.length, killed.unsealed.length]).toEqual([before.length, 0]);
    if (point === 'remove packs#2') expect(oldLeft.length).toBe(before.length - 1);

    await expectKeptRestore(repoDir, kept, rig.dir);
    const repo = await expectKeptRestore(repoDir, kept, rig.dir);
    await repo.gc({ graceMs: 0, repackSealBytes: SEAL });
    const files = packFiles(repoDir);
    expect(files.unsealed).toEqual([]);
    expect(files.aside).toEqual([]);
    const again = await (await expectKeptRestore(repoDir, kept, rig.dir)).gc({ graceMs: 0, repackSealBytes: SEAL });
    expect(again.packsRepacked).toBe(0);
    await expectKeptRestore(repoDir, kept, rig.dir);
  });
});
