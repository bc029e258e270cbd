import { parseGuestArgs, parseVzdumpArgs } from '../../hooks/hook-args';

describe('hook arguments', () => {
  test.each([
    [['100', 'pre-start'], { ok: true, vmid: 100, phase: 'pre-start' }],
    [['999999999', 'post-stop'], { ok: true, vmid: 999999999, phase: 'post-stop' }],
    [['100', 'pre-explode'], { ok: false, vmid: 100, error: 'unknown phase "pre-explode"' }],
    [['0100', 'pre-start'], { ok: false, error: 'bad VMID "0100"' }],
    [['1000000000', 'pre-start'], { ok: false, error: 'bad VMID "1000000000"' }],
    [['abc', 'pre-start'], { ok: false, error: 'bad VMID "abc"' }],
    [['100'], { ok: false, error: 'expected arguments VMID PHASE, got 1 argument(s)' }],
    [['100', 'pre-start', 'x'], { ok: false, error: 'expected arguments VMID PHASE, got 3 argument(s)' }],
    [[], { ok: false, error: 'expected arguments VMID PHASE, got 0 argument(s)' }],
    [['100', 'pre-\u0007start'.repeat(10)], { ok: false, vmid: 100, error: `unknown phase "${'pre-?start'.repeat(4)}..."` }],
  ])('guest %j', (argv, expected) => {
    expect(parseGuestArgs(argv)).toEqual(expected);
  });

  test.each([
    [['job-start'], { ok: true, phase: 'job-start' }],
    [['job-abort'], { ok: true, phase: 'job-abort' }],
    [['backup-start', 'snapshot', '100'], { ok: true, vmid: 100, phase: 'backup-start', mode: 'snapshot' }],
    [['pre-restart', 'stop', '105'], { ok: true, vmid: 105, phase: 'pre-restart', mode: 'stop' }],
    [['log-end', 'suspend', '7'], { ok: true, vmid: 7, phase: 'log-end', mode: 'suspend' }],
    [['backup-start'], { ok: false, error: 'unknown job phase "backup-start"' }],
    [['job-start', 'stop', '100'], { ok: false, vmid: 100, error: 'unknown phase "job-start"' }],
    [['backup-start', 'fast', '100'], { ok: false, vmid: 100, error: 'unknown mode "fast"' }],
    [['backup-start', 'stop', 'x'], { ok: false, error: 'bad VMID "x"' }],
    [['backup-start', 'stop'], { ok: false, error: 'expected arguments PHASE or PHASE MODE VMID, got 2 argument(s)' }],
    [[], { ok: false, error: 'expected arguments PHASE or PHASE MODE VMID, got 0 argument(s)' }],
  ])('vzdump %j', (argv, expected) => {
    expect(parseVzdumpArgs(argv)).toEqual(expected);
  });
});
