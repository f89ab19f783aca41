/**
 * client_auth: poolside checks the credentials clients send and answers AUTH itself, so clients
 * that authenticate on every connect share pooled connections instead of each pinning one.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { encode, RawClient, RespError } from '../helpers/resp-client.js';
import { RedisServer, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

function secretFile(content: string): string {
  const dir = cleanup.add(tempDir('poolside-auth-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
  const file = path.join(dir, 'pw');
  fs.writeFileSync(file, `${content}\n`);
  return file;
}

async function setup(clientAuth: Record<string, unknown>, serverPassword: string | null = null): Promise<{ proxy: Proxy; port: number; redis: RedisServer }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  let server: string | Record<string, unknown> = redis.address;
  if (serverPassword !== null) {
    await redis.command('CONFIG', 'SET', 'requirepass', serverPassword);
    server = { address: redis.address, password_file: secretFile(serverPassword) };
  }
  const proxy = cleanup.add(await startProxy([], { servers: [server], client_auth: clientAuth }), (p) => p.close());
  await waitReady(proxy);
  return { proxy, port: portOf(proxy), redis };
}

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

const exclusiveBorrowed = (proxy: Proxy): number => proxy.stats()[0].servers[0].exclusive.borrowed;

describe('client_auth', () => {
  it('refuses commands before AUTH, answers AUTH itself, and then serves the client on shared connections', async () => {
    const { proxy, port } = await setup({ password_file: secretFile('s3cret') });
    const client = await raw(port);
    expect(await client.call('GET', 'k')).toEqual(new RespError('NOAUTH Authentication required.'));
    expect(await client.call('AUTH', 'wrong')).toEqual(new RespError('WRONGPASS invalid username-password pair or user is disabled.'));
    expect(await client.call('SET', 'k', 'v')).toEqual(new RespError('NOAUTH Authentication required.'));
    expect(await client.call('AUTH', 's3cret')).toBe('OK');
    expect(await client.call('SET', 'k', 'v')).toBe('OK');
    expect(await client.call('GET', 'k')).toBe('v');
    expect(await client.call('AUTH', 'default', 's3cret')).toBe('OK');
    expect(exclusiveBorrowed(proxy)).toBe(0);
    expect(proxy.pools.get('p')?.counters.authFailures).toBe(1);
    expect(proxy.pools.get('p')?.counters.pins.size).toBe(0);
  });

  it('logs a client out on RESET, as requirepass does: what follows needs AUTH again', async () => {
    const { port } = await setup({ password_file: secretFile('pw') });
    const client = await raw(port);
    client.write(Buffer.concat([encode('AUTH', 'pw'), encode('RESET'), encode('GET', 'a'), encode('AUTH', 'pw'), encode('GET', 'a')]));
    expect(await client.take(5)).toEqual(['OK', 'RESET', new RespError('NOAUTH Authentication required.'), 'OK', null]);
  });

  it('keeps pipelined requests after AUTH in order and authenticated', async () => {
    const { port } = await setup({ password_file: secretFile('pw') });
    const client = await raw(port);
    client.write(Buffer.concat([encode('PING'), encode('AUTH', 'pw'), encode('SET', 'a', '1'), encode('GET', 'a')]));
    expect(await client.take(4)).toEqual([new RespError('NOAUTH Authentication required.'), 'OK', 'OK', '1']);
  });

  it('serves 50 ioredis clients that authenticate on connect without pinning one server connection each', async () => {
    const { proxy, port } = await setup({ password_file: secretFile('pw') });
    const clients = await Promise.all(Array.from({ length: 50 }, () => connectRedis(cleanup, port, { password: 'pw' })));
    await Promise.all(clients.map((c, i) => c.set(`auth:${i}`, String(i))));
    expect(await Promise.all(clients.map((c, i) => c.get(`auth:${i}`)))).toEqual(clients.map((_, i) => String(i)));
    expect(exclusiveBorrowed(proxy)).toBe(0);
    const [server] = proxy.stats()[0].servers;
    expect(server.counters.connectionsOpened).toBeLessThanOrEqual(8);
  });

  it('checks the username when client_auth names one', async () => {
    const { port } = await setup({ username: 'app', password_file: secretFile('pw') });
    const client = await raw(port);
    expect(await client.call('AUTH', 'pw')).toEqual(new RespError('WRONGPASS invalid username-password pair or user is disabled.'));
    expect(await client.call('AUTH', 'other', 'pw')).toEqual(new RespError('WRONGPASS invalid username-password pair or user is disabled.'));
    expect(await client.call('AUTH', 'app', 'pw')).toBe('OK');
    expect(await client.call('PING')).toBe('PONG');
  });

  it('authenticates HELLO 3 AUTH itself and runs the HELLO without the credentials', async () => {
    const { port } = await setup({ password_file: secretFile('pw') });
    // A plain socket: the RESP2 test client would refuse the RESP3 map.
    const socket = cleanup.add(net.connect({ host: '127.0.0.1', port }), (s) => s.destroy());
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.write(encode('HELLO', '3', 'AUTH', 'default', 'nope'));
    await waitFor(() => received.endsWith('\r\n'), 'the refusal');
    expect(received).toBe('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
    received = '';
    socket.write(encode('HELLO', '3', 'AUTH', 'default', 'pw'));
    await waitFor(() => received.includes('proto'), 'the HELLO map');
    expect(received.startsWith('%')).toBe(true);
    received = '';
    socket.write(encode('SET', 'h', '1'));
    await waitFor(() => received.endsWith('\r\n'), 'SET');
    expect(received).toBe('+OK\r\n');
  });

  it('authenticates clients with its own password while pooled connections use the server password', async () => {
    const { proxy, port, redis } = await setup({ password_file: secretFile('client-pw') }, 'server-pw');
    const client = await raw(port);
    expect(await client.call('AUTH', 'server-pw')).toEqual(new RespError('WRONGPASS invalid username-password pair or user is disabled.'));
    expect(await client.call('AUTH', 'client-pw')).toBe('OK');
    expect(await client.call('SET', 'both', 'yes')).toBe('OK');
    expect(await redis.command('AUTH', 'server-pw')).toBe('+OK\r\n');
    expect(proxy.stats()[0].servers[0].health.kind).toBe('up');
  });
});
