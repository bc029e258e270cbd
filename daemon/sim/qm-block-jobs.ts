/**
 * Waiting on QEMU jobs the way qemu-server's monitors do (PVE/QemuServer/BlockJob.pm polls
 * `query-block-jobs` once a second; here every 100 ms): a block job until it is `ready` (mirror),
 * a block job until it is gone (completed), and a `snapshot-save`/`snapshot-delete` job until it
 * has `concluded`, dismissing it and reporting its error. Each QMP session is short, so the socket
 * stays free for qemu-server's and pve-cbt's own clients.
 */
import type { SimVm } from './pve-node';
import { SimQmError } from './qm-errors';

const POLL_MS = 100;
const WAIT_MS = 60_000;

interface BlockJobInfo {
  device: string;
  ready: boolean;
  status: string;
  offset: number;
  len: number;
}

interface JobInfo {
  id: string;
  status: string;
  error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitBlockJob(vm: SimVm, command: string, jobId: string, until: 'ready' | 'gone'): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const jobs = await vm.qmp((q) => q.execute<BlockJobInfo[]>('query-block-jobs'));
    const job = jobs.find((j) => j.device === jobId);
    if (until === 'gone' && !job) return;
    if (until === 'ready' && !job) throw SimQmError({ vmid: vm.vmid, command, reason: `block job ${jobId} vanished before it was ready` });
    if (until === 'ready' && job?.ready) return;
    if (Date.now() > deadline) throw SimQmError({ vmid: vm.vmid, command, reason: `block job ${jobId} not ${until} after ${WAIT_MS} ms (${job?.status})` });
    await sleep(POLL_MS);
  }
}

/** Waits for a job of `query-jobs` to conclude, dismisses it, and throws its error if it had one. */
export async function waitConcludedJob(vm: SimVm, command: string, jobId: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const job = (await vm.qmp((q) => q.execute<JobInfo[]>('query-jobs'))).find((j) => j.id === jobId);
    if (!job) throw SimQmError({ vmid: vm.vmid, command, reason: `job ${jobId} vanished` });
    if (job.status === 'concluded') {
      await vm.qmp((q) => q.execute('job-dismiss', { id: jobId }));
      if (job.error) throw SimQmError({ vmid: vm.vmid, command, reason: job.error });
      return;
    }
    if (Date.now() > deadline) throw SimQmError({ vmid: vm.vmid, command, reason: `job ${jobId} not concluded after ${WAIT_MS} ms (${job.status})` });
    await sleep(POLL_MS);
  }
}
