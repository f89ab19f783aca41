/**
 * memcached's limits from the protocol, through poolside: max_item_size is checked from the
 * command line before anything is buffered. A client streaming a 200 MB data block costs
 * poolside's memory nothing (it is counted away as it arrives), is answered as memcached answers
 * it, and stays connected; noreply hides even that answer, as memcached does.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc } from '../helpers/mc-client.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { startMemcachedAndProxy } from '../helpers/proxy.js';
import { startMemcached, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const MB = 1 << 20;

/** A kB figure from /proc/PID/status (VmRSS now, VmHWM the peak so far), in bytes. */
function memory(field: 'VmRSS' | 'VmHWM', pid: number): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Writes `bytes` of 'x' to the socket in 1 MB pieces, waiting for each to drain. */
async function stream(socket: net.Socket, bytes: number): Promise<void> {
  const piece = Buffer.alloc(MB, 0x78);
  for (let left = bytes; left > 0; left -= MB) {
    const chunk = left >= MB ? piece : piece.subarray(0, left);
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
}

describe('memcached max_item_size', () => {
  it('answers a block larger than max_item_size as memcached does, holding none of it, and keeps the client', async () => {
    const { port } = await startMemcachedAndProxy(cleanup, { max_item_size: '1kb' });
    const c = await connectMc(cleanup, port);
    const big = 'y'.repeat(5000);
    c.write(`set a 0 0 5000\r\n${big}\r\nms a 5000 q\r\n${big}\r\nset a 0 0 5000 noreply\r\n${big}\r\nset a 0 0 3\r\nabc\r\nget a\r\n`);
    expect(await c.take(4)).toEqual([
      'SERVER_ERROR object too large for cache\r\n',
      'SERVER_ERROR object too large for cache\r\n', // q never hides an error
      'STORED\r\n',
      'VALUE a 0 3\r\nabc\r\nEND\r\n',
    ]);
  });

  it('counts away a 200 MB data block streamed by a client with bounded memory', async () => {
    const memcached = await startMemcached(cleanup);
    const dir = tempDir();
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'p.sock');
    const file = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(file, ['admin: false', 'pools:', '  p:', '    protocol: memcached', `    listen: ["unix:${socketPath}"]`, `    servers: ["${memcached.address}"]`, ''].join('\n'));
    const poolside = spawnPoolside(cleanup, ['--config', file]);
    await waitFor(() => fs.existsSync(socketPath), 'poolside to listen', 20_000);
    const c = await connectMc(cleanup, { path: socketPath });
    expect(await c.call('version\r\n')).toMatch(/^VERSION /);

    fs.writeFileSync(`/proc/${poolside.pid}/clear_refs`, '5');
    const before = memory('VmRSS', poolside.pid);
    const size = 200 * MB;
    c.write(`set big 0 0 ${size}\r\n`);
    await stream(c.socket, size);
    c.write('\r\nget big\r\n');
    expect(await c.take(2, 60_000)).toEqual(['SERVER_ERROR object too large for cache\r\n', 'END\r\n']);
    const grew = memory('VmHWM', poolside.pid) - before;
    console.log(`200 MB data block counted away: poolside peak RSS grew ${(grew / MB).toFixed(1)} MB`);
    // ~31 MB measured: the reads not yet collected and the runtime, whatever the block's size (held,
    // it would be 200 MB and more).
    expect(grew).toBeLessThan(60 * MB);
  }, 90_000);

  it('streams a large value through (memcached -I 16m): in order with small replies around it, whole for a quiet mg', async () => {
    const { port } = await startMemcachedAndProxy(cleanup, { max_item_size: '16mb', connections: { min: 1, max: 1 } }, ['-I', '16m']);
    const c = await connectMc(cleanup, port);
    const other = await connectMc(cleanup, port);
    const size = 10 * MB;
    c.write(`set big 0 0 ${size}\r\n`);
    await stream(c.socket, size);
    c.write('\r\n');
    expect(await c.reply(20_000)).toBe('STORED\r\n');
    c.write('set small 0 0 1\r\ns\r\nget big\r\nget small\r\nmg big v q\r\nmg missing v q\r\nmn\r\n');
    // Another client on the same shared connection gets its answers in order meanwhile.
    other.write('get small\r\nmn\r\n');
    const [stored, big, small, quiet, mn] = await c.take(5, 30_000);
    expect(stored).toBe('STORED\r\n');
    expect(big.length).toBe(`VALUE big 0 ${size}\r\n`.length + size + '\r\nEND\r\n'.length);
    expect(big.startsWith(`VALUE big 0 ${size}\r\nxxx`) && big.endsWith('x\r\nEND\r\n')).toBe(true);
    expect(small).toBe('VALUE small 0 1\r\ns\r\nEND\r\n');
    expect(quiet.length).toBe(`VA ${size}\r\n`.length + size + 2);
    expect(mn).toBe('MN\r\n');
    expect(await other.take(2, 30_000)).toEqual([expect.stringMatching(/^(END|VALUE small 0 1\r\ns\r\nEND)\r\n$/), 'MN\r\n']);
  }, 60_000);
});
