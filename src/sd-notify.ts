/**
 * Readiness for systemd's `Type=notify`: once every listener is bound, tell the service manager
 * that poolside is ready, so units ordered `After=poolside.service` (PHP-FPM) start only when the
 * socket accepts.
 *
 * The protocol is one datagram (`READY=1`) on the AF_UNIX SOCK_DGRAM socket named by
 * `NOTIFY_SOCKET`. Node.js cannot send datagrams on unix sockets (node:dgram is UDP only) without
 * a native addon, so poolside runs systemd's own `systemd-notify --ready` once, which is on every
 * host that has systemd. The unit needs `NotifyAccess=all` (the sender is a child of the main
 * process), and systemd-notify waits until the manager has processed the message (its barrier,
 * on unless `--no-block`; Debian 12's systemd 252 has it), so the message cannot be lost when the
 * short-lived sender exits first.
 *
 * Without `NOTIFY_SOCKET` (not under systemd, or a unit of another type) this does nothing.
 */
import { spawn } from 'node:child_process';
import type { Logger } from './util/log.js';

export interface NotifyOptions {
  /** The process's environment: NOTIFY_SOCKET, and what systemd-notify runs with. */
  env: NodeJS.ProcessEnv;
  /** The pid systemd should treat as the main process: poolside's own. */
  pid: number;
  /** Which program to run; tests point it elsewhere. */
  command?: string;
}

/**
 * Sends READY=1 when poolside runs under a `Type=notify` unit; logs (does not throw) when it
 * cannot, since systemd then fails the start at `TimeoutStartSec` and says why itself.
 * Resolves when the notification was delivered, failed, or was not needed.
 */
export function notifyReady(log: Logger, options: NotifyOptions): Promise<void> {
  const { env, pid } = options;
  if (env.NOTIFY_SOCKET === undefined || env.NOTIFY_SOCKET === '') return Promise.resolve();
  const command = options.command ?? 'systemd-notify';
  return new Promise((resolve) => {
    const child = spawn(command, ['--ready', `--pid=${pid}`, '--status=poolside is accepting clients'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let failed = false;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (err) => {
      // Not started (ENOENT): 'close' follows, and says nothing more.
      failed = true;
      log.error('cannot tell systemd that poolside is ready', { reason: 'sd_notify_failed', error: `${command}: ${err.message}` });
    });
    child.once('close', (code, signal) => {
      if (code === 0) log.debug('told systemd that poolside is ready', { notify_socket: env.NOTIFY_SOCKET });
      else if (!failed) log.error('cannot tell systemd that poolside is ready', { reason: 'sd_notify_failed', exit_code: code, signal, error: stderr.trim() });
      resolve();
    });
  });
}
