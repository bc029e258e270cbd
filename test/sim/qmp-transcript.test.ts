import { usePveNode } from './jest-cleanup';

const sim = usePveNode();

describe('QMP transcript of a simulator VM (printed after a failed test)', () => {
  it('records the commands sent, the replies and the disconnect, oldest first, and keeps the last 200 lines', async () => {
    const vm = await sim.node.addVm({ vmid: 640, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
    await vm.start();
    await vm.qmp((q) => q.execute('query-status'));
    const once = sim.node.qmpTranscripts().split('\n');
    expect(once[0]).toBe(`QMP transcript of VM 640 (${vm.qmpPath}), last ${once.length - 1} lines:`);
    const sent = once.findIndex((l) => / -> \{"execute":"query-status","id":"cbt-\d+"\}$/.test(l));
    expect(sent).toBeGreaterThan(0);
    expect(once.slice(sent + 1).some((l) => / <- \{"return": \{.*"status": "running"/.test(l))).toBe(true);
    expect(once[once.length - 1]).toMatch(/ -- disconnected: closed by client$/);

    await vm.qmp(async (q) => {
      for (let i = 0; i < 150; i++) await q.execute('query-name');
    });
    const lines = sim.node.qmpTranscripts().split('\n').slice(1);
    expect(lines).toHaveLength(200);
    expect(lines.join('\n')).not.toMatch(/query-status/);
    expect(lines[lines.length - 1]).toMatch(/ -- disconnected: closed by client$/);
    expect(lines.filter((l) => / -> \{"execute":"query-name"/.test(l)).length).toBeGreaterThanOrEqual(99);
  });
});
