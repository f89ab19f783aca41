/**
 * Nothing derived from client bytes is kept without a bound: a command name a client made up, or
 * an error text quoting one, must not cost poolside memory per distinct value.
 */
import { describe, expect, it } from 'vitest';
import type { ArgView } from '../../src/codec/codec.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import { commandName, encodeCommand, RespRequestDecoder } from '../../src/codec/redis/resp.js';

function framed<T>(request: Buffer, use: (bytes: Buffer, view: ArgView) => T): T {
  let out: T | undefined;
  new RespRequestDecoder({ onRequest: (bytes, view) => (out = use(bytes, view)) }).push(request);
  if (out === undefined) throw new Error('no request framed');
  return out;
}

const heap = (): number => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};

describe('redis codec bounds on client-made names', () => {
  it('names a command longer than 64 bytes by a 64-byte prefix that matches no command', () => {
    const long = Buffer.alloc(1 << 20, 'a');
    const name = framed(encodeCommand([long]), commandName);
    expect(name).toBe(`${'A'.repeat(64)}…`);
    expect(framed(encodeCommand(['g'.repeat(64)]), commandName)).toBe('G'.repeat(64));
  });

  it('keeps nothing per distinct huge unknown command name', () => {
    const size = 1 << 20;
    const names = 64;
    const request = encodeCommand([Buffer.alloc(size, 'q'), 'key']);
    const before = heap();
    for (let i = 0; i < names; i++) {
      // A distinct name each time, as the attack sent: only the first bytes differ.
      request.write(i.toString(36).padStart(4, '0'), request.indexOf('qqqq'), 'latin1');
      const spec = framed(request, (bytes, view) => redisCodec.classify(bytes, view));
      expect(spec.name.length).toBeLessThanOrEqual(65);
    }
    // Kept per name, 64 names of 1 MiB would be 64 MiB; garbage not yet collected counts too.
    expect(heap() - before).toBeLessThan(16 * size);
  });

  it('quotes at most a short prefix of a client name in an error reply, and does not cache long texts', () => {
    const big = `${'n'.repeat(1 << 20)} has no key`;
    const before = heap();
    for (let i = 0; i < 64; i++) {
      // Distinct texts without a megabyte of garbage each: slices share the big string.
      const reply = redisCodec.errorReply('UNSUPPORTED_COMMAND', big.slice(i));
      expect(reply.length).toBeLessThan(1024);
      expect(reply.toString('utf8')).toMatch(/^-ERR poolside UNSUPPORTED_COMMAND n+…\r\n$/);
    }
    expect(heap() - before).toBeLessThan(16 << 20);
  });
});
