/**
 * Out of file descriptors: the real command line under a small RLIMIT_NOFILE refuses clients past
 * what the limit leaves room for, in their protocol, and keeps descriptors for its pooled and
 * exclusive connections and its admin endpoint.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { request, scrape, valueOf } from '../helpers/prometheus.js';
import { RawClient, poolsideReason } from '../helpers/resp-client.js';
import { RedisServer, requireBinary, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const MAIN = ['--import', 'tsx', path.resolve('src/main.ts')];
const LIMIT = 96;

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

async function startUnderLimit(config: string): Promise<{ child: ChildProcess; lines: LogLine[] }> {
  const dir = cleanup.add(tempDir('poolside-fd-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
  const file = path.join(dir, 'poolside.yaml');
  fs.writeFileSync(file, config);
  const prlimit = requireBinary('prlimit', 'util-linux');
  const child = spawn(prlimit, [`--nofile=${LIMIT}:${LIMIT}`, process.execPath, ...MAIN, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  cleanup.defer(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const lines: LogLine[] = [];
  let partial = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) lines.push(JSON.parse(part) as LogLine);
  });
  await waitFor(() => lines.some((l) => l.msg === 'poolside started' || l.level === 'error'), 'poolside to start', 20_000);
  return { child, lines };
}

describe('open-file limit', () => {
  it('refuses clients past what RLIMIT_NOFILE leaves room for with TOO_MANY_CLIENTS, and keeps serving pools and the admin endpoint', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const { lines } = await startUnderLimit(
      [
        'admin:',
        '  listen: 127.0.0.1:0',
        'pools:',
        '  p:',
        '    protocol: redis',
        '    listen: 127.0.0.1:0',
        `    servers: ["${redis.address}"]`,
        '    connections: { min: 1, max: 2 }',
        '    exclusive: { max: 2 }',
        '',
      ].join('\n'),
    );
    const budget = lines.find((l) => l.msg === 'open-file limit');
    expect(budget?.open_files_limit).toBe(LIMIT);
    const capacity = Number(budget?.max_clients);
    expect(capacity).toBeGreaterThan(0);
    expect(capacity).toBeLessThan(LIMIT);
    // clients.max (10,000 by default) is far above the limit: said at start, not discovered later.
    expect(lines.some((l) => l.level === 'warn' && l.reason === 'fd_limit' && l.pool === 'p')).toBe(true);
    const started = lines.find((l) => l.msg === 'poolside started');
    const port = Number(/:(\d+)$/.exec(String(started?.listeners))?.[1]);
    const admin = lines.find((l) => l.msg === 'admin endpoint listening');
    const adminPort = Number(/:(\d+)$/.exec(String(admin?.address))?.[1]);
    await waitFor(async () => (await request(adminPort, '/readyz')).status === 200, 'poolside to be ready', 10_000);

    // More clients than the limit has descriptors: each one gets an answer, none a bare close.
    const startedAt = performance.now();
    const clients: RawClient[] = [];
    let served = 0;
    let refused = 0;
    for (let i = 0; i < LIMIT + 4; i++) {
      const client = cleanup.add(await RawClient.connect(port), (c) => c.destroy());
      const reply = await client.call('PING');
      if (reply === 'PONG') {
        served++;
        clients.push(client);
      } else {
        expect(poolsideReason(reply)).toBe('TOO_MANY_CLIENTS');
        expect(await client.closesWithin(5000)).toBe(true);
        refused++;
      }
    }
    expect(served).toBe(capacity);
    expect(refused).toBe(LIMIT + 4 - capacity);

    // Under that pressure: an exclusive connection, the admin endpoint, the count of refusals.
    expect(await clients[0].call('BLPOP', 'nothing', '0.05')).toBeNull();
    expect((await request(adminPort, '/healthz')).status).toBe(200);
    expect((await request(adminPort, '/readyz')).status).toBe(200);
    const metrics = await scrape({ kind: 'tcp', host: '127.0.0.1', port: adminPort });
    expect(valueOf(metrics, 'poolside_client_connections_rejected_total', { pool: 'p', reason: 'TOO_MANY_CLIENTS' })).toBe(refused);
    const seconds = (performance.now() - startedAt) / 1000;
    const logged = lines.filter((l) => l.reason === 'TOO_MANY_CLIENTS');
    expect(logged.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);

    // Room again once clients leave.
    clients.pop()?.destroy();
    await waitFor(async () => {
      const client = cleanup.add(await RawClient.connect(port), (c) => c.destroy());
      return (await client.call('PING')) === 'PONG';
    }, 'a new client to be served', 5000);
  });
});
