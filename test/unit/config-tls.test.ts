/** The `tls` option of pools and servers: files read and checked at load, problems with file:line:col. */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { ConfigProblem } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { tempDir } from '../helpers/servers.js';
import { makeCertificates } from '../helpers/tls.js';
import type { TestCertificates } from '../helpers/tls.js';

let certs: TestCertificates;
beforeAll(() => {
  certs = makeCertificates(tempDir('poolside-config-tls-'));
});
afterAll(() => fs.rmSync(certs.dir, { recursive: true, force: true }));

/** A config file in the certificates' directory, so relative paths resolve there. */
const file = (): string => path.join(certs.dir, 'poolside.yaml');
const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`;
const pool = (...lines: string[]): string => yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:7000', ...lines);
const parse = (text: string): Config => parseConfig(text, file(), {});

function problems(text: string): ConfigProblem[] {
  try {
    parse(text);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error('expected a ConfigError, the config was accepted');
}

describe('tls', () => {
  it('reads a pool default that every server inherits, relative paths beside the config file', () => {
    const config = parse(
      pool(
        '    tls: { ca_file: ca.crt, cert_file: client.crt, key_file: client.key, servername: cache.internal }',
        '    servers:',
        '      - 127.0.0.1:6379',
        '      - { address: 127.0.0.1:6380 }',
        '      - { address: 127.0.0.1:6381, tls: false }',
        '      - { address: 127.0.0.1:6382, tls: true }',
        '      - { address: 127.0.0.1:6383, tls: { ca_file: other-ca.crt, reject_unauthorized: false } }',
      ),
    );
    const [a, b, plain, system, own] = config.pools[0].servers.map((s) => s.tls);
    expect(a).toMatchObject({ caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile, servername: 'cache.internal', rejectUnauthorized: true });
    expect(a?.ca).toBe(fs.readFileSync(certs.caFile, 'utf8'));
    expect(a?.key).toBe(fs.readFileSync(certs.clientKeyFile, 'utf8'));
    expect(b).toEqual(a);
    expect(plain).toBeNull();
    expect(system).toEqual({ caFile: null, certFile: null, keyFile: null, ca: null, cert: null, key: null, servername: null, rejectUnauthorized: true });
    // A server's own tls replaces the pool's whole: no client certificate here.
    expect(own).toMatchObject({ caFile: certs.otherCaFile, certFile: null, keyFile: null, servername: null, rejectUnauthorized: false });
  });

  it('is off unless asked for', () => {
    expect(parse(pool('    servers: [127.0.0.1:6379]')).pools[0].servers[0].tls).toBeNull();
  });

  it('reports unreadable and non-PEM files at their line, never quoting them', () => {
    const text = pool('    servers:', '      - address: 127.0.0.1:6379', '        tls:', '          ca_file: nope.crt', '          cert_file: client.key', '          key_file: client.crt');
    const found = problems(text);
    expect(found.map((p) => [`${p.line}:${p.column}`, p.path, p.message])).toEqual([
      ['8:20', 'pools.cache.servers[0].tls.ca_file', `cannot read CA file ${path.join(certs.dir, 'nope.crt')} (ENOENT)`],
      ['9:22', 'pools.cache.servers[0].tls.cert_file', `certificate file ${certs.clientKeyFile} does not hold a PEM certificate`],
      ['10:21', 'pools.cache.servers[0].tls.key_file', `key file ${certs.clientCertFile} does not hold a PEM private key`],
    ]);
    expect(JSON.stringify(found)).not.toContain('PRIVATE KEY-----');
  });

  it('needs cert_file and key_file together, and the key must be the certificate\'s', () => {
    expect(problems(pool('    servers: [127.0.0.1:6379]', '    tls: { cert_file: client.crt }')).map((p) => [p.path, p.message])).toEqual([
      ['pools.cache.tls.cert_file', 'a client certificate needs both cert_file and key_file; key_file is missing'],
    ]);
    expect(problems(pool('    servers: [127.0.0.1:6379]', '    tls: { cert_file: client.crt, key_file: server.key }')).map((p) => [p.path, p.message])).toEqual([
      ['pools.cache.tls.key_file', 'key_file is not the key of cert_file'],
    ]);
  });

  it('rejects unknown keys and values of the wrong type', () => {
    const found = problems(pool('    servers: [127.0.0.1:6379]', '    tls: { ca_fiel: ca.crt, reject_unauthorized: "no", servername: "a b" }'));
    expect(found.map((p) => [p.path, p.message])).toEqual([
      ['pools.cache.tls.ca_fiel', 'unknown key; did you mean ca_file?'],
      ['pools.cache.tls.reject_unauthorized', 'expected true or false, got "no"'],
      ['pools.cache.tls.servername', 'expected a name without spaces, got "a b"'],
    ]);
  });
});
