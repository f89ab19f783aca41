/**
 * Live reload (POST /reload, SIGHUP) against real redis-servers: an unchanged pool keeps its
 * backend connections (same CLIENT IDs on the server) and loses no request while another pool's
 * servers change; listeners are added and removed; a bad file is rejected with file:line:col and
 * the running config is kept; the poolside_config_* metrics follow.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { request, scrape, valueOf, find } from '../helpers/prometheus.js';
import { portOf, quietLog, waitReady } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { freePort, RedisServer, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function redisServer(): Promise<RedisServer> {
  return cleanup.add(await RedisServer.start(), (s) => s.stop());
}

/** CLIENT IDs of the connections a server has, other than the one asking. */
async function clientIds(redis: RedisServer): Promise<number[]> {
  const list = await redis.command('CLIENT', 'LIST');
  return [...list.matchAll(/^id=(\d+) .*$/gm)].filter((m) => !m[0].includes('cmd=client|list')).map((m) => Number(m[1])).sort((a, b) => a - b);
}

function configDir(): { dir: string; file: string; write(doc: Record<string, unknown>): void } {
  const dir = tempDir('poolside-reload-');
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'poolside.yaml');
  return { dir, file, write: (doc) => fs.writeFileSync(file, YAML.stringify(doc)) };
}

async function connect(target: number | { path: string }): Promise<RawClient> {
  const client = await RawClient.connect(target);
  cleanup.defer(() => client.destroy());
  return client;
}

