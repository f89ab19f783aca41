/**
 * Running the command-line checkers the deploy/ tests use (promtool, yamllint, systemd-analyze):
 * a missing one fails the test with the Debian package to install (`.ci/run` installs them).
 */
import { spawn } from 'node:child_process';
import { requireBinary } from './servers.js';

export interface ToolResult {
  code: number | null;
  /** stdout and stderr, interleaved as they came. */
  output: string;
}

/** Runs `name args…` in `cwd` to its end; resolves with its exit code and output. */
export function runTool(name: string, debianPackage: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ToolResult> {
  const bin = requireBinary(name, debianPackage);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}
