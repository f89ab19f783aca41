/**
 * A unix listener's mode, owner and group (`{ address: unix:…, mode, owner, group }`): the socket
 * is created with them, so a PHP-FPM pool running as www-data can connect and another user cannot.
 * Uses the accounts every Debian host has (www-data, nobody) and setpriv to act as them, so it
 * needs root (chown to another group); it fails, not skips, without it.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { quietLog } from '../helpers/proxy.js';
import { RedisServer, requireBinary, tempDir } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * redis-cli run as `uid`:`gid` with no supplementary groups; its output or its error. Spawned
 * asynchronously: the proxy answering it runs in this process.
 */
async function pingAs(uid: number, gid: number, socket: string): Promise<string> {
  const setpriv = requireBinary('setpriv', 'util-linux');
  const redisCli = requireBinary('redis-cli', 'redis-tools');
  const child = spawn(setpriv, [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', redisCli, '-s', socket, 'PING'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await new Promise((resolve) => child.once('close', resolve));
  return output.trim();
}

function id(database: 'passwd' | 'group', name: string): number {
  const line = spawnSync('getent', [database, name], { encoding: 'utf8' }).stdout;
  const found = Number(line.split(':')[2]);
  if (!Number.isInteger(found)) throw new Error(`this test needs the ${database} entry ${name} (a stock Debian host has it)`);
  return found;
}

describe('unix socket ownership', () => {
  it('creates the socket with its mode and group: www-data connects, nobody is refused', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test must run as root: it gives the socket to another group and connects as other users (setpriv)');
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const dir = tempDir('poolside-own-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.chmodSync(dir, 0o755);
    const socket = path.join(dir, 'cache.sock');
    const file = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(
      file,
      YAML.stringify({
        admin: false,
        pools: { cache: { protocol: 'redis', listen: [{ address: `unix:${socket}`, mode: '0660', group: 'www-data' }], servers: [redis.address] } },
      }),
    );
    const proxy = cleanup.add(await Proxy.start(loadConfig(file), { log: quietLog() }), (p) => p.close());
    const stat = fs.statSync(socket);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o660);
    expect(stat.uid).toBe(0);
    expect(stat.gid).toBe(id('group', 'www-data'));
    // Nothing of the staging directory is left beside it.
    expect(fs.readdirSync(dir).sort()).toEqual(['cache.sock', 'poolside.yaml']);

    const wwwData = id('passwd', 'www-data');
    expect(await pingAs(wwwData, id('group', 'www-data'), socket)).toBe('PONG');
    expect(await pingAs(id('passwd', 'nobody'), id('group', 'nogroup'), socket)).toMatch(/Permission denied/);

    // A reload that changes only the mode and owner fixes the socket in place.
    fs.writeFileSync(
      file,
      YAML.stringify({
        admin: false,
        pools: { cache: { protocol: 'redis', listen: [{ address: `unix:${socket}`, mode: '0600', owner: 'www-data', group: 'www-data' }], servers: [redis.address] } },
      }),
    );
    expect((await proxy.reloadFromFile()).ok).toBe(true);
    const after = fs.statSync(socket);
    expect([after.mode & 0o777, after.uid, after.gid, after.ino]).toEqual([0o600, wwwData, id('group', 'www-data'), stat.ino]);
    expect(await pingAs(wwwData, id('group', 'www-data'), socket)).toBe('PONG');

    // A reload that no longer names an owner or group takes the grant back, as a restart would.
    fs.writeFileSync(
      file,
      YAML.stringify({
        admin: false,
        pools: { cache: { protocol: 'redis', listen: [{ address: `unix:${socket}`, mode: '0660' }], servers: [redis.address] } },
      }),
    );
    expect((await proxy.reloadFromFile()).ok).toBe(true);
    const revoked = fs.statSync(socket);
    expect([revoked.mode & 0o777, revoked.uid, revoked.gid, revoked.ino]).toEqual([0o660, 0, 0, stat.ino]);
    expect(await pingAs(wwwData, id('group', 'www-data'), socket)).toMatch(/Permission denied/);
    expect(fs.readdirSync(dir).sort()).toEqual(['cache.sock', 'poolside.yaml']);
  });

  it('reports an unknown user or group with its line and column', () => {
    const text = [
      'pools:',
      '  cache:',
      '    protocol: redis',
      '    servers: [127.0.0.1:6379]',
      '    listen:',
      '      - { address: "unix:/tmp/a.sock", owner: no-such-user-x, group: no-such-group-x }',
      '      - { address: 127.0.0.1:7000, group: www-data }',
      '',
    ].join('\n');
    let message = '';
    try {
      parseConfig(text, 'c.yaml');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.split('\n')).toEqual([
      'c.yaml:6:47 pools.cache.listen[0].owner: no user named "no-such-user-x" on this host (getent passwd no-such-user-x)',
      'c.yaml:6:70 pools.cache.listen[0].group: no group named "no-such-group-x" on this host (getent group no-such-group-x)',
      'c.yaml:7:43 pools.cache.listen[1].group: group applies only to unix: sockets',
    ]);
  });

  it('--check-config says when a unix socket directory does not exist', () => {
    const dir = tempDir('poolside-own-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(file, YAML.stringify({ pools: { cache: { protocol: 'redis', listen: [`unix:${dir}/missing/c.sock`], servers: ['127.0.0.1:6379'] } } }));
    const result = spawnSync(process.execPath, ['--import', 'tsx', path.resolve('src/main.ts'), '--check-config', file], { encoding: 'utf8', timeout: 20_000 });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`pools.cache.listen unix:${dir}/missing/c.sock: the directory ${dir}/missing does not exist`);
  });
});
