/**
 * Session edges a review found after the merges: a FIN before a blocking command is sent, the
 * affinity count of a request poolside sends for CLIENT UNBLOCK, CLIENT REPLY around AUTH under
 * client_auth, and QUIT behind SUBSCRIBE. Against a real redis-server.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, startRedisAndProxy, waitReady, exclusiveStats } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import { RedisServer, rawCommand, waitFor } from '../helpers/servers.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

const exclusive = exclusiveStats;

/** A proxy whose pool checks client_auth (password s3cret), in front of a real redis-server. */
async function clientAuthProxy(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-auth-'));
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pw');
  fs.writeFileSync(file, 's3cret\n');
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const proxy = cleanup.add(await startProxy([redis.address], { client_auth: { password_file: file } }), (p) => p.close());
  await waitReady(proxy);
  return portOf(proxy);
}

describe('QUIT while subscribed', () => {
  it('SUBSCRIBE then QUIT pipelined: subscribe confirmation, then +OK', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    a.write('*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n*1\r\n$4\r\nQUIT\r\n');
    const replies = await a.take(2, 3000).catch((e: Error) => e.message);
    expect(replies).toEqual([['subscribe', 'ch', 1], 'OK']);
  });

});

describe('a FIN before a blocking command reaches its exclusive connection', () => {
  it('client that sends GET; BLPOP q 0 and closes: the exclusive connection is given back', async () => {
    const { port, proxy, redis } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 } });
    await waitReady(proxy);
    const s = cleanup.add(net.connect(port, '127.0.0.1'), (x) => x.destroy());
    await new Promise((r) => s.once('connect', r));
    s.on('error', () => {});
    // Pipelined, then the client exits (its kernel sends FIN).
    s.end('*2\r\n$3\r\nGET\r\n$1\r\nx\r\n*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n');
    // Like a FIN during the BLPOP: the session is dropped and the slot returned.
    await waitFor(() => proxy.stats()[0].clients === 0 && exclusive(proxy).borrowed === 0, 'the half-closed client dropped');
    expect(/cmd=blpop/.test(await rawCommand(redis.port, ['CLIENT', 'LIST']))).toBe(false);
    // And another client can still get the only exclusive connection.
    const b = await raw(port);
    b.send('BLPOP', 'other', '0.1');
    expect(await b.reply(3000)).toBe(null);
  });
});

describe('CLIENT REPLY around AUTH under client_auth', () => {
  it('CLIENT REPLY SKIP; AUTH; PING: the AUTH reply is skipped, PONG is written', async () => {
    const a = await raw(await clientAuthProxy());
    expect(await a.call('AUTH', 's3cret')).toBe('OK');
    a.send('CLIENT', 'REPLY', 'SKIP');
    a.send('AUTH', 's3cret');
    a.send('PING');
    a.send('ECHO', 'end');
    expect(await a.take(2)).toEqual(['PONG', 'end']);
  });

  it('CLIENT REPLY OFF; AUTH; CLIENT REPLY ON; PING: only PONG is written', async () => {
    const a = await raw(await clientAuthProxy());
    expect(await a.call('AUTH', 's3cret')).toBe('OK');
    a.send('CLIENT', 'REPLY', 'OFF');
    a.send('AUTH', 's3cret');
    a.send('CLIENT', 'REPLY', 'ON');
    a.send('PING');
    expect(await a.take(2)).toEqual(['OK', 'PONG']);
  });
});

describe('one session, one connection, after CLIENT UNBLOCK', () => {
  async function addrs(unblock: boolean): Promise<{ set: string; get: string }> {
    const { port, proxy, redis } = await startRedisAndProxy(cleanup, { connections: { min: 2, max: 2 } });
    await waitFor(() => proxy.stats()[0].servers[0].connections.idle === 2, 'both shared connections ready');
    const monitor = await raw(redis.port);
    expect(await monitor.call('MONITOR')).toBe('OK');
    const a = await raw(port);
    const b = await raw(port);
    const bId = await b.call('CLIENT', 'ID');
    expect(await a.call('SET', 'warm', '1')).toBe('OK');
    if (unblock) {
      b.send('BLPOP', 'q', '0');
      await waitFor(async () => (await rawCommand(redis.port, ['CLIENT', 'LIST'])).includes('cmd=blpop'), 'BLPOP blocking');
      expect(await a.call('CLIENT', 'UNBLOCK', String(bId))).toBe(1);
      expect(await b.reply()).toBe(null);
    }
    a.write('*3\r\n$3\r\nSET\r\n$6\r\nmarker\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$6\r\nmarker\r\n');
    expect(await a.take(2)).toEqual(['OK', 'v']);
    const lines: string[] = [];
    await waitFor(async () => {
      while (monitor.pending > 0) lines.push(String(await monitor.reply()));
      return lines.some((l) => l.includes('"GET" "marker"'));
    }, 'MONITOR to show the GET');
    const addrOf = (cmd: string): string => /\[\d+ ([^\]]+)\]/.exec(lines.find((l) => l.includes(`"${cmd}" "marker"`)) ?? '')?.[1] ?? '?';
    return { set: addrOf('SET'), get: addrOf('GET') };
  }
  it('control: SET and GET pipelined by one session run on one connection', async () => {
    const { set, get } = await addrs(false);
    expect(get).toBe(set);
  });
  it('after CLIENT UNBLOCK: SET and GET pipelined by one session still run on one connection', async () => {
    const { set, get } = await addrs(true);
    expect(get).toBe(set);
  });
});
