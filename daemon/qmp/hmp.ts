/**
 * Human monitor (HMP) commands tunnelled through QMP's `human-monitor-command`. HMP reports most
 * failures as text in the returned string rather than as a QMP error, so callers check the output.
 */
import type { QmpClient } from './qmp-client';

export function hmp(qmp: QmpClient, commandLine: string): Promise<string> {
  return qmp.execute<string>('human-monitor-command', { 'command-line': commandLine });
}
