import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { freePort, tempDir, waitFor } from '../helpers/servers.js';

const MAIN = ['--import', 'tsx', path.resolve('src/main.ts')];

function poolside(args: string[]) {
  return spawnSync(process.execPath, [...MAIN, ...args], { encoding: 'utf8', timeout: 20_000 });
}

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

function writeConfig(text: string): string {
  const dir = tempDir('poolside-cli-');
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'poolside.yaml');
  fs.writeFileSync(file, text);
  return file;
}

describe('poolside command line', () => {
  it('accepts config.example.yaml with --check-config', () => {
    const result = poolside(['--check-config', 'config.example.yaml']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/config\.example\.yaml: OK \(1 pool\)/);
    expect(result.status).toBe(0);
  });

  it('reports every config problem with file, line, column and path, and exits 2', () => {
    const file = writeConfig(
      ['pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:0', '    servers: [10.0.0.5]', '    queue: { timeout: 5 }', ''].join('\n'),
    );
    const result = poolside(['--check-config', file]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`${file}:5:15 pools.cache.servers[0]: expected host:port, got "10.0.0.5"`);
    expect(result.stderr).toContain(`${file}:6:23 pools.cache.queue.timeout:`);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('--check-config warns that a framed pool without a heartbeat cannot see a frozen server, and still passes', () => {
    const framed = ['pools:', '  rpc:', '    protocol: framed', '    listen: 127.0.0.1:0', '    servers: [127.0.0.1:9090]', '    framed: { header_size: 4, length: { offset: 0, size: 4 } }', ''];
    const result = poolside(['--check-config', writeConfig(framed.join('\n'))]);
    expect(result.stderr).toMatch(/^poolside: warning: pools\.rpc\.heartbeat: no heartbeat configured .*a frozen server .* will not be detected\n$/);
    expect(result.stdout).toMatch(/OK \(1 pool\)/);
    expect(result.status).toBe(0);
    const probed = [...framed.slice(0, -1), '    heartbeat: { send: "00000000", expect: "00000000" }', ''];
    expect(poolside(['--check-config', writeConfig(probed.join('\n'))]).stderr).toBe('');
  });

  it('names an unknown option, prints usage and exits 2', () => {
    const result = poolside(['--frobnicate']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^poolside: unknown option --frobnicate\n/);
    expect(result.stderr).toMatch(/usage: poolside --config FILE/);
  });

  it('takes --check-config=FILE (every spelling: test/unit/cli-args.test.ts)', () => {
    const result = poolside(['--check-config=config.example.yaml']);
    expect(result.stdout).toMatch(/config\.example\.yaml: OK/);
    expect(result.status).toBe(0);
  });

  it('--help points to the configuration reference, --version prints the version', () => {
    const help = poolside(['--help']);
    expect(help.status).toBe(0);
    const docs = /Configuration reference: (\S+)/.exec(help.stdout)?.[1];
    expect(docs).toBeDefined();
    expect(fs.existsSync(docs ?? '')).toBe(true);
    const version = poolside(['--version']);
    expect(version.stdout).toMatch(/^poolside \d+\.\d+\.\d+\n$/);
  });

  it('starts with no reachable server, answers clients with a native error, and stops on SIGTERM', async () => {
    const dir = tempDir('poolside-cli-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'p.sock');
    const deadPort = await freePort();
    const file = writeConfig(
      [
        'admin: false',
        'pools:',
        '  cache:',
        '    protocol: redis',
        `    listen: ["unix:${socketPath}"]`,
        `    servers: ["127.0.0.1:${deadPort}"]`,
        '    queue: { timeout: 200ms }',
        '',
      ].join('\n'),
    );
    const { child, stderr: log, exited } = spawnPoolside(cleanup, ['--config', file]);
    await waitFor(() => log().includes('connect to server failed'), 'the log to say the server is unreachable', 15_000);

    const reply = await new Promise<string>((resolve, reject) => {
      const client = net.connect({ path: socketPath });
      let data = '';
      client.on('data', (chunk) => {
        data += chunk.toString();
        if (data.endsWith('\r\n')) {
          client.end();
          resolve(data);
        }
      });
      client.on('error', reject);
      client.write('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
    });
    expect(reply).toMatch(/^-ERR poolside (NO_HEALTHY_SERVER|POOL_TIMEOUT) /);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const stderr = log();
    expect(stderr).toContain('"msg":"poolside stopped"');
    expect(stderr).not.toMatch(/\n\s+at /);
    for (const line of stderr.trim().split('\n')) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    expect(fs.existsSync(socketPath)).toBe(false);
  });
});
