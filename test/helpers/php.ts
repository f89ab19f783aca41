/**
 * Real PHP processes as apps run them: php-cli with the `memcached` extension (libmemcached),
 * running the scripts in test/fixtures/php/. Spawned asynchronously: the proxy under test runs in
 * the test's own event loop. A missing php or extension fails with how to install it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { requireBinary } from './servers.js';

export function requirePhpMemcached(): void {
  requireBinary('php', 'php-cli');
  const check = spawnSync('php', ['-r', 'exit(extension_loaded("memcached") ? 0 : 1);'], { stdio: 'ignore' });
  if (check.status !== 0) {
    throw new Error('php has no memcached extension: the PHP integration tests need it. Install it with: apt-get install -y php-memcached');
  }
}

/** The path of a script in test/fixtures/php/. */
export function phpFixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/php/${name}`, import.meta.url));
}

/** Runs `php <script> <args>`; resolves with the JSON its last output line holds. */
export function runPhp(script: string, args: string[], options: { ini?: Record<string, string>; timeoutMs?: number } = {}): Promise<unknown> {
  const ini = Object.entries(options.ini ?? {}).flatMap(([key, value]) => ['-d', `${key}=${value}`]);
  return new Promise((resolve, reject) => {
    const child = spawn('php', [...ini, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      if (code !== 0) return reject(new Error(`php ${script} exited ${signal ?? code}: ${stderr}${stdout}`.slice(0, 4000)));
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`php ${script} printed no JSON: ${stderr}${stdout}`.slice(0, 4000)));
      }
    });
  });
}

export function requirePhpRedis(): void {
  requireBinary('php', 'php-cli');
  const check = spawnSync('php', ['-r', 'exit(extension_loaded("redis") ? 0 : 1);'], { stdio: 'ignore' });
  if (check.status !== 0) {
    throw new Error('php has no redis extension (phpredis): the PHP Redis tests need it. Install it with: apt-get install -y php-redis');
  }
}
