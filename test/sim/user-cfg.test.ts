/** The simulator's user.cfg has PVE's layout, and pve-cbt's pool reader reads it back. */
import { renderUserCfg } from '../../daemon/sim/user-cfg';
import { poolMembers } from '../../daemon/service/select-vms';
import { poolDeclared } from '../../daemon/service/backup-selection';

test('pools in name order, VMIDs and storages sorted as strings (Perl sort keys), blank lines as PVE writes them', () => {
  const text = renderUserCfg(new Map([['prod', { vmids: [1000, 101, 99999], storages: ['local-lvm', 'local'] }], ['empty', { vmids: [] }]]));
  expect(text).toBe('user:root@pam:1:0:::root@localhost:::\n\npool:empty::::\npool:prod::1000,101,99999:local,local-lvm:\n\n');
  expect(poolMembers(text, 'prod')).toEqual([1000, 101, 99999]);
  expect(poolDeclared(text, 'empty')).toBe(true);
  expect(poolMembers(text, 'empty')).toEqual([]);
});

test('a pool name PVE refuses is refused', () => {
  expect(() => renderUserCfg(new Map([['bad:name', { vmids: [101] }]]))).toThrow(expect.objectContaining({ code: 'CBT_SIM_SPEC' }));
});
