/**
 * The command policy through the real proxy and a real redis-server: poolside lends its own server
 * credentials to every client, so administrative and cross-host commands are refused unless the
 * pool allows them, and commands that would poison a shared connection are refused outright.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FAILURE_REASONS } from '../../src/errors.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import { RedisServer, tempDir } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const SERVER_PASSWORD = 'server-s3cret';

/** A password-protected redis-server behind a pool with client_auth, as in issue 8's report. */
async function setup(pool: Record<string, unknown> = {}): Promise<{ proxy: Proxy; port: number; redis: RedisServer }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  expect(await redis.command('CONFIG', 'SET', 'requirepass', SERVER_PASSWORD)).toBe('+OK\r\n');
  const dir = cleanup.add(tempDir('poolside-policy-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'server.pw'), SERVER_PASSWORD);
  fs.writeFileSync(path.join(dir, 'client.pw'), 'client-pw');
  const proxy = cleanup.add(
    await startProxy([], {
      servers: [{ address: redis.address, password_file: path.join(dir, 'server.pw') }],
      client_auth: { password_file: path.join(dir, 'client.pw') },
      ...pool,
    }),
    (p) => p.close(),
  );
  await waitReady(proxy);
  return { proxy, port: portOf(proxy), redis };
}

async function client(port: number): Promise<RawClient> {
  const c = cleanup.add(await RawClient.connect(port), (x) => x.destroy());
  expect(await c.call('AUTH', 'client-pw')).toBe('OK');
  return c;
}

const denied = (proxy: Proxy): number => proxy.pools.get('p')?.counters.failures[FAILURE_REASONS.indexOf('DENIED_COMMAND')] ?? -1;

describe('command policy', () => {
  it('refuses CONFIG GET requirepass by default with a native error, and the client stays connected', async () => {
    const { proxy, port } = await setup();
    const c = await client(port);
    const reply = await c.call('CONFIG', 'GET', 'requirepass');
    expect(poolsideReason(reply)).toBe('DENIED_COMMAND');
    expect(String(reply)).not.toContain(SERVER_PASSWORD);
    expect(String(reply)).toContain('CONFIG GET is denied by the command policy of pool p');
    expect(poolsideReason(await c.call('CONFIG', 'SET', 'maxmemory', '1'))).toBe('DENIED_COMMAND');
    expect(poolsideReason(await c.call('ACL', 'SETUSER', 'intruder', 'on', '>x', '+@all'))).toBe('DENIED_COMMAND');
    expect(await c.call('ACL', 'WHOAMI')).toBe('default');
    expect(await c.call('SET', 'k', 'v')).toBe('OK');
    expect(c.isClosed).toBe(false);
    expect(denied(proxy)).toBe(3);
  });

  it('lets CONFIG GET through when the pool allows it, and nothing more of CONFIG', async () => {
    const { port } = await setup({ commands: { allow: ['CONFIG GET'] } });
    const c = await client(port);
    expect(await c.call('CONFIG', 'GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(poolsideReason(await c.call('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru'))).toBe('DENIED_COMMAND');
  });

  it('refuses MIGRATE, and EVAL of a script that calls MIGRATE, so no key leaves for another host', async () => {
    const { proxy, port } = await setup();
    const target = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const c = await client(port);
    expect(await c.call('SET', 'secret', 'data')).toBe('OK');
    expect(poolsideReason(await c.call('MIGRATE', '127.0.0.1', String(target.port), 'secret', '0', '5000', 'COPY'))).toBe('DENIED_COMMAND');
    const script = "return redis.call('migrate', ARGV[1], ARGV[2], KEYS[1], 0, 5000, 'COPY')";
    const reply = await c.call('EVAL', script, '1', 'secret', '127.0.0.1', String(target.port));
    expect(poolsideReason(reply)).toBe('DENIED_COMMAND');
    expect(String(reply)).toContain('its script names MIGRATE');
    expect(poolsideReason(await c.call('SCRIPT', 'LOAD', script))).toBe('DENIED_COMMAND');
    expect(await target.command('EXISTS', 'secret')).toBe(':0\r\n');
    expect(await c.call('EVAL', "return redis.call('GET', KEYS[1])", '1', 'secret')).toBe('data');
    expect(denied(proxy)).toBe(3);
  });

  it('refuses SCRIPT DEBUG YES, so the next client on the shared connection runs its EVAL normally', async () => {
    const { proxy, port } = await setup({ connections: { min: 1, max: 1 } });
    const debugger_ = await client(port);
    expect(poolsideReason(await debugger_.call('SCRIPT', 'DEBUG', 'YES'))).toBe('UNSUPPORTED_COMMAND');
    expect(debugger_.isClosed).toBe(false);
    const next = await client(port);
    for (let i = 0; i < 20; i++) expect(await next.call('EVAL', 'return ARGV[1]', '0', String(i))).toBe(String(i));
    expect(await debugger_.call('EVAL', 'return 7', '0')).toBe(7);
    expect(proxy.stats()[0].servers[0].connections.idle + proxy.stats()[0].servers[0].connections.active).toBe(1);
  });

  it('denies what the pool adds to the policy', async () => {
    const { port } = await setup({ commands: { deny: ['KEYS'] } });
    const c = await client(port);
    expect(poolsideReason(await c.call('KEYS', '*'))).toBe('DENIED_COMMAND');
    expect(poolsideReason(await c.call('EVAL', "return redis.call('KEYS', '*')", '0'))).toBe('DENIED_COMMAND');
    expect(await c.call('EVAL', 'return #KEYS', '1', 'k')).toBe(1);
    expect(await c.call('PING')).toBe('PONG');
  });

  it('works through a server user with the ACL that docs/redis-commands.md recommends', async () => {
    const doc = fs.readFileSync(new URL('../../docs/redis-commands.md', import.meta.url), 'utf8');
    const line = /^ACL SETUSER poolside .*$/m.exec(doc)?.[0];
    if (line === undefined) throw new Error('no ACL SETUSER line in docs/redis-commands.md');
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    expect(await redis.command(...line.split(' '))).toBe('+OK\r\n');
    const dir = cleanup.add(tempDir('poolside-policy-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'pw'), 'secret');
    const proxy = cleanup.add(
      await startProxy([], { servers: [{ address: redis.address, username: 'poolside', password_file: path.join(dir, 'pw'), db: 1 }] }),
      (p) => p.close(),
    );
    await waitReady(proxy);
    const c = cleanup.add(await RawClient.connect(portOf(proxy)), (x) => x.destroy());
    expect(await c.call('SET', 'k', 'v')).toBe('OK');
    expect(await c.call('EVAL', "return redis.call('GET', KEYS[1])", '1', 'k')).toBe('v');
    expect(await c.call('MULTI')).toBe('OK');
    expect(await c.call('INCR', 'n')).toBe('QUEUED');
    expect(await c.call('EXEC')).toEqual([1]);
    // What the policy lets through, the server's ACL still refuses (the real boundary).
    const eval_ = await c.call('EVAL', "return redis.call('MIG' .. 'RATE', '127.0.0.1', 1, 'k', 0, 10)", '0');
    expect(eval_).toBeInstanceOf(RespError);
    expect(String(eval_)).toContain("can't run this command");
  });
});