describe('live reload', () => {
  it('keeps an unchanged pool and its backend connections while another pool moves to a new server, and adds and removes listeners', async () => {
    const [redisA, redisB, redisC] = [await redisServer(), await redisServer(), await redisServer()];
    const { dir, file, write } = configDir();
    const [sockOld, sockNew] = [path.join(dir, 'old.sock'), path.join(dir, 'new.sock')];
    const base = {
      admin: { listen: '127.0.0.1:0' },
      pools: {
        a: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redisA.address], connections: { min: 2, max: 2 } },
        b: { protocol: 'redis', listen: ['127.0.0.1:0', `unix:${sockOld}`], servers: [redisB.address], connections: { min: 1, max: 1 } },
      },
    };
    write(base);
    const log = quietLog();
    const proxy = cleanup.add(await Proxy.start(loadConfig(file), { log }), (p) => p.close());
    await waitReady(proxy);
    const admin = proxy.adminAddress();
    const idsBefore = await clientIds(redisA);
    expect(idsBefore).toHaveLength(2);
    const portA = portOf(proxy, 'a');
    const portB = portOf(proxy, 'b');

    // Steady traffic on pool a through the reload.
    let stop = false;
    const failures: RespValue[] = [];
    let answered = 0;
    const workers = await Promise.all(Array.from({ length: 4 }, () => connect(portA)));
    const running = workers.map(async (c) => {
      while (!stop) {
        const reply = await c.call('INCR', 'reload:a');
        if (typeof reply === 'number') answered++;
        else failures.push(reply);
      }
    });
    const oldB = await connect({ path: sockOld });
    expect(await oldB.call('SET', 'where', 'b')).toBe('OK');
    // In flight across the reload: the old pool answers it.
    oldB.send('BLPOP', 'reload:list', '10');
    await waitFor(() => proxy.clientList().clients.some((c) => c.holds === 'blocking'), 'the BLPOP to block');
    await waitFor(() => answered > 50, 'traffic on pool a');

    write({
      ...base,
      pools: {
        a: { ...base.pools.a, listen: ['127.0.0.1:0', '127.0.0.1:0'] },
        b: { ...base.pools.b, listen: ['127.0.0.1:0', `unix:${sockNew}`], servers: [redisC.address] },
      },
    });
    const reply = await request(admin, '/reload', 'POST');
    expect(reply.status).toBe(200);
    const outcome = JSON.parse(reply.body) as { ok: boolean; changes: string[] };
    expect(outcome.ok).toBe(true);
    expect(outcome.changes).toEqual(
      expect.arrayContaining([
        'pool b: changed; new connections, its clients move as they finish',
        `listener unix:${sockOld}: removed`,
        `listener unix:${sockNew}: added (pool b)`,
        expect.stringMatching(/^listener 127\.0\.0\.1:\d+: added \(pool a\)$/),
      ]),
    );
    // Listeners that stayed kept their ports; the removed socket is gone, the new one answers.
    expect(portOf(proxy, 'a')).toBe(portA);
    expect(portOf(proxy, 'b')).toBe(portB);
    expect(fs.existsSync(sockOld)).toBe(false);
    const newB = await connect({ path: sockNew });
    expect(await newB.call('SET', 'where', 'c')).toBe('OK');
    expect(await redisC.command('GET', 'where')).toBe('$1\r\nc\r\n');
    const viaAddedListener = await connect(portOf(proxy, 'a', 1));
    expect(typeof (await viaAddedListener.call('INCR', 'reload:a'))).toBe('number');

    // The client of the replaced pool gets its answer from it, then is closed (it moves on when it reconnects).
    expect(oldB.isClosed).toBe(false);
    await redisB.command('LPUSH', 'reload:list', 'from-b');
    expect(await oldB.reply()).toEqual(['reload:list', 'from-b']);
    expect(await oldB.closesWithin(3000)).toBe(true);
    await waitFor(async () => (await clientIds(redisB)).length === 0, 'the old pool b connections to close', 5000);

    await waitFor(() => answered > 200, 'more traffic on pool a');
    stop = true;
    await Promise.all(running);
    expect(failures).toEqual([]);
    expect(await clientIds(redisA)).toEqual(idsBefore);
    const total = Number((await redisA.command('GET', 'reload:a')).split('\r\n')[1]);
    expect(total).toBe(answered + 1);

    const m = await scrape(admin);
    expect(valueOf(m, 'poolside_config_reloads_total', { result: 'success' })).toBe(1);
    expect(valueOf(m, 'poolside_config_last_reload_successful')).toBe(1);
  }, 30_000);

  it('rejects a bad file with file:line:col, keeps the running config and traffic, and says so in the metrics', async () => {
    const redis = await redisServer();
    const { file, write } = configDir();
    const good = { admin: { listen: '127.0.0.1:0' }, pools: { p: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redis.address] } } };
    write(good);
    const log = quietLog();
    const proxy = cleanup.add(await Proxy.start(loadConfig(file), { log }), (p) => p.close());
    const admin = proxy.adminAddress();
    const before = find(await scrape(admin), 'poolside_config_info')[0]?.labels.hash;
    expect(before).toMatch(/^[0-9a-f]{16}$/);
    const c = await connect(portOf(proxy));
    expect(await c.call('SET', 'k', 'v')).toBe('OK');

    fs.writeFileSync(file, ['pools:', '  p:', '    protocol: redis', '    listen: 127.0.0.1:0', '    servers: [10.0.0.5]', '    queue: { timeout: 5 }', ''].join('\n'));
    const reply = await request(admin, '/reload', 'POST');
    expect(reply.status).toBe(400);
    const { problems } = JSON.parse(reply.body) as { problems: string[] };
    expect(problems).toEqual([expect.stringContaining(`${file}:5:15 pools.p.servers[0]: expected host:port`), expect.stringContaining(`${file}:6:23 pools.p.queue.timeout:`)]);
    expect(log.lines.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual(
      expect.arrayContaining([expect.stringContaining(`${file}:5:15`), expect.stringContaining(`${file}:6:23`)]),
    );
    expect(await c.call('GET', 'k')).toBe('v');
    let m = await scrape(admin);
    expect(valueOf(m, 'poolside_config_last_reload_successful')).toBe(0);
    expect(valueOf(m, 'poolside_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(find(m, 'poolside_config_info')[0]?.labels.hash).toBe(before);

    write({ ...good, pools: { p: { ...good.pools.p, request_timeout: '3s' } } });
    expect((await request(admin, '/reload', 'POST')).status).toBe(200);
    m = await scrape(admin);
    expect(valueOf(m, 'poolside_config_last_reload_successful')).toBe(1);
    expect(valueOf(m, 'poolside_config_reloads_total', { result: 'success' })).toBe(1);
    expect(find(m, 'poolside_config_info')[0]?.labels.hash).not.toBe(before);
    expect((await request(admin, '/reload')).status).toBe(405);
  });

  it('reloads on SIGHUP (the real command line)', async () => {
    const redis = await redisServer();
    const { file, write } = configDir();
    const [port, extra] = [await freePort(), await freePort()];
    const pool = { protocol: 'redis', listen: [`127.0.0.1:${port}`], servers: [redis.address] };
    write({ admin: false, pools: { p: pool } });
    const { child, stderr } = spawnPoolside(cleanup, ['--config', file]);
    await waitFor(() => stderr().includes('"msg":"poolside started"'), 'poolside to start', 20_000);
    write({ admin: false, pools: { p: { ...pool, listen: [`127.0.0.1:${port}`, `127.0.0.1:${extra}`] } } });
    child.kill('SIGHUP');
    await waitFor(() => /config reload(ed| rejected)/.test(stderr()), 'the reload', 10_000).catch(() => {});
    expect({ signal: child.signalCode, reloaded: stderr().includes('"msg":"config reloaded"') }).toEqual({ signal: null, reloaded: true });
    const c = await connect(extra);
    expect(await c.call('PING')).toBe('PONG');
  }, 30_000);
});
