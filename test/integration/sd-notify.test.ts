/**
 * Type=notify readiness (src/sd-notify.ts): the real `poolside --config` process, started with
 * NOTIFY_SOCKET pointing at a datagram socket this test reads (as systemd would), sends READY=1
 * with its own pid once its listener accepts, through systemd's own systemd-notify.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notifyReady } from '../../src/sd-notify.js';
import { Cleanup } from '../helpers/cleanup.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { quietLog } from '../helpers/proxy.js';
import { freePort, requireBinary, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * A stand-in for systemd's notify socket: Node.js cannot bind AF_UNIX SOCK_DGRAM, Python can.
 * It prints each datagram as one line and closes the descriptors sent with it, which is what
 * releases systemd-notify's barrier wait.
 */
const RECEIVER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(data.decode().replace("\\n", " ").strip(), flush=True)
`;

function started(child: ChildProcess): ChildProcess {
  return cleanup.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
}

async function notifySocket(dir: string): Promise<{ path: string; lines: () => string[] }> {
  const python = requireBinary('python3', 'python3');
  requireBinary('systemd-notify', 'systemd');
  const socketPath = path.join(dir, 'notify.sock');
  const receiver = started(spawn(python, ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  receiver.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  receiver.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(() => output.startsWith('listening\n'), `the notify socket receiver to listen (output: ${output})`, 10_000);
  return { path: socketPath, lines: () => output.split('\n').slice(1).filter((l) => l !== '') };
}

describe('sd_notify readiness', () => {
  it('poolside --config sends READY=1 with its pid once its listener accepts', async () => {
    const dir = tempDir('poolside-notify-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const notify = await notifySocket(dir);
    const port = await freePort();
    const deadPort = await freePort();
    const config = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(config, ['admin: false', 'pools:', '  cache:', '    protocol: redis', `    listen: 127.0.0.1:${port}`, `    servers: ["127.0.0.1:${deadPort}"]`, ''].join('\n'));

    const { pid, stderr } = spawnPoolside(cleanup, ['--config', config], { ...process.env, NOTIFY_SOCKET: notify.path });
    await waitFor(() => notify.lines().some((l) => l.startsWith('READY=1')), 'READY=1 on the notify socket', 20_000);

    const ready = notify.lines().find((l) => l.startsWith('READY=1')) ?? '';
    expect(ready).toContain(`MAINPID=${pid}`);
    expect(ready).toContain('STATUS=poolside is accepting clients');
    // Ready means the listener is bound: a client connects at once.
    const socket = net.connect(port, '127.0.0.1');
    cleanup.add(socket, (s) => s.destroy());
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    expect(stderr()).not.toContain('sd_notify_failed');
  });

  it('does nothing without NOTIFY_SOCKET', async () => {
    const log = quietLog();
    await notifyReady(log, { env: {}, pid: 1, command: '/nonexistent/systemd-notify' });
    expect(log.lines).toEqual([]);
  });

  it('logs an error, and does not throw, when the notification cannot be sent', async () => {
    const log = quietLog();
    await notifyReady(log, { env: { NOTIFY_SOCKET: '/nonexistent/notify.sock' }, pid: 1, command: '/nonexistent/systemd-notify' });
    expect(log.lines.map((l) => [l.level, l.fields.reason])).toEqual([['error', 'sd_notify_failed']]);

    const dir = tempDir('poolside-notify-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const refused = quietLog();
    await notifyReady(refused, { env: { ...process.env, NOTIFY_SOCKET: path.join(dir, 'nobody-listens.sock') }, pid: process.pid });
    expect(refused.lines).toHaveLength(1);
    expect(refused.lines[0].fields).toMatchObject({ reason: 'sd_notify_failed', exit_code: 1 });
  });
});
