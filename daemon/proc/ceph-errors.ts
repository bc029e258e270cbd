/**
 * Error codes of calls into Ceph (the `rbd` CLI). Ceph clients wait forever while the cluster is
 * down, so every call has a bound: its expiry is its own code, apart from a refusal by Ceph.
 */
import { defineError } from '../../shared/errors/cbt-error';

/** A Ceph command did not finish within its bound (cluster down or unreachable?); it was killed. */
export const CephTimeoutError = defineError<{ command: string; timeoutMs: number }>(
  'CBT_CEPH_TIMEOUT',
  (d) => `${d.command} did not finish within ${d.timeoutMs} ms (is the Ceph cluster reachable?); it was killed`,
);

/** A Ceph command exited with an error; `stderr` is its own message. */
export const CephCommandFailedError = defineError<{ command: string; exitCode: number | null; stderr: string }>(
  'CBT_CEPH_COMMAND_FAILED',
  (d) => `${d.command} failed${d.exitCode === null ? '' : ` (exit ${d.exitCode})`}: ${d.stderr}`,
);

/** A Ceph command printed something that is not the JSON it prints on success. */
export const CephOutputError = defineError<{ command: string; output: string }>(
  'CBT_CEPH_OUTPUT',
  (d) => `${d.command} printed unexpected output: ${d.output}`,
);
