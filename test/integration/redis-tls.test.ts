/**
 * TLS and credentials to servers, against a real TLS-only redis-server (`--tls-port`, `--port 0`)
 * with certificates made by openssl for the test, and an ACL user with a password (the default
 * user off, so nothing works without it). Traffic of every kind runs over the pooled TLS
 * connections; a wrong CA, a server name the certificate does not cover and a missing client
 * certificate are refused with a reason; no secret reaches the log, /stats or /metrics.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { parseExposition, request, valueOf } from '../helpers/prometheus.js';
import { portOf, quietLog, startProxy, waitReady } from '../helpers/proxy.js';
import type { PoolYaml } from '../helpers/proxy.js';
import { RawClient, RespError, poolsideReason } from '../helpers/resp-client.js';
import { RedisServer, tempDir, waitFor } from '../helpers/servers.js';
import type { RedisTlsOptions } from '../helpers/servers.js';
import { makeCertificates } from '../helpers/tls.js';
import type { TestCertificates } from '../helpers/tls.js';

const PASSWORD = 'tls-test-Secret-4f9d2c';
const cleanup = new Cleanup();
afterEach(() => cleanup.run());

let certs: TestCertificates;
let secretDir: string;
beforeAll(() => {
  certs = makeCertificates(tempDir('poolside-tls-'));
  secretDir = tempDir('poolside-tls-secret-');
  fs.writeFileSync(path.join(secretDir, 'password'), `${PASSWORD}\n`);
});
afterAll(() => {
  fs.rmSync(certs.dir, { recursive: true, force: true });
  fs.rmSync(secretDir, { recursive: true, force: true });
});

/** A TLS-only redis-server whose only user is `app` with PASSWORD. */
async function startTlsRedis(authClients: RedisTlsOptions['authClients']): Promise<RedisServer> {
  const acl = ['--user', 'default', 'off', '--user', 'app', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'];
  const tls: RedisTlsOptions = { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, caFile: certs.caFile, authClients };
  return cleanup.add(await RedisServer.start(acl, { tls }), (s) => s.stop());
}

function server(redis: RedisServer, tls: Record<string, unknown>): Record<string, unknown> {
  return { address: redis.address, username: 'app', password_file: path.join(secretDir, 'password'), tls };
}

async function proxyFor(servers: Record<string, unknown>[], pool: PoolYaml = {}) {
  const log = quietLog();
  const proxy = cleanup.add(await startProxy([], { servers, ...pool }, { log, admin: { listen: '127.0.0.1:0' } }), (p) => p.close());
  return { proxy, log };
}

async function metricsOf(proxy: Proxy): Promise<{ text: string; value: (name: string, labels?: Record<string, string>) => number }> {
  const reply = await request(proxy.adminAddress(), '/metrics');
  const exposition = parseExposition(reply.body);
  return { text: reply.body, value: (name, labels = {}) => valueOf(exposition, name, labels) };
}

const mutual = (): Record<string, unknown> => ({ ca_file: certs.caFile, cert_file: certs.clientCertFile, key_file: certs.clientKeyFile });

describe('TLS to servers', () => {
  it('serves every kind of traffic over mutual TLS with an ACL user, and no secret shows anywhere', async () => {
    const redis = await startTlsRedis('yes');
    const { proxy, log } = await proxyFor([server(redis, mutual())], { heartbeat: { interval: '300ms', timeout: '250ms' }, exclusive: { max: 1 } });
    await waitReady(proxy);
    const port = portOf(proxy);

    const a = await connectRedis(cleanup, port);
    const b = await connectRedis(cleanup, port);
    expect(await a.set('k', 'v')).toBe('OK');
    expect(await a.get('k')).toBe('v');
    expect(await a.call('ACL', 'WHOAMI')).toBe('app');
    // MULTI pins the one exclusive connection; it is RESET and re-authenticated before BLPOP gets it.
    expect(await a.multi().incr('n').incr('n').exec()).toEqual([[null, 1], [null, 2]]);
    const popped = b.blpop('queue', 5);
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.borrowed === 1, 'BLPOP to hold the exclusive connection');
    expect(await a.lpush('queue', 'job')).toBe(1);
    expect(await popped).toEqual(['queue', 'job']);
    expect(await b.call('ACL', 'WHOAMI')).toBe('app');
    // SUBSCRIBE relays pushes over the same kind of connection.
    const subscriber = await connectRedis(cleanup, port);
    const message = new Promise<string>((resolve) => subscriber.once('message', (_channel: string, text: string) => resolve(text)));
    await subscriber.subscribe('news');
    await waitFor(async () => Number(await a.call('PUBLISH', 'news', 'hello')) === 1, 'the subscriber to receive');
    expect(await message).toBe('hello');

    // Heartbeats run over TLS too.
    await waitFor(async () => (await metricsOf(proxy)).value('poolside_heartbeat_duration_seconds_count', { server: redis.address }) >= 2, 'two heartbeats answered', 10_000);

    const metrics = await metricsOf(proxy);
    const labels = { pool: 'p', server: redis.address };
    expect(metrics.value('poolside_server_connect_duration_seconds_count', labels)).toBeGreaterThanOrEqual(2);
    expect(metrics.value('poolside_server_connect_failures_total', labels)).toBe(0);
    for (const reason of ['tls_handshake', 'certificate']) {
      expect(metrics.value('poolside_server_connections_closed_total', { ...labels, reason })).toBe(0);
    }

    const stats = (await request(proxy.adminAddress(), '/stats')).body;
    const logText = JSON.stringify(log.lines);
    const keyBody = fs.readFileSync(certs.clientKeyFile, 'utf8').split('\n')[1];
    for (const [what, text] of [['/metrics', metrics.text], ['/stats', stats], ['the log', logText]] as const) {
      expect(text, what).not.toContain(PASSWORD);
      expect(text, what).not.toContain(keyBody);
      expect(text, what).not.toContain('PRIVATE KEY');
    }
  });

  it('connects without a client certificate where the server makes it optional', async () => {
    const redis = await startTlsRedis('optional');
    const { proxy } = await proxyFor([server(redis, { ca_file: certs.caFile, servername: 'localhost' })]);
    await waitReady(proxy);
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.ping()).toBe('PONG');
  });

  const refusals = [
    { what: 'a server certificate from another CA', authClients: 'optional', tls: () => ({ ca_file: certs.otherCaFile }), words: /certificate refused/ },
    { what: 'a server name the certificate does not cover', authClients: 'optional', tls: () => ({ ca_file: certs.caFile, servername: 'cache.example.org' }), words: /cache\.example\.org/ },
    { what: 'no client certificate where the server requires one', authClients: 'yes', tls: () => ({ ca_file: certs.caFile }), words: /TLS/ },
  ] as const;
  for (const { what, authClients, tls, words } of refusals) {
    it(`refuses ${what}: reason certificate in the log and the metric, clients get a native error`, async () => {
      const redis = await startTlsRedis(authClients);
      const { proxy, log } = await proxyFor([server(redis, tls())], { queue: { timeout: '100ms' } });
      const failed = () => log.lines.find((l) => l.msg === 'connect to server failed');
      await waitFor(() => failed() !== undefined, 'a failed connect in the log', 10_000);
      expect(failed()?.fields, JSON.stringify(log.lines)).toMatchObject({ reason: 'certificate' });
      expect(String(failed()?.fields.error)).toMatch(words);
      const metrics = await metricsOf(proxy);
      expect(metrics.value('poolside_server_connections_closed_total', { pool: 'p', server: redis.address, reason: 'certificate' })).toBeGreaterThanOrEqual(1);
      const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
      const reply = await client.call('GET', 'k');
      expect(reply).toBeInstanceOf(RespError);
      expect(poolsideReason(reply)).toMatch(/^(NO_HEALTHY_SERVER|POOL_TIMEOUT)$/);
    });
  }

  it('says a wrong password is the server refusing AUTH, and never shows the password', async () => {
    const redis = await startTlsRedis('optional');
    const wrong = 'Wrong-Password-7c1e';
    fs.writeFileSync(path.join(secretDir, 'wrong'), wrong);
    const { proxy, log } = await proxyFor([{ ...server(redis, { ca_file: certs.caFile }), password_file: path.join(secretDir, 'wrong') }]);
    const failed = () => log.lines.find((l) => l.msg === 'connect to server failed');
    await waitFor(() => failed() !== undefined, 'a failed connect in the log', 10_000);
    expect(failed()?.fields).toMatchObject({ reason: 'init_failed', error: expect.stringMatching(/WRONGPASS/) });
    const metrics = await metricsOf(proxy);
    const stats = (await request(proxy.adminAddress(), '/stats')).body;
    for (const text of [metrics.text, stats, JSON.stringify(log.lines)]) expect(text).not.toContain(wrong);
  });

  it('calls a server that does not speak TLS a failed handshake', async () => {
    const plain = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const { proxy, log } = await proxyFor([{ address: plain.address, tls: { ca_file: certs.caFile } }], { connect: { timeout: '300ms' } });
    await waitFor(() => log.lines.some((l) => l.msg === 'connect to server failed'), 'a failed connect in the log', 10_000);
    const failed = log.lines.find((l) => l.msg === 'connect to server failed');
    expect(failed?.fields.reason).toBe('tls_handshake');
    expect(String(failed?.fields.error)).toMatch(/TLS handshake/);
    const metrics = await metricsOf(proxy);
    expect(metrics.value('poolside_server_connections_closed_total', { pool: 'p', server: plain.address, reason: 'tls_handshake' })).toBeGreaterThanOrEqual(1);
  });
});
