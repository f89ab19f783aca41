/**
 * Configured heartbeats for protocols that have no no-op of their own (`framed`, `tcp`): the bytes
 * to send, what proves the server alive, and the reply poolside gives to a server's own heartbeat
 * request. Written in the config as hex (spaces allowed); load.ts parses and places every problem
 * at its file:line. Pure: the codecs that use a probe only call `matches`.
 *
 *   heartbeat:
 *     send: "0000000470696e67"
 *     expect: "00000004706f6e67" | { prefix: "0000" } | { mask: "ff00", value: "2000" }
 *     answer: { match: <same forms as expect>, reply: "<hex>" }
 */
import type { Protocol } from './schema.js';
import { describe, fail, ok } from './validate.js';
import type { Parsed } from './validate.js';

/** Protocols with no no-op request of their own: their heartbeat is what the config says to send. */
export const PROBED_PROTOCOLS: ReadonlySet<Protocol> = new Set<Protocol>(['framed', 'tcp']);

/**
 * What proves a heartbeat answered: the reply is exactly `bytes`, starts with `bytes`, or, byte by
 * byte over the mask's length, `reply[i] & mask[i] === value[i]` (a flag bit in a header); `any`:
 * any reply at all.
 */
export type Expect =
  | { kind: 'any' }
  | { kind: 'exact'; bytes: Buffer }
  | { kind: 'prefix'; bytes: Buffer }
  | { kind: 'mask'; mask: Buffer; value: Buffer };

/** An outgoing heartbeat: sent on idle connections, answered by the server. */
export interface Probe {
  send: Buffer;
  expect: Expect;
}

/**
 * The other direction: a frame the server sends on its own that `match`es is a heartbeat request,
 * answered with `reply` (framed: with the server's request id copied into it).
 */
export interface ProbeAnswer {
  match: Expect;
  reply: Buffer;
}

/** Whether `bytes` (a whole reply, or what a stream has read so far) proves the server alive. */
export function matches(expect: Expect, bytes: Buffer): boolean {
  switch (expect.kind) {
    case 'any':
      return true;
    case 'exact':
      return bytes.equals(expect.bytes);
    case 'prefix':
      return bytes.length >= expect.bytes.length && bytes.compare(expect.bytes, 0, expect.bytes.length, 0, expect.bytes.length) === 0;
    case 'mask': {
      const { mask, value } = expect;
      if (bytes.length < mask.length) return false;
      for (let i = 0; i < mask.length; i++) if ((bytes[i] & mask[i]) !== value[i]) return false;
      return true;
    }
  }
}

/**
 * How many bytes a stream must have read before `matches` can say yes (exact, prefix, mask); 0 for
 * `any`. A raw TCP heartbeat reads this many bytes, then decides.
 */
export function expectLength(expect: Expect): number {
  switch (expect.kind) {
    case 'any':
      return 0;
    case 'exact':
    case 'prefix':
      return expect.bytes.length;
    case 'mask':
      return expect.mask.length;
  }
}

/** Hex as written in the config, for messages. */
export function formatHex(bytes: Buffer): string {
  return bytes.toString('hex');
}

/**
 * `"0000000470696e67"`, `"00 00 00 04 70 69 6e 67"`: whole bytes of hex digits, spaces (and an
 * optional 0x) allowed for reading. At least one byte.
 */
export function parseHex(value: unknown): Parsed<Buffer> {
  // An unquoted 0000 is a YAML number: the digits are lost, so it must be quoted.
  if (typeof value === 'number') return fail(`quote hex bytes (e.g. "${String(value)}"): unquoted, YAML reads them as the number ${value}`);
  if (typeof value !== 'string') return fail(`expected hex bytes such as "0000000470696e67", got ${describe(value)}`);
  const text = value.replace(/\s+/g, '').replace(/^0x/i, '');
  if (text === '') return fail('expected at least one byte of hex, got an empty string');
  const bad = /[^0-9a-fA-F]/.exec(text);
  if (bad !== null) return fail(`${JSON.stringify(bad[0])} is not a hex digit in ${describe(value)}`);
  if (text.length % 2 !== 0) return fail(`hex must be whole bytes (an even number of digits), got ${text.length} digits in ${describe(value)}`);
  return ok(Buffer.from(text, 'hex'));
}
