import { defineError } from '../../shared/errors/cbt-error';

export const DaemonAlreadyRunningError = defineError<{ lockFile: string; holderPid: number }>(
  'CBT_DAEMON_ALREADY_RUNNING',
  (d) => `another pve-cbt daemon (pid ${d.holderPid}) already runs on this state (${d.lockFile}); nothing was changed`,
);
export const StateDirInsecureError = defineError<{ dir: string; reason: string }>(
  'CBT_STATE_DIR_INSECURE',
  (d) => `state directory ${d.dir} cannot be made private: ${d.reason}`,
);
export const JobInterruptedError = defineError<{ jobId: string; kind: string; vmid: number | null }>(
  'CBT_JOB_INTERRUPTED',
  (d) => `the daemon stopped during ${d.kind} job ${d.jobId}${d.vmid === null ? '' : ` of VM ${d.vmid}`} before it committed anything`,
);
/**
 * The installed app's native SQLite addon was built for another Node.js ABI than the one running
 * (Node.js was upgraded after install): refused at daemon start with the way out, instead of a
 * loader error deep in the catalog.
 */
export const NodeAbiChangedError = defineError<{ recordFile: string; builtModules: string; builtNode: string; runningModules: string; runningNode: string; hint: string }>(
  'CBT_NODE_ABI_CHANGED',
  (d) => `pve-cbt was installed for Node.js ${d.builtNode} (ABI ${d.builtModules}) but runs on Node.js ${d.runningNode} (ABI ${d.runningModules}): its SQLite addon does not load`,
);
