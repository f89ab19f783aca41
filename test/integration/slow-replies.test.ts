/**
 * request_timeout measures a stuck connection, not a slow one: a reply that keeps arriving,
 * however long it takes in all, is progress. A scripted server dribbles one large reply, which no
 * real server does on demand.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** Answers PING at once and every other request with a 2,000-byte value sent 100 bytes every 40 ms. */
async function dribblingServer(): Promise<number> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      const text = chunk.toString('latin1');
      for (const _ping of text.matchAll(/PING/g)) socket.write('+PONG\r\n');
      if (!text.includes('GET')) return;
      socket.write('$2000\r\n');
      let sent = 0;
      const timer = setInterval(() => {
        socket.write('v'.repeat(100));
        sent += 100;
        if (sent === 2000) {
          clearInterval(timer);
          socket.write('\r\n');
        }
      }, 40);
      socket.on('close', () => clearInterval(timer));
    });
  });
  cleanup.add(server, (s) => new Promise<void>((resolve) => s.close(() => resolve())));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

it('does not time out a reply that takes longer than request_timeout to arrive but keeps arriving', async () => {
  const port = await dribblingServer();
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${port}`], { connections: { min: 1, max: 1 }, request_timeout: '300ms', heartbeat: false }),
    (p) => p.close(),
  );
  await waitReady(proxy);
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  const started = performance.now();
  expect(await client.call('GET', 'big')).toBe('v'.repeat(2000));
  expect(performance.now() - started).toBeGreaterThan(600); // it really took longer than the deadline
  expect(proxy.stats()[0].servers[0].counters.connectionsClosed.request_timeout).toBe(0);
});
