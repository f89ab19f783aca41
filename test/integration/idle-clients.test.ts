/**
 * clients.idle_timeout closes a client that sent nothing for that long, an open transaction
 * included (as Redis's timeout does), but never one with a request in flight, a blocking command
 * or a subscription; counted as
 * reason="idle_timeout". /stats?clients=1 lists clients with what they hold.
 */
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { request, scrape, valueOf } from '../helpers/prometheus.js';
import { portOf, quietLog } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import { RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function setup(idleTimeout: string): Promise<{ proxy: Proxy; redis: RedisServer; connect: () => Promise<RawClient> }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const doc = { admin: { listen: '127.0.0.1:0' }, pools: { p: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redis.address], clients: { idle_timeout: idleTimeout } } } };
  const proxy = cleanup.add(await Proxy.start(parseConfig(YAML.stringify(doc), 'test.yaml'), { log: quietLog() }), (p) => p.close());
  const connect = async (): Promise<RawClient> => {
    const client = await RawClient.connect(portOf(proxy));
    cleanup.defer(() => client.destroy());
    return client;
  };
  return { proxy, redis, connect };
}

describe('clients.idle_timeout', () => {
  it('closes idle clients, mid-transaction ones too (as Redis does), but not blocked or subscribed ones, and counts them', async () => {
    const { proxy, redis, connect } = await setup('300ms');
    const idle = await connect();
    expect(await idle.call('PING')).toBe('PONG');
    const blocked = await connect();
    blocked.send('BLPOP', 'idle:list', '0');
    const subscribed = await connect();
    expect(await subscribed.call('SUBSCRIBE', 'idle:chan')).toEqual(['subscribe', 'idle:chan', 1]);
    const transaction = await connect();
    expect(await transaction.call('MULTI')).toBe('OK');
    expect(await transaction.call('SET', 'idle:k', 'v')).toBe('QUEUED');
    const watching = await connect();
    expect(await watching.call('WATCH', 'idle:k')).toBe('OK');
    // A client that keeps talking is never idle.
    const busy = await connect();
    let stop = false;
    const talking = (async () => {
      while (!stop) {
        expect(await busy.call('PING')).toBe('PONG');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    expect(await idle.closesWithin(3000)).toBe(true);
    expect(await transaction.closesWithin(3000)).toBe(true);
    expect(await watching.closesWithin(3000)).toBe(true);
    // Well past the timeout for the others: they are still open.
    await new Promise((resolve) => setTimeout(resolve, 600));
    stop = true;
    await talking;
    expect([blocked.isClosed, subscribed.isClosed, busy.isClosed]).toEqual([false, false, false]);
    // The closed transaction was discarded, never run.
    expect(await redis.command('EXISTS', 'idle:k')).toContain(':0');
    // Counted while the blocked client still blocks (once answered, it may be closed as idle too).
    const m = await scrape(proxy.adminAddress());
    expect(valueOf(m, 'poolside_client_connections_rejected_total', { pool: 'p', reason: 'idle_timeout' })).toBe(3);
    await redis.command('LPUSH', 'idle:list', 'x');
    expect(await blocked.reply()).toEqual(['idle:list', 'x']);
    // Once it is done, the blocked client is idle too.
    expect(await blocked.closesWithin(3000)).toBe(true);
    expect(subscribed.isClosed).toBe(false);
  });

  it('lists clients in /stats?clients=1 with pool, peer, times and what they hold', async () => {
    const { proxy, connect } = await setup('0s');
    const a = await connect();
    expect(await a.call('PING')).toBe('PONG');
    const b = await connect();
    b.send('BLPOP', 'stats:list', '0');
    await waitFor(() => proxy.clientList().clients.some((c) => c.holds === 'blocking'), 'the client to block');
    const reply = await request(proxy.adminAddress(), '/stats?clients=1');
    const body = JSON.parse(reply.body) as { clients: { total: number; truncated: boolean; clients: Record<string, unknown>[] } };
    expect(body.clients.total).toBe(2);
    expect(body.clients.truncated).toBe(false);
    expect(body.clients.clients).toEqual([
      expect.objectContaining({ pool: 'p', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/), listener: `127.0.0.1:${portOf(proxy)}`, lastCommand: 'PING', holds: null }),
      expect.objectContaining({ pool: 'p', lastCommand: 'BLPOP', holds: 'blocking', inflight: 1 }),
    ]);
    expect(body.clients.clients[0]).toHaveProperty('ageMs');
    expect(body.clients.clients[0]).toHaveProperty('idleMs');
    // Unix seconds, as Swoole's getClientInfo: connected no later than it last sent, both by now.
    const { connectTime, lastTime } = body.clients.clients[0] as { connectTime: number; lastTime: number };
    expect(connectTime).toBeLessThanOrEqual(lastTime);
    expect(lastTime).toBeLessThanOrEqual(Date.now() / 1000);
    expect(connectTime).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(proxy.clientList(1)).toMatchObject({ total: 2, truncated: true, clients: [expect.objectContaining({ holds: null })] });
    // Without the parameter, no list.
    expect(JSON.parse((await request(proxy.adminAddress(), '/stats')).body)).not.toHaveProperty('clients');
  });
});
