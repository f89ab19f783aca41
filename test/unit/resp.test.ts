import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ProtocolError, type ArgView, type RequestLimits } from '../../src/codec/codec.js';
import {
  RespRequestDecoder,
  RespResponseDecoder,
  commandName,
  encodeCommand,
  encodeError,
  type RespRequestDecoderOptions,
  type RespResponseDecoderOptions,
} from '../../src/codec/redis/resp.js';

// Wire bytes are written as latin1 strings: every byte 0-255 is one character, so binary payloads
// survive and the expectations stay readable.
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (b: Buffer): string => b.toString('latin1');
/** Bytes in an ArrayBuffer of their own: small Buffer.from() results share Node's pool. */
const unpooled = (s: string): Buffer => {
  const buf = Buffer.alloc(s.length);
  buf.write(s, 'latin1');
  return buf;
};

interface RequestFrame {
  bytes: string;
  args: string[];
}

interface Outcome<F> {
  frames: F[];
  error: string | null;
  /** `buffered` for requests, `midFrame` for responses, after the last push. */
  held: number | boolean;
}

function argsOf(buf: Buffer, args: ArgView): string[] {
  const out: string[] = [];
  for (let k = 0; k < args.count; k++) out.push(text(buf.subarray(args.starts[k], args.ends[k])));
  return out;
}

function decodeRequests(chunks: Buffer[], options?: RespRequestDecoderOptions): Outcome<RequestFrame> {
  const frames: RequestFrame[] = [];
  const decoder = new RespRequestDecoder(
    { onRequest: (buf, args) => frames.push({ bytes: text(buf), args: argsOf(buf, args) }) },
    options,
  );
  return feed(chunks, frames, (chunk) => decoder.push(chunk), () => decoder.buffered);
}

function decodeResponses(chunks: Buffer[], options?: RespResponseDecoderOptions): Outcome<string> {
  const frames: string[] = [];
  const decoder = new RespResponseDecoder({ onResponse: (buf) => frames.push(text(buf)) }, options);
  return feed(chunks, frames, (chunk) => decoder.push(chunk), () => decoder.midFrame);
}

function feed<F>(chunks: Buffer[], frames: F[], push: (chunk: Buffer) => void, held: () => number | boolean): Outcome<F> {
  try {
    for (const chunk of chunks) push(chunk);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    return { frames, error: error.message, held: 0 };
  }
  return { frames, error: null, held: held() };
}

/** Every way the suite splits a stream: whole, byte by byte, and in two at every position. */
function everySplit(input: Buffer): { name: string; chunks: Buffer[] }[] {
  const out = [{ name: 'whole', chunks: [input] }];
  const single: Buffer[] = [];
  for (let p = 0; p < input.length; p++) single.push(Buffer.from(input.subarray(p, p + 1)));
  out.push({ name: 'byte by byte', chunks: single });
  for (let p = 1; p < input.length; p++) {
    out.push({ name: `split at ${p}`, chunks: [input.subarray(0, p), input.subarray(p)] });
  }
  return out;
}

/** Decodes `input` every way and asserts every way agrees; returns the agreed outcome. */
function decodeEveryWay<F>(input: string, decode: (chunks: Buffer[]) => Outcome<F>): Outcome<F> {
  const [whole, ...rest] = everySplit(bytes(input));
  const expected = decode(whole.chunks);
  for (const { name, chunks } of rest) expect(decode(chunks), name).toEqual(expected);
  return expected;
}

const requestsEveryWay = (input: string, options?: RespRequestDecoderOptions): Outcome<RequestFrame> =>
  decodeEveryWay(input, (chunks) => decodeRequests(chunks, options));
const responsesEveryWay = (input: string, options?: RespResponseDecoderOptions): Outcome<string> =>
  decodeEveryWay(input, (chunks) => decodeResponses(chunks, options));

