/**
 * Clients on a unix socket get what TCP clients get when poolside must cut them: Node refuses an
 * RST on a unix socket (resetAndDestroy throws ERR_INVALID_HANDLE_TYPE there), and that throw once
 * took the whole process down from an output limit. Their CLIENT LIST entry and /stats peer say
 * unix.
 */
import path from 'node:path';
import net from 'node:net';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { startProxy, waitReady } from '../helpers/proxy.js';
import { encode, RawClient } from '../helpers/resp-client.js';
import { RedisServer, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('unix socket clients', () => {
  it('resets a unix-socket client past clients.output_buffer.hard, and keeps serving the others', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const dir = tempDir();
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'p.sock');
    const proxy = cleanup.add(
      await startProxy([redis.address], { listen: [`unix:${socketPath}`], clients: { output_buffer: { soft: '1mb', hard: '2mb', soft_seconds: 1 } } }),
      (p) => p.close(),
    );
    await waitReady(proxy);
    const other = cleanup.add(await RawClient.connect({ path: socketPath }), (c) => c.destroy());
    expect(await other.call('SET', 'v', Buffer.alloc(512 * 1024, 'x'))).toBe('OK');
    // Never reads, asks for 64 × 512 KB: past the hard limit behind the reply being written.
    const hog = net.connect({ path: socketPath });
    cleanup.defer(() => hog.destroy());
    hog.on('error', () => {});
    hog.pause();
    await new Promise((resolve) => hog.once('connect', resolve));
    hog.write(Buffer.concat(Array.from({ length: 64 }, () => encode('GET', 'v'))));
    await waitFor(() => proxy.pools.get('p')?.counters.clientsOverflowed === 1, 'the hog reset', 10_000);
    expect(await other.call('PING')).toBe('PONG');
    // As Redis shows a unix-socket client: its socket's path, port 0.
    expect(String(await other.call('CLIENT', 'LIST'))).toContain(`addr=${socketPath}:0 laddr=${socketPath}:0 `);
    expect(proxy.clientList().clients.map((c) => c.peer)).toEqual(['unix']);
  });
});
