import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ProtocolError, type ArgView } from '../../src/codec/codec.js';
import { RespRequestDecoder, commandName, type RespRequestDecoderOptions } from '../../src/codec/redis/resp.js';
import { allSpecs, commandSpec, requestSpec } from '../../src/codec/redis/commands.js';

// Review of issue 12's fast paths: #frameWhole (a whole plain multibulk in one pass) only runs
// when a request is whole in one chunk, so feeding the same stream one byte at a time is the state
// machine alone. Both must agree on every request, every argument, the error text and what is held.

const text = (b: Buffer): string => b.toString('latin1');

interface Outcome {
  frames: string[][];
  error: string | null;
  held: number;
}

/** With `toggle`, the sink sets pre-AUTH-style limits after a request named SET and lifts them after GET, as AUTH and RESET do. */
function decode(chunks: Buffer[], options: RespRequestDecoderOptions, toggle = false): Outcome {
  const frames: string[][] = [];
  const decoder: RespRequestDecoder = new RespRequestDecoder(
    {
      onRequest: (buf: Buffer, args: ArgView) => {
        const out = [text(buf)];
        for (let k = 0; k < args.count; k++) out.push(text(buf.subarray(args.starts[k], args.ends[k])));
        frames.push(out);
        if (toggle && out[1] === 'SET') decoder.setLimits({ maxArgs: 3, maxArgBytes: 5 });
        if (toggle && out[1] === 'GET') decoder.setLimits(null);
      },
    },
    options,
  );
  try {
    for (const chunk of chunks) decoder.push(chunk);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    return { frames, error: error.message, held: 0 };
  }
  return { frames, error: null, held: decoder.buffered };
}

function cut(input: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (input.length === 0 ? 0 : c % (input.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) out.push(input.subarray(from, p));
    from = Math.max(from, p);
  }
  if (from < input.length) out.push(input.subarray(from));
  return out;
}

function bytewise(input: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < input.length; p++) out.push(Buffer.from(input.subarray(p, p + 1)));
  return out;
}

describe('RespRequestDecoder fast path (review, issue 12)', () => {
  it('frames exactly like the state machine alone, under any chunking, errors and limits included', () => {
    const arg = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'abcGETSX019 '), maxLength: 6 }),
      fc.uint8Array({ maxLength: 12 }).map((a) => text(Buffer.from(a))),
    );
    const wellFormed = fc.array(arg, { minLength: 1, maxLength: 20 }).map((args) => `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`);
    // Near misses: leading zeros, negative and zero counts, counts past max, wrong lengths, bad CRLF, inline.
    const odd = fc.constantFrom(
      '*0\r\n', '*-1\r\n', '*-0\r\n', '*01\r\n$3\r\nGET\r\n', '*1\r\n$03\r\nGET\r\n', '*1\r\n$0\r\n\r\n', '*2\r\n$3\r\nGET\r\n$00\r\n\r\n',
      '*1\r\n$3\r\nGETX\r\n', '*1\r\n$3\r\nSET\r\n', '*1\r\n$3\r\nGET\r\n', '*2\r\n$3\r\nSET\r\n$6\r\nabcdef\r\n', '*1\r\n$3\r\nGE\r\n', '*1\r\n$-1\r\n', '*1\r\n$3\nGET\r\n', '*1\n$3\r\nGET\r\n', '*1\r\n*3\r\n', '*\r\n',
      '*1234567890\r\n', '*1\r\n$1234567890\r\n', '*1\r\n$\r\n\r\n', '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n', 'get k\r\n', 'set k "v w"\n',
      '\r\n', '\n', '*1\r\n$4\r\nPING\r\r', '*1x\r\n', '*1\r\n$3x\r\nGET\r\n', '*17\r\n', '*40\r\n', '*1\r\n$20\r\n', '*+1\r\n', '*1 \r\n',
    );
    const mutate = fc.tuple(wellFormed, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, at, b]) =>
      s.length === 0 ? s : s.slice(0, at % s.length) + String.fromCharCode(b) + s.slice((at % s.length) + 1),
    );
    const stream = fc.array(fc.oneof(wellFormed, wellFormed, odd, mutate), { maxLength: 10 }).map((parts) => Buffer.from(parts.join(''), 'latin1'));
    const options = fc.record({
      maxRequestBytes: fc.constantFrom(undefined, 16, 40, 64, 200),
      maxArgs: fc.constantFrom(undefined, 1, 3, 16, 17),
    }).map((o) => {
      const out: RespRequestDecoderOptions = {};
      if (o.maxRequestBytes !== undefined) out.maxRequestBytes = o.maxRequestBytes;
      if (o.maxArgs !== undefined) out.maxArgs = o.maxArgs;
      return out;
    });
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 8 }), options, fc.boolean(), (input, cuts, opts, toggle) => {
        let want: Outcome;
        try {
          want = decode(bytewise(input), opts, toggle);
        } catch (error) {
          // An options combination the constructor refuses is not this property's business.
          if (error instanceof ProtocolError) throw error;
          return;
        }
        expect(decode([input], opts, toggle)).toEqual(want);
        expect(decode(cut(input, cuts), opts, toggle)).toEqual(want);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('requestSpec cache (review, issue 12)', () => {
  const names = [...new Set(allSpecs().map((s) => s.name.split(' ')[0] as string))];

  function view(parts: Buffer[]): { bytes: Buffer; args: ArgView } {
    const starts = new Int32Array(Math.max(1, parts.length));
    const ends = new Int32Array(Math.max(1, parts.length));
    let at = 0;
    parts.forEach((p, k) => {
      starts[k] = at;
      ends[k] = at + p.length;
      at += p.length + 1;
    });
    return { bytes: Buffer.concat(parts.flatMap((p) => [p, Buffer.from(' ')])), args: { count: parts.length, starts, ends } };
  }

  it('is commandSpec for any name in any case with any arguments, whatever came before', () => {
    const randomCase = fc.tuple(fc.constantFrom(...names), fc.array(fc.boolean(), { minLength: 32, maxLength: 32 })).map(([n, flips]) =>
      Buffer.from([...n].map((ch, i) => (flips[i] === true ? ch.toLowerCase() : ch)).join(''), 'latin1'),
    );
    const nearName = fc.tuple(fc.constantFrom(...names), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([n, at, b]) => {
      const buf = Buffer.from(n, 'latin1');
      buf[at % buf.length] = b;
      return buf;
    });
    const junk = fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a));
    const name = fc.oneof(randomCase, randomCase, nearName, junk);
    const arg = fc.oneof(fc.constantFrom('2', '3', 'BLOCK', 'block', 'STREAMS', 'KILL', 'list', 'GET', 'k', ''), fc.string({ maxLength: 6 })).map((s) => Buffer.from(s, 'latin1'));
    const request = fc.tuple(name, fc.array(arg, { maxLength: 4 }));
    fc.assert(
      fc.property(fc.array(request, { minLength: 1, maxLength: 30 }), (requests) => {
        for (const [n, rest] of requests) {
          const { bytes, args } = view([n, ...rest]);
          const want = commandSpec(commandName(bytes, args), bytes, args.starts, args.ends, args.count);
          const got = requestSpec(bytes, args);
          if (want.name === commandName(bytes, args) && !names.includes(want.name)) {
            // Unknown names: a fresh spec each time is allowed only where commandSpec gives one too.
            expect(got).toEqual(want);
          } else {
            expect(got).toBe(want);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