/** A multibulk request written out independently of the code under test. */
function multibulk(args: readonly string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${a.length}\r\n${a}\r\n`).join('');
}

const request = (...args: string[]): RequestFrame => ({ bytes: multibulk(args), args });

describe('RespRequestDecoder', () => {
  const cases: { name: string; input: string; frames: RequestFrame[]; options?: RespRequestDecoderOptions }[] = [
    { name: 'a one-argument command', input: multibulk(['PING']), frames: [request('PING')] },
    { name: 'a command with arguments', input: multibulk(['SET', 'key', 'value']), frames: [request('SET', 'key', 'value')] },
    {
      name: 'several pipelined requests in one stream',
      input: multibulk(['GET', 'a']) + multibulk(['INCR', 'counter']) + multibulk(['MGET', 'a', 'b', 'c']),
      frames: [request('GET', 'a'), request('INCR', 'counter'), request('MGET', 'a', 'b', 'c')],
    },
    {
      name: 'binary payloads containing CRLF, NUL and high bytes',
      input: multibulk(['SET', 'k\r\n', '\r\n*1\r\n$3\r\n\x00\xff']),
      frames: [request('SET', 'k\r\n', '\r\n*1\r\n$3\r\n\x00\xff')],
    },
    { name: 'an empty bulk string', input: multibulk(['SET', '', '']), frames: [request('SET', '', '')] },
    {
      name: 'a payload of ten thousand bytes',
      input: multibulk(['SET', 'big', 'x'.repeat(10_000)]),
      frames: [request('SET', 'big', 'x'.repeat(10_000))],
    },
    {
      name: 'requests around *0 and *-1, which Redis ignores',
      input: '*0\r\n' + multibulk(['PING']) + '*-1\r\n*0\r\n' + multibulk(['ECHO', 'x']),
      frames: [request('PING'), request('ECHO', 'x')],
    },
    {
      name: 'requests around any negative count, which Redis takes as empty as it does *-1',
      input: '*-2\r\n' + multibulk(['PING']) + '*-9223372036854775808\r\n' + multibulk(['ECHO', 'x']),
      frames: [request('PING'), request('ECHO', 'x')],
    },
    { name: 'an inline command ending in CRLF', input: 'PING\r\n', frames: [request('PING')] },
    { name: 'an inline command ending in LF alone', input: 'get  key\n', frames: [request('get', 'key')] },
    { name: 'inline tabs and blanks around words', input: ' \tSET\tk  v \t\r\n', frames: [request('SET', 'k', 'v')] },
    {
      name: 'inline double quotes with escapes',
      input: 'SET k "a b\\n\\r\\t\\b\\a\\\\\\"\\x41\\xfF\\xZZ\\q"\r\n',
      frames: [request('SET', 'k', 'a b\n\r\t\b\x07\\"A\xffxZZq')],
    },
    {
      name: 'inline single quotes keep backslashes except before a quote',
      input: "SET k 'it\\'s \\n raw'\n",
      frames: [request('SET', 'k', "it's \\n raw")],
    },
    { name: 'inline quotes opened inside a word, and empty quotes', input: 'a"b c" ""\n', frames: [request('ab c', '')] },
    {
      name: 'skips empty and blank inline lines',
      input: '\r\n\n   \r\nPING\n\n',
      frames: [request('PING')],
    },
    {
      name: 'mixes inline and multibulk requests',
      input: 'PING\r\n' + multibulk(['GET', 'k']) + 'ECHO "x y"\n',
      frames: [request('PING'), request('GET', 'k'), request('ECHO', 'x y')],
    },
    { name: 'ends an inline line at a NUL byte as Redis does', input: 'GET k\x00ignored\n', frames: [request('GET', 'k')] },
    {
      name: 'accepts a request of exactly maxRequestBytes',
      input: multibulk(['GET', 'abc']),
      options: { maxRequestBytes: multibulk(['GET', 'abc']).length },
      frames: [request('GET', 'abc')],
    },
    {
      name: 'accepts an inline line of exactly maxInlineBytes',
      input: 'PING abc\r\n',
      options: { maxInlineBytes: 'PING abc\r'.length },
      frames: [request('PING', 'abc')],
    },
  ];

  for (const { name, input, frames, options } of cases) {
    it(`frames ${name}`, () => {
      expect(requestsEveryWay(input, options)).toEqual({ frames, error: null, held: 0 });
    });
  }

  const errors: { name: string; input: string; error: string; frames?: RequestFrame[]; options?: RespRequestDecoderOptions }[] = [
    { name: 'a bad type byte where $ belongs', input: '*1\r\nx3\r\nGET\r\n', error: "Protocol error: expected '$', got 'x'" },
    { name: 'an unprintable bad type byte', input: '*1\r\n\x00', error: "Protocol error: expected '$', got '\\x00'" },
    { name: 'a non-digit multibulk count', input: '*1x\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'an empty multibulk count', input: '*\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a multibulk count of a minus sign alone', input: '*-\r\n', error: 'Protocol error: invalid multibulk length' },
    {
      name: 'a negative multibulk count past LLONG_MIN, before its line ends',
      input: '*-99999999999999999999',
      error: 'Protocol error: invalid multibulk length',
    },
    {
      name: 'a count more arguments than maxRequestBytes can hold',
      input: '*11\r\n',
      options: { maxRequestBytes: 60 },
      error: 'Protocol error: invalid multibulk length',
    },
    { name: 'a multibulk count of -0', input: '*-0\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a multibulk count with a leading zero', input: '*01\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a multibulk count with a plus sign', input: '*+1\r\n', error: 'Protocol error: invalid multibulk length' },
    {
      name: 'a huge multibulk count, before its line ends',
      input: '*99999999999999999999999999',
      error: 'Protocol error: invalid multibulk length',
    },
    { name: 'a count above maxArgs', input: '*4\r\n', options: { maxArgs: 3 }, error: 'Protocol error: invalid multibulk length' },
    { name: 'a CR not followed by LF in the count', input: '*1\rx', error: 'Protocol error: invalid multibulk length' },
    { name: 'a negative bulk length', input: '*1\r\n$-1\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'a non-digit bulk length', input: '*1\r\n$3a\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'an empty bulk length', input: '*1\r\n$\r\n', error: 'Protocol error: invalid bulk length' },
    {
      name: 'a huge bulk length, before its line ends',
      input: '*1\r\n$99999999999999999999999',
      error: 'Protocol error: invalid bulk length',
    },
    {
      name: 'a bulk length above maxRequestBytes',
      input: '*1\r\n$101\r\n',
      options: { maxRequestBytes: 100 },
      error: 'Protocol error: invalid bulk length',
    },
    {
      name: 'a request one byte over maxRequestBytes, as soon as its last length is known',
      input: multibulk(['GET', 'ab']) + multibulk(['GET', 'abc']),
      options: { maxRequestBytes: multibulk(['GET', 'ab']).length },
      frames: [request('GET', 'ab')],
      error: `Protocol error: request larger than ${multibulk(['GET', 'ab']).length} bytes`,
    },
    {
      name: 'a payload longer than its length (missing CRLF)',
      input: multibulk(['PING']) + '*1\r\n$3\r\nGETX\r\n',
      frames: [request('PING')],
      error: 'Protocol error: expected CRLF after bulk string',
    },
    { name: 'a payload followed by CR and not LF', input: '*1\r\n$3\r\nGET\rX', error: 'Protocol error: expected CRLF after bulk string' },
    { name: 'an unbalanced double quote', input: 'SET k "abc\r\n', error: 'Protocol error: unbalanced quotes in request' },
    { name: 'an unbalanced single quote', input: "SET k 'abc\n", error: 'Protocol error: unbalanced quotes in request' },
    { name: 'a closing quote followed by a letter', input: 'SET "k"v\n', error: 'Protocol error: unbalanced quotes in request' },
    {
      name: 'an inline line longer than maxInlineBytes without a newline',
      input: 'PING ' + 'x'.repeat(30),
      options: { maxInlineBytes: 20 },
      error: 'Protocol error: too big inline request',
    },
    {
      name: 'an inline line longer than maxInlineBytes even when its newline arrives with it',
      input: 'PING ' + 'x'.repeat(30) + '\r\n',
      options: { maxInlineBytes: 20 },
      error: 'Protocol error: too big inline request',
    },
  ];

  for (const { name, input, error, frames = [], options } of errors) {
    it(`rejects ${name}`, () => {
      expect(requestsEveryWay(input, options)).toEqual({ frames, error, held: 0 });
    });
  }

  it('delivers a request wholly inside a chunk as a view of that chunk, without copying', () => {
    const chunk = unpooled(multibulk(['GET', 'a']) + multibulk(['GET', 'b']) + '*2\r\n$3\r\nGET');
    const views: Buffer[] = [];
    const decoder = new RespRequestDecoder({ onRequest: (buf) => views.push(buf) });
    decoder.push(chunk);
    expect(views).toHaveLength(2);
    expect(views[0].buffer).toBe(chunk.buffer);
    expect(views[0].byteOffset).toBe(chunk.byteOffset);
    expect(views[1].buffer).toBe(chunk.buffer);
    expect(views[1].byteOffset).toBe(chunk.byteOffset + multibulk(['GET', 'a']).length);
    expect(decoder.buffered).toBe('*2\r\n$3\r\nGET'.length);

    // A request spread over chunks is copied once into a buffer of its own.
    const tail = unpooled('\r\n$1\r\nc\r\n');
    decoder.push(tail);
    expect(views).toHaveLength(3);
    expect(views[2].buffer).not.toBe(chunk.buffer);
    expect(views[2].buffer).not.toBe(tail.buffer);
    expect(text(views[2])).toBe(multibulk(['GET', 'c']));
    expect(decoder.buffered).toBe(0);
  });

  it('reuses one ArgView and grows it for requests with many arguments', () => {
    const seen: ArgView[] = [];
    const counts: number[] = [];
    const decoder = new RespRequestDecoder({
      onRequest: (_buf, args) => {
        seen.push(args);
        counts.push(args.count);
      },
    });
    const many = Array.from({ length: 100 }, (_, k) => `k${k}`);
    decoder.push(bytes(multibulk(['GET', 'a']) + multibulk(['MGET', ...many]) + 'PING\r\n'));
    expect(counts).toEqual([2, 101, 1]);
    expect(seen[1]).toBe(seen[0]);
    expect(seen[2]).toBe(seen[0]);
  });


  it('keeps each client’s half-read request apart while decoders share their scratch offsets', () => {
    // Decoders frame into one process-wide ArgView and keep offsets of their own only while a
    // request spans pushes; interleaved clients, and a push made from inside another decoder's
    // onRequest, must never see each other's arguments.
    const frames: string[][] = [];
    const a = new RespRequestDecoder({ onRequest: (buf, args) => frames.push(['a', ...argsOf(buf, args)]) });
    const c = new RespRequestDecoder({ onRequest: (buf, args) => frames.push(['c', ...argsOf(buf, args)]) });
    const d = new RespRequestDecoder({ onRequest: (buf, args) => frames.push(['d', ...argsOf(buf, args)]) });
    const b = new RespRequestDecoder({
      onRequest: (buf, args) => {
        const before = argsOf(buf, args);
        d.push(bytes(multibulk(['GET', 'nested'])));
        frames.push(['b', ...before], ['b-after', ...argsOf(buf, args)]);
      },
    });
    const many = Array.from({ length: 40 }, (_, k) => `k${k}`);
    const mset = multibulk(['MSET', ...many]);
    a.push(bytes('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva'));
    b.push(bytes(mset.slice(0, 60)));
    c.push(bytes(multibulk(['INCR', 'n']) + '*2\r\n$3\r\nGE'));
    a.push(bytes('lue\r\n'));
    b.push(bytes(mset.slice(60) + multibulk(['PING'])));
    c.push(bytes('T\r\n$1\r\nz\r\n'));
    expect(frames).toEqual([
      ['c', 'INCR', 'n'],
      ['a', 'SET', 'key', 'value'],
      ['d', 'GET', 'nested'],
      ['b', 'MSET', ...many],
      ['b-after', 'MSET', ...many],
      ['d', 'GET', 'nested'],
      ['b', 'PING'],
      ['b-after', 'PING'],
      ['c', 'GET', 'z'],
    ]);
    for (const decoder of [a, b, c, d]) expect(decoder.buffered).toBe(0);
  });
  it('re-encodes an inline command as a multibulk with offsets into it', () => {
    const out = decodeRequests([bytes('set k "v w"\r\n')]);
    expect(out.frames).toEqual([{ bytes: multibulk(['set', 'k', 'v w']), args: ['set', 'k', 'v w'] }]);
  });

  it('keeps failing after a protocol error', () => {
    const decoder = new RespRequestDecoder({ onRequest: () => undefined });
    expect(() => decoder.push(bytes('*x\r\n'))).toThrow(ProtocolError);
    expect(() => decoder.push(bytes(multibulk(['PING'])))).toThrow(ProtocolError);
  });

  it('accepts more than 1,048,576 arguments, as Redis 7 does, when maxRequestBytes holds them', () => {
    const count = 1024 * 1024 + 1;
    const input = Buffer.from(`*${count + 1}\r\n$4\r\nMSET\r\n` + '$0\r\n\r\n'.repeat(count), 'latin1');
    let seen = 0;
    const decoder = new RespRequestDecoder({ onRequest: (_buf, args) => (seen = args.count) });
    decoder.push(input);
    expect(seen).toBe(count + 1);
  });

  it('rejects limits an ArgView offset cannot hold', () => {
    expect(() => new RespRequestDecoder({ onRequest: () => undefined }, { maxRequestBytes: 2 ** 31 })).toThrow(RangeError);
    expect(() => new RespRequestDecoder({ onRequest: () => undefined }, { maxArgs: 0 })).toThrow(RangeError);
  });

  it('reproduces any stream of valid requests however it is chunked (property)', () => {
    const word = fc.string({ unit: fc.constantFrom(...'abcXYZ019:_-{}'), minLength: 1, maxLength: 8 });
    const binary = fc.uint8Array({ maxLength: 24 }).map((a) => text(Buffer.from(a)));
    const multibulkRequest = fc
      .array(binary, { minLength: 1, maxLength: 6 })
      .map((args) => ({ input: multibulk(args), frame: request(...args) }));
    const inlineRequest = fc
      .tuple(fc.array(word, { minLength: 1, maxLength: 5 }), fc.constantFrom('\r\n', '\n'), fc.constantFrom(' ', '\t', '  '))
      .map(([words, end, blank]) => ({ input: words.join(blank) + end, frame: request(...words) }));
    const ignored = fc.constantFrom('*0\r\n', '*-1\r\n', '\r\n', '\n').map((input) => ({ input, frame: null }));
    const stream = fc.array(fc.oneof(multibulkRequest, multibulkRequest, inlineRequest, ignored), { maxLength: 12 });

    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 10 }), (items, cuts) => {
        const input = bytes(items.map((item) => item.input).join(''));
        const expected = items.flatMap((item) => (item.frame === null ? [] : [item.frame]));
        expect(decodeRequests(chunked(input, cuts))).toEqual({ frames: expected, error: null, held: 0 });
      }),
      { numRuns: 500 },
    );
  });
});

/** `input` cut at the given positions (taken modulo its length). */
function chunked(input: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (input.length === 0 ? 0 : c % input.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const to of at) {
    chunks.push(input.subarray(from, to));
    from = to;
  }
  chunks.push(input.subarray(from));
  return chunks;
}

describe('RespResponseDecoder', () => {
  const cases: { name: string; input: string; frames: string[] }[] = [
    { name: 'a simple string', input: '+OK\r\n', frames: ['+OK\r\n'] },
    { name: 'an error', input: '-ERR unknown command\r\n', frames: ['-ERR unknown command\r\n'] },
    { name: 'an integer', input: ':-1000\r\n', frames: [':-1000\r\n'] },
    { name: 'a bulk string containing CRLF', input: '$7\r\na\r\n$1\r\n\r\n', frames: ['$7\r\na\r\n$1\r\n\r\n'] },
    { name: 'an empty bulk string', input: '$0\r\n\r\n', frames: ['$0\r\n\r\n'] },
    { name: 'a RESP2 null bulk string', input: '$-1\r\n', frames: ['$-1\r\n'] },
    { name: 'a RESP2 null array', input: '*-1\r\n', frames: ['*-1\r\n'] },
    { name: 'an empty array', input: '*0\r\n', frames: ['*0\r\n'] },
    { name: 'an array', input: '*3\r\n$3\r\nfoo\r\n:1\r\n+x\r\n', frames: ['*3\r\n$3\r\nfoo\r\n:1\r\n+x\r\n'] },
    { name: 'a RESP3 null', input: '_\r\n', frames: ['_\r\n'] },
    { name: 'a double', input: ',3.14\r\n,inf\r\n', frames: [',3.14\r\n', ',inf\r\n'] },
    { name: 'booleans', input: '#t\r\n#f\r\n', frames: ['#t\r\n', '#f\r\n'] },
    { name: 'a big number', input: '(3492890328409238509324850943850943825024385\r\n', frames: ['(3492890328409238509324850943850943825024385\r\n'] },
    { name: 'a blob error', input: '!21\r\nSYNTAX invalid syntax\r\n', frames: ['!21\r\nSYNTAX invalid syntax\r\n'] },
    { name: 'a verbatim string', input: '=15\r\ntxt:Some string\r\n', frames: ['=15\r\ntxt:Some string\r\n'] },
    { name: 'a map', input: '%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n', frames: ['%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n'] },
    { name: 'an empty map and set', input: '%0\r\n~0\r\n', frames: ['%0\r\n', '~0\r\n'] },
    { name: 'a set', input: '~2\r\n+a\r\n+b\r\n', frames: ['~2\r\n+a\r\n+b\r\n'] },
    {
      name: 'a push among replies',
      input: ':1\r\n>3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n:2\r\n',
      frames: [':1\r\n', '>3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n', ':2\r\n'],
    },
    {
      name: 'nested aggregates',
      input: '*2\r\n*2\r\n%1\r\n+k\r\n*1\r\n~1\r\n:1\r\n$-1\r\n*0\r\n+after\r\n',
      frames: ['*2\r\n*2\r\n%1\r\n+k\r\n*1\r\n~1\r\n:1\r\n$-1\r\n*0\r\n', '+after\r\n'],
    },
    {
      name: 'an attribute together with the reply it annotates',
      input: '|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.05\r\n*2\r\n:2039123\r\n:9543892\r\n+next\r\n',
      frames: [
        '|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.05\r\n*2\r\n:2039123\r\n:9543892\r\n',
        '+next\r\n',
      ],
    },
    {
      name: 'an attribute inside an array, which is not one of its elements',
      input: '*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n',
      frames: ['*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n', ':3\r\n'],
    },
    { name: 'an empty attribute', input: '|0\r\n+OK\r\n', frames: ['|0\r\n+OK\r\n'] },
    { name: 'attributes in a row', input: '|0\r\n|1\r\n+a\r\n+b\r\n:1\r\n', frames: ['|0\r\n|1\r\n+a\r\n+b\r\n:1\r\n'] },
    {
      name: 'a streamed string',
      input: '$?\r\n;4\r\nHell\r\n;5\r\no\r\nwo\r\n;1\r\nd\r\n;0\r\n+next\r\n',
      frames: ['$?\r\n;4\r\nHell\r\n;5\r\no\r\nwo\r\n;1\r\nd\r\n;0\r\n', '+next\r\n'],
    },
    { name: 'an empty streamed string', input: '$?\r\n;0\r\n', frames: ['$?\r\n;0\r\n'] },
    {
      name: 'streamed aggregates, nested and empty',
      input: '*?\r\n:1\r\n%?\r\n+a\r\n:1\r\n.\r\n*1\r\n~?\r\n.\r\n.\r\n:9\r\n',
      frames: ['*?\r\n:1\r\n%?\r\n+a\r\n:1\r\n.\r\n*1\r\n~?\r\n.\r\n.\r\n', ':9\r\n'],
    },
    {
      name: 'a streamed string inside a streamed aggregate',
      input: '~?\r\n$?\r\n;1\r\na\r\n;0\r\n.\r\n',
      frames: ['~?\r\n$?\r\n;1\r\na\r\n;0\r\n.\r\n'],
    },
    {
      name: 'an aggregate nested two hundred deep',
      input: '*1\r\n'.repeat(200) + ':1\r\n',
      frames: ['*1\r\n'.repeat(200) + ':1\r\n'],
    },
  ];

  for (const { name, input, frames } of cases) {
    it(`frames ${name}`, () => {
      expect(responsesEveryWay(input)).toEqual({ frames, error: null, held: false });
    });
  }

  const errors: { name: string; input: string; error: string; frames?: string[]; options?: RespResponseDecoderOptions }[] = [
    { name: 'an unknown type byte', input: '+OK\r\n?x\r\n', frames: ['+OK\r\n'], error: "Protocol error: unknown reply type byte '?'" },
    { name: 'a non-digit bulk length', input: '$1x\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'a negative bulk length other than -1', input: '$-2\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'a bulk length with a leading zero', input: '$01\r\na\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'a null blob error', input: '!-1\r\n', error: 'Protocol error: invalid bulk length' },
    { name: 'a null map', input: '%-1\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a streamed attribute', input: '|?\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'digits after ?', input: '*?1\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a huge array count, before its line ends', input: '*99999999999999999999', error: 'Protocol error: invalid multibulk length' },
    {
      name: 'a bulk longer than maxBulkBytes',
      input: '$11\r\n',
      options: { maxBulkBytes: 10 },
      error: 'Protocol error: invalid bulk length',
    },
    {
      name: 'a simple line longer than maxBulkBytes',
      input: '+' + 'x'.repeat(11),
      options: { maxBulkBytes: 10 },
      error: 'Protocol error: line too long',
    },
    { name: 'a payload longer than its length', input: '$3\r\nabcd\r\n', error: 'Protocol error: expected CRLF after bulk string' },
    { name: 'a CR without LF after a line', input: '+OK\rX', error: 'Protocol error: expected LF after CR' },
    { name: 'a CR without LF after a length', input: '*1\r:1\r\n', error: 'Protocol error: invalid multibulk length' },
    { name: 'a streamed string chunk without ;', input: '$?\r\n$1\r\na\r\n', error: "Protocol error: expected ';', got '$'" },
    { name: 'a . outside a streamed aggregate', input: '*1\r\n.\r\n', error: "Protocol error: '.' outside a streamed aggregate" },
    { name: 'a . line with content', input: '*?\r\n.x\r\n', error: 'Protocol error: invalid streamed aggregate end' },
  ];

  for (const { name, input, error, frames = [], options } of errors) {
    it(`rejects ${name}`, () => {
      expect(responsesEveryWay(input, options)).toEqual({ frames, error, held: 0 });
    });
  }

  it('delivers a response wholly inside a chunk as a view of that chunk, without copying', () => {
    const chunk = unpooled('+OK\r\n$3\r\nabc\r\n*2\r\n:1');
    const views: Buffer[] = [];
    const decoder = new RespResponseDecoder({ onResponse: (buf) => views.push(buf) });
    decoder.push(chunk);
    expect(views.map((v) => [v.buffer === chunk.buffer, v.byteOffset - chunk.byteOffset])).toEqual([
      [true, 0],
      [true, 5],
    ]);
    expect(decoder.midFrame).toBe(true);
    decoder.push(unpooled('\r\n:2\r\n'));
    expect(text(views[2])).toBe('*2\r\n:1\r\n:2\r\n');
    expect(views[2].buffer).not.toBe(chunk.buffer);
    expect(decoder.midFrame).toBe(false);
  });

  it('frames a million-deep nesting without recursion', () => {
    const depth = 1_000_000;
    const frames = decodeResponses([bytes('*1\r\n'.repeat(depth) + '_\r\n')]).frames;
    expect(frames).toHaveLength(1);
    expect(frames[0].length).toBe(depth * 4 + 3);
  });

  it('keeps failing after a protocol error', () => {
    const decoder = new RespResponseDecoder({ onResponse: () => undefined });
    expect(() => decoder.push(bytes('?\r\n'))).toThrow(ProtocolError);
    expect(() => decoder.push(bytes('+OK\r\n'))).toThrow(ProtocolError);
  });

  it('reproduces any stream of valid RESP3 responses however it is chunked (property)', () => {
    const lineText = fc.string({ unit: fc.constantFrom(...'ab 01.-:'), maxLength: 8 });
    const payload = fc.uint8Array({ maxLength: 16 }).map((a) => text(Buffer.from(a)));
    const { value } = fc.letrec<{ value: string; scalar: string; aggregate: string; attributed: string }>((tie) => ({
      value: fc.oneof({ maxDepth: 4, depthIdentifier: 'resp' }, tie('scalar'), tie('aggregate'), tie('attributed')),
      scalar: fc.oneof(
        fc.tuple(fc.constantFrom('+', '-', ':', ',', '(', '#'), lineText).map(([t, s]) => `${t}${s}\r\n`),
        fc.constantFrom('_\r\n', '$-1\r\n', '*-1\r\n'),
        fc.tuple(fc.constantFrom('$', '!', '='), payload).map(([t, p]) => `${t}${p.length}\r\n${p}\r\n`),
        fc
          .array(payload.filter((p) => p.length > 0), { maxLength: 3 })
          .map((parts) => '$?\r\n' + parts.map((p) => `;${p.length}\r\n${p}\r\n`).join('') + ';0\r\n'),
      ),
      aggregate: fc.oneof(
        fc
          .tuple(fc.constantFrom('*', '~', '>'), fc.array(tie('value'), { maxLength: 3 }))
          .map(([t, items]) => `${t}${items.length}\r\n${items.join('')}`),
        fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 2 }).map((pairs) => `%${pairs.length}\r\n${pairs.flat().join('')}`),
        fc
          .tuple(fc.constantFrom('*', '~'), fc.array(tie('value'), { maxLength: 3 }))
          .map(([t, items]) => `${t}?\r\n${items.join('')}.\r\n`),
        fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 2 }).map((pairs) => `%?\r\n${pairs.flat().join('')}.\r\n`),
      ),
      attributed: fc
        .tuple(fc.array(fc.tuple(tie('scalar'), tie('value')), { maxLength: 2 }), tie('value'))
        .map(([pairs, annotated]) => `|${pairs.length}\r\n${pairs.flat().join('')}${annotated}`),
    }));

    fc.assert(
      fc.property(fc.array(value, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (responses, cuts) => {
        const out = decodeResponses(chunked(bytes(responses.join('')), cuts));
        expect(out).toEqual({ frames: responses, error: null, held: false });
      }),
      { numRuns: 500 },
    );
  });
});

describe('RespResponseDecoder streaming large replies', () => {
  /** Responses reassembled from what the sink got, each marked with how it came: whole or in pieces. */
  function decodeStreamed(chunks: Buffer[], streamMinBytes: number): Outcome<string> {
    const frames: string[] = [];
    let parts: string[] | null = null;
    const decoder = new RespResponseDecoder(
      {
        onResponse: (buf) => {
          if (parts !== null) throw new Error('a whole response while one is streaming');
          frames.push(`whole ${text(buf)}`);
        },
        onResponsePart: (buf, end) => {
          if (buf.length === 0) throw new Error('an empty piece');
          parts ??= [];
          parts.push(text(buf));
          if (!end) return;
          frames.push(`streamed ${parts.join('')}`);
          parts = null;
        },
      },
      { streamMinBytes },
    );
    return feed(chunks, frames, (chunk) => decoder.push(chunk), () => decoder.midFrame);
  }
  const streamedEveryWay = (input: string, streamMinBytes: number): Outcome<string> =>
    decodeEveryWay(input, (chunks) => decodeStreamed(chunks, streamMinBytes));

  it('streams a top-level bulk string at least streamMinBytes long, and only that', () => {
    const input = '$5\r\nhello\r\n$4\r\nabcd\r\n*1\r\n$6\r\nnested\r\n$-1\r\n$0\r\n\r\n!5\r\nERR x\r\n+OK\r\n';
    expect(streamedEveryWay(input, 5)).toEqual({
      frames: [
        'streamed $5\r\nhello\r\n',
        'whole $4\r\nabcd\r\n',
        'whole *1\r\n$6\r\nnested\r\n',
        'whole $-1\r\n',
        'whole $0\r\n\r\n',
        'whole !5\r\nERR x\r\n',
        'whole +OK\r\n',
      ],
      error: null,
      held: false,
    });
  });

  it('streams two large replies in a row, and a reply cut short stays mid-frame', () => {
    expect(streamedEveryWay('$3\r\nabc\r\n$3\r\n\r\n\r\r\n:1\r\n$3\r\nxy', 3)).toEqual({
      frames: ['streamed $3\r\nabc\r\n', 'streamed $3\r\n\r\n\r\r\n', 'whole :1\r\n'],
      error: null,
      held: true,
    });
  });

  it('rejects a streamed bulk string whose payload overruns its length, at every split', () => {
    const out = streamedEveryWay('$3\r\nabcd\r\n', 3);
    expect(out.error).toBe('Protocol error: expected CRLF after bulk string');
  });

  it('hands each later read on at once as a view of it, holding nothing', () => {
    const pieces: { bytes: Buffer; end: boolean }[] = [];
    const decoder = new RespResponseDecoder(
      { onResponse: () => undefined, onResponsePart: (bytes, end) => pieces.push({ bytes, end }) },
      { streamMinBytes: 8 },
    );
    decoder.push(unpooled('$1'));
    expect(pieces).toEqual([]);
    decoder.push(unpooled('0\r\nabc'));
    expect(pieces.map((p) => [text(p.bytes), p.end])).toEqual([
      ['$10\r\n', false],
      ['abc', false],
    ]);
    const middle = unpooled('defg');
    decoder.push(middle);
    expect(pieces[2].bytes.buffer).toBe(middle.buffer);
    const last = unpooled('hij\r\n+OK\r\n');
    decoder.push(last);
    expect(pieces[3].bytes.buffer).toBe(last.buffer);
    expect(pieces.map((p) => [text(p.bytes), p.end])).toEqual([
      ['$10\r\n', false],
      ['abc', false],
      ['defg', false],
      ['hij\r\n', true],
    ]);
    expect(decoder.midFrame).toBe(false);
  });

  it('delivers every response whole to a sink without onResponsePart', () => {
    const frames: string[] = [];
    const decoder = new RespResponseDecoder({ onResponse: (buf) => frames.push(text(buf)) }, { streamMinBytes: 1 });
    for (const b of bytes('$3\r\nabc\r\n')) decoder.push(Buffer.from([b]));
    expect(frames).toEqual(['$3\r\nabc\r\n']);
  });
});

describe('RespRequestDecoder limits before authentication', () => {
  const preAuth: RequestLimits = { maxArgs: 10, maxArgBytes: 16384 };

  function decodeLimited(chunks: Buffer[], limits: RequestLimits | null): Outcome<RequestFrame> {
    const frames: RequestFrame[] = [];
    const decoder = new RespRequestDecoder({ onRequest: (buf, args) => frames.push({ bytes: text(buf), args: argsOf(buf, args) }) });
    decoder.setLimits(limits);
    return feed(chunks, frames, (chunk) => decoder.push(chunk), () => decoder.buffered);
  }
  const limitedEveryWay = (input: string): Outcome<RequestFrame> => decodeEveryWay(input, (chunks) => decodeLimited(chunks, preAuth));
  const ten = Array.from({ length: 10 }, (_, k) => `a${k}`);

  it('frames requests of up to 10 arguments of up to 16384 bytes each', () => {
    const input = multibulk(ten) + multibulk(['AUTH', 'x'.repeat(16384)]) + '*-2\r\n';
    expect(limitedEveryWay(input)).toEqual({ frames: [request(...ten), request('AUTH', 'x'.repeat(16384))], error: null, held: 0 });
  });

  it('refuses an 11th argument with Redis\'s unauthenticated multibulk error', () => {
    expect(limitedEveryWay(multibulk(['PING']) + multibulk([...ten, 'b']))).toEqual({
      frames: [request('PING')],
      error: 'Protocol error: unauthenticated multibulk length',
      held: 0,
    });
  });

  it('refuses a count up to INT_MAX with the unauthenticated error too, as Redis does', () => {
    expect(limitedEveryWay('*2147483647\r\n')).toEqual({ frames: [], error: 'Protocol error: unauthenticated multibulk length', held: 0 });
    expect(limitedEveryWay('*2147483648\r\n')).toEqual({ frames: [], error: 'Protocol error: invalid multibulk length', held: 0 });
  });

  it('refuses an argument of 16385 bytes as soon as its length is read', () => {
    expect(limitedEveryWay('*2\r\n$4\r\nAUTH\r\n$16385\r\n')).toEqual({
      frames: [],
      error: 'Protocol error: unauthenticated bulk length',
      held: 0,
    });
  });

  it('lifts the limits for the rest of a chunk when the sink lifts them from inside onRequest', () => {
    const big = 'v'.repeat(20_000);
    const input = bytes(multibulk(['AUTH', 'pw']) + multibulk(['SET', 'k', big]) + multibulk(['MSET', ...ten]));
    for (const { name, chunks } of everySplit(input)) {
      const names: string[] = [];
      const decoder = new RespRequestDecoder({
        onRequest: (buf, args) => {
          names.push(commandName(buf, args));
          decoder.setLimits(null);
        },
      });
      decoder.setLimits(preAuth);
      for (const chunk of chunks) decoder.push(chunk);
      expect(names, name).toEqual(['AUTH', 'SET', 'MSET']);
    }
  });
});

describe('RespRequestDecoder memory', () => {
  it('holds a large value arriving in 64 KiB reads in a buffer of its request\'s size, not twice that', () => {
    const input = bytes(multibulk(['SET', 'k', 'v'.repeat((1 << 20) + 123)]));
    const delivered: Buffer[] = [];
    const decoder = new RespRequestDecoder({ onRequest: (buf) => delivered.push(buf) });
    for (let at = 0; at < input.length; at += 64 * 1024) decoder.push(Buffer.from(input.subarray(at, at + 64 * 1024)));
    expect(delivered).toHaveLength(1);
    expect(delivered[0].equals(input)).toBe(true);
    expect(delivered[0].buffer.byteLength).toBe(input.length);
  });

  it('does not allocate what a length line announces before the bytes arrive', () => {
    const decoder = new RespRequestDecoder({ onRequest: () => undefined });
    const before = process.memoryUsage().arrayBuffers;
    decoder.push(bytes('*2\r\n$3\r\nGET\r\n$500000000\r\nabc'));
    decoder.push(bytes('def'));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
  });

  it('holds a request trickling in one byte per read in about as many bytes as it has', () => {
    // Each read is a Buffer of its own; keeping them as a list costs ~65 bytes per byte held.
    const n = 1 << 20;
    const input = bytes(`*2\r\n$3\r\nGET\r\n$${n}\r\n`);
    const decoder = new RespRequestDecoder({ onRequest: () => undefined });
    for (let i = 0; i < input.length; i++) decoder.push(input.subarray(i, i + 1));
    const used = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = used();
    const one = Buffer.from('x');
    for (let i = 0; i < n; i++) decoder.push(Buffer.from(one));
    expect(decoder.buffered).toBe(input.length + n);
    // Garbage not yet collected counts too: the bound is an order of magnitude, not exact.
    expect(used() - before).toBeLessThan(24 * n);
  });
});

describe('RESP helpers', () => {
  const nameOf = (args: string[]): string => {
    let name = '';
    new RespRequestDecoder({ onRequest: (buf, view) => (name = commandName(buf, view)) }).push(bytes(multibulk(args)));
    return name;
  };

  it('names a command by its first argument in ASCII upper case', () => {
    expect(nameOf(['GET', 'k'])).toBe('GET');
    expect(nameOf(['get', 'k'])).toBe('GET');
    expect(nameOf(['cLiEnT', 'setname', 'x'])).toBe('CLIENT');
    // Only a-z change: latin1 letters such as é and ß stay as they are.
    expect(nameOf(['g\xe9t\xdf'])).toBe('G\xe9T\xdf');
    const long = 'x'.repeat(40) + '\xe9y';
    expect(nameOf([long])).toBe('X'.repeat(40) + '\xe9Y');
  });

  it('names a request without arguments with the empty string', () => {
    expect(commandName(Buffer.alloc(0), { count: 0, starts: new Int32Array(1), ends: new Int32Array(1) })).toBe('');
  });

  it('encodes an error reply, keeping line breaks out of it', () => {
    expect(text(encodeError('ERR no such pool'))).toBe('-ERR no such pool\r\n');
    expect(text(encodeError('ERR two\r\nlines\n'))).toBe('-ERR two  lines\r\n');
  });

  it('encodes a command as a multibulk request', () => {
    expect(text(encodeCommand(['SET', 'k', bytes('\r\n\x00')]))).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\r\n\x00\r\n');
    expect(encodeCommand(['ECHO', 'é']).toString('utf8')).toBe('*2\r\n$4\r\nECHO\r\n$2\r\né\r\n');
    expect(text(encodeCommand([]))).toBe('*0\r\n');
  });
});
