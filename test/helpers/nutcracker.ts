/**
 * A real nutcracker (twemproxy 0.5.0) for tests that compare poolside with it: one process with
 * the pools given, each listening on a free loopback port. Killed by `cleanup`; a missing binary
 * fails with how to install it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import type { Cleanup } from './cleanup.js';
import { freePort, requireBinary, tempDir, waitFor } from './servers.js';

export interface NutcrackerPool {
  /** ketama over the servers, as twemproxy does it. */
  hash: string;
  /** `host:port:weight [name]` lines. */
  servers: string[];
  /** Only for a Redis pool; memcached otherwise. */
  redis?: boolean;
  hashTag?: string;
  /** Further `key: value` lines of the pool. */
  extra?: Record<string, string | number | boolean>;
}

export interface Nutcracker {
  /** The listening port of each pool, by name. */
  ports: Record<string, number>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts it on free ports; a port another test took between freePort() and nutcracker's bind is
 * tried again on new ones, as the server helpers do (servers.ts).
 */
export async function startNutcracker(cleanup: Cleanup, pools: Record<string, NutcrackerPool>): Promise<Nutcracker> {
  const bin = requireBinary('nutcracker', 'nutcracker');
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnFreePorts(cleanup, bin, pools);
    } catch (err) {
      if (attempt >= 3 || !(err instanceof Error) || !err.message.includes('Address already in use')) throw err;
    }
  }
}

async function startOnFreePorts(cleanup: Cleanup, bin: string, pools: Record<string, NutcrackerPool>): Promise<Nutcracker> {
  const dir = cleanup.add(tempDir('poolside-nutcracker-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
  const ports: Record<string, number> = {};
  const lines: string[] = [];
  for (const [name, pool] of Object.entries(pools)) {
    ports[name] = await freePort();
    lines.push(
      `${name}:`,
      `  listen: 127.0.0.1:${ports[name]}`,
      `  hash: ${pool.hash}`,
      '  distribution: ketama',
      `  redis: ${pool.redis === true}`,
      '  auto_eject_hosts: false',
      '  preconnect: true',
      '  timeout: 2000',
    );
    if (pool.hashTag !== undefined) lines.push(`  hash_tag: "${pool.hashTag}"`);
    for (const [key, value] of Object.entries(pool.extra ?? {})) lines.push(`  ${key}: ${String(value)}`);
    lines.push('  servers:', ...pool.servers.map((server) => `   - ${server}`));
  }
  const conf = path.join(dir, 'nutcracker.yml');
  fs.writeFileSync(conf, `${lines.join('\n')}\n`);
  const child = spawn(bin, ['-c', conf, '-o', path.join(dir, 'nutcracker.log'), '-s', String(await freePort()), '-a', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  cleanup.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGKILL');
      return gone;
    }
    return undefined;
  });
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`nutcracker exited (${child.exitCode}): ${stderr}${fs.readFileSync(path.join(dir, 'nutcracker.log'), 'utf8').slice(-500)}`);
    for (const port of Object.values(ports)) if (!(await canConnect(port))) return false;
    return true;
  }, 'nutcracker to listen');
  return { ports };
}
