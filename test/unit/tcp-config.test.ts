/** protocol: tcp in the config: tcp.reset, a configured heartbeat, and what is refused with file:line. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { configWarnings } from '../../src/config/preflight.js';
import type { Config } from '../../src/config/schema.js';
import { stillMatches } from '../../src/pool/probe.js';

function parse(...pool: string[]): Config {
  return parseConfig(['admin: false', 'pools:', '  svc:', ...pool.map((line) => `    ${line}`), ''].join('\n'), 'config.yaml');
}

function problems(...pool: string[]): string[] {
  try {
    parse(...pool);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

const BASE = ['protocol: tcp', 'listen: 127.0.0.1:7000', 'servers: [127.0.0.1:7001]'];

describe('protocol: tcp', () => {
  it('has no heartbeat and no reset by default, and --check-config warns that a frozen server goes unseen', () => {
    const config = parse(...BASE);
    const pool = config.pools[0];
    expect(pool.tcp.reset).toBeNull();
    expect(pool.heartbeat.probe).toBeNull();
    expect(pool.heartbeat.intervalMs).toBe(0);
    expect(configWarnings(config).join('\n')).toMatch(/pools\.svc\.heartbeat: no heartbeat configured/);
  });

  it('reads tcp.reset and a heartbeat as hex send/expect', () => {
    const pool = parse(...BASE, 'tcp: { reset: { send: "50494e470d0a", expect: "2b504f4e470d0a" } }', 'heartbeat: { interval: 2s, send: "50494e470d0a", expect: { prefix: "2b504f4e47" } }').pools[0];
    expect(pool.tcp.reset).toEqual({ send: Buffer.from('PING\r\n'), expect: { kind: 'exact', bytes: Buffer.from('+PONG\r\n') } });
    expect(pool.heartbeat.probe).toEqual({ send: Buffer.from('PING\r\n'), expect: { kind: 'prefix', bytes: Buffer.from('+PONG') } });
    expect(pool.heartbeat.intervalMs).toBe(2000);
    expect(configWarnings(parse(...BASE, 'heartbeat: { send: "00", expect: "00" }'))).toEqual([]);
  });

  it('refuses a reset without expect, bad hex, and a tcp section on another protocol, each at its line', () => {
    expect(problems(...BASE, 'tcp: { reset: { send: "00" } }')).toEqual([expect.stringMatching(/^7:12 pools\.svc\.tcp\.reset\.expect: is required/)]);
    expect(problems(...BASE, 'tcp: { reset: { send: "0g", expect: "00" } }')).toEqual([expect.stringMatching(/^7:27 pools\.svc\.tcp\.reset\.send: .*not a hex digit/)]);
    expect(problems(...BASE, 'heartbeat: { send: "00", answer: { match: "01", reply: "02" } }')).toEqual([expect.stringMatching(/^7:38 pools\.svc\.heartbeat\.answer: a tcp pool frames nothing/)]);
    expect(problems(...BASE, 'routing: ketama')).toEqual([expect.stringMatching(/^7:14 pools\.svc\.routing: a tcp pool has no keys/)]);
    expect(problems('protocol: redis', 'listen: 127.0.0.1:7000', 'servers: [127.0.0.1:7001]', 'tcp: { reset: { send: "00", expect: "00" } }')).toEqual([
      expect.stringMatching(/^7:10 pools\.svc\.tcp: tcp applies only to protocol tcp/),
    ]);
  });
});

describe('docs/protocols.md', () => {
  it('the line-based TCP example is a valid config with the reset and heartbeat it describes', () => {
    const doc = readFileSync(new URL('../../docs/protocols.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Line-based TCP service'));
    const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    if (block === undefined) throw new Error('no yaml block in the line-based TCP section');
    const config = parseConfig(block, 'protocols.md');
    const pool = config.pools[0];
    expect(pool.protocol).toBe('tcp');
    expect(pool.tcp.reset?.send.toString()).toBe('RESET SESSION poolside-reset\r\n');
    expect(pool.tcp.reset?.expect).toEqual({ kind: 'exact', bytes: Buffer.from('+OK poolside-reset\r\n') });
    expect(pool.heartbeat.probe?.send.toString()).toBe('PING\r\n');
  });
});

describe('stillMatches: a stream read so far can still become the expected reply', () => {
  it('compares only the bytes read, within the expectation', () => {
    const exact = { kind: 'exact', bytes: Buffer.from('+PONG\r\n') } as const;
    expect(stillMatches(exact, Buffer.from('+PO'))).toBe(true);
    expect(stillMatches(exact, Buffer.from('-ERR'))).toBe(false);
    const mask = { kind: 'mask', mask: Buffer.from([0xff, 0x20]), value: Buffer.from([0xda, 0x20]) } as const;
    expect(stillMatches(mask, Buffer.from([0xda]))).toBe(true);
    expect(stillMatches(mask, Buffer.from([0xda, 0x00]))).toBe(false);
    expect(stillMatches(mask, Buffer.from([0xda, 0x3f, 0x99]))).toBe(true);
  });
});
