/**
 * protocol: framed without request ids streams a large reply to its client as it arrives, as
 * Redis's large bulk strings are: the client has the first megabytes while the server still holds
 * the rest, and gets the whole frame intact.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const BODY = 20 << 20;
const FIRST = 2 << 20;

function frame(body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** A 4-byte-length server that answers any request with a 20 MB frame, its first 2 MB at once and the rest on release(). */
async function holdingServer(body: Buffer): Promise<{ port: number; release: () => void }> {
  const reply = frame(body);
  const held: net.Socket[] = [];
  let released = false;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    let seen = 0;
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      // One 4-byte-framed request with a 1-byte body.
      if (seen < 5) return;
      seen -= 5;
      socket.write(reply.subarray(0, 4 + FIRST));
      if (released) socket.write(reply.subarray(4 + FIRST));
      else held.push(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  cleanup.defer(() => held.forEach((s) => s.destroy()));
  return {
    port: (server.address() as net.AddressInfo).port,
    release: () => {
      released = true;
      for (const socket of held.splice(0)) socket.write(reply.subarray(4 + FIRST));
    },
  };
}

describe('framed: large replies stream through', () => {
  it('hands a 20 MB reply on as it arrives, and whole', async () => {
    const body = Buffer.alloc(BODY);
    for (let i = 0; i < BODY; i += 4096) body.writeUInt32BE(i, i);
    const server = await holdingServer(body);
    const proxy = cleanup.add(
      await startProxy([`127.0.0.1:${server.port}`], { protocol: 'framed', framed: { header_size: 4, length: { offset: 0, size: 4 }, max_frame: '64mb' }, connections: { min: 1, max: 1 } }),
      (p) => p.close(),
    );
    await waitReady(proxy);
    const client = net.connect(portOf(proxy), '127.0.0.1');
    cleanup.defer(() => client.destroy());
    const received: Buffer[] = [];
    let bytes = 0;
    client.on('data', (chunk: Buffer) => {
      received.push(chunk);
      bytes += chunk.length;
    });
    client.write(frame(Buffer.from('?')));
    // The server holds 18 MB back: what the client has came through before the frame was whole.
    await waitFor(() => bytes >= FIRST, 'the first 2 MB before the rest is sent', 10_000);
    expect(bytes).toBeLessThan(4 + BODY);
    server.release();
    await waitFor(() => bytes === 4 + BODY, 'the whole reply', 20_000);
    expect(Buffer.concat(received).equals(frame(body))).toBe(true);
  });
});
