/**
 * poolside's real command line (src/main.ts through tsx) as a child process, with its log
 * captured: for the tests about what only a process shows (signals, exit codes, its own RSS,
 * systemd readiness). Killed at cleanup if it is still running.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Cleanup } from './cleanup.js';

export interface PoolsideProcess {
  child: ChildProcess;
  pid: number;
  /** Everything it has written to stderr (its JSON log) so far. */
  stderr(): string;
  /** Its exit code (null when a signal ended it). */
  exited: Promise<number | null>;
}

export function spawnPoolside(cleanup: Cleanup, args: string[], env: NodeJS.ProcessEnv = process.env): PoolsideProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/main.ts'), ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanup.defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  });
  if (child.pid === undefined) throw new Error('poolside did not start');
  return { child, pid: child.pid, stderr: () => log, exited };
}
