/**
 * The memcached codec case by case: request framing (data blocks, refused lines, oversized blocks
 * counted away), response framing by what the request expects, and intake (noreply and quiet
 * taken out, mistakes answered as memcached answers them). Every stream is decoded whole, byte by
 * byte, and split in two at every position, and every way must agree.
 */
import { describe, expect, it } from 'vitest';
import type { ArgView, CommandSpec } from '../../src/codec/codec.js';
import { ProtocolError } from '../../src/codec/codec.js';
import { memcachedCodec } from '../../src/codec/memcached/codec.js';
import { McRequestDecoder } from '../../src/codec/memcached/request-decoder.js';
import { McResponseDecoder } from '../../src/codec/memcached/response-decoder.js';
import type { McExpect } from '../../src/codec/memcached/commands.js';
import type { Intake, SessionView } from '../../src/codec/session-rules.js';

function everySplit(input: Buffer): { name: string; chunks: Buffer[] }[] {
  const out = [{ name: 'whole', chunks: [input] }];
  const single: Buffer[] = [];
  for (let p = 0; p < input.length; p++) single.push(Buffer.from(input.subarray(p, p + 1)));
  out.push({ name: 'byte by byte', chunks: single });
  for (let p = 1; p < input.length; p++) out.push({ name: `split at ${p}`, chunks: [input.subarray(0, p), input.subarray(p)] });
  return out;
}

interface Framed {
  bytes: string;
  tokens: string[];
}

function decodeRequests(chunks: Buffer[], maxItemBytes = 1 << 20, maxRequestBytes = 1 << 20): { requests: Framed[]; error: string | null; maxBuffered: number } {
  const requests: Framed[] = [];
  const decoder = new McRequestDecoder(
    {
      onRequest(bytes, args) {
        const tokens: string[] = [];
        for (let i = 0; i < args.count; i++) tokens.push(bytes.toString('latin1', args.starts[i], args.ends[i]));
        requests.push({ bytes: bytes.toString('latin1'), tokens });
      },
    },
    { maxItemBytes, maxRequestBytes },
  );
  let maxBuffered = 0;
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      maxBuffered = Math.max(maxBuffered, decoder.buffered);
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return { requests, error: err.message, maxBuffered };
  }
  return { requests, error: null, maxBuffered };
}

/** Decodes `input` every way; asserts they agree and returns the agreed requests. */
function requestsOf(input: string, maxItemBytes?: number): Framed[] {
  const bytes = Buffer.from(input, 'latin1');
  const framed = (chunks: Buffer[]): { requests: Framed[]; error: string | null } => {
    const { requests, error } = decodeRequests(chunks, maxItemBytes);
    return { requests, error };
  };
  const whole = framed([bytes]);
  for (const way of everySplit(bytes)) expect(framed(way.chunks), way.name).toEqual(whole);
  expect(whole.error).toBeNull();
  return whole.requests;
}

describe('memcached request framing', () => {
  it('frames command lines and the data blocks of storage lines memcached accepts', () => {
    expect(requestsOf('get a b\r\nset k 5 0 3\r\nabc\r\nversion\n')).toEqual([
      { bytes: 'get a b\r\n', tokens: ['get', 'a', 'b'] },
      { bytes: 'set k 5 0 3\r\nabc\r\n', tokens: ['set', 'k', '5', '0', '3'] },
      { bytes: 'version\n', tokens: ['version'] },
    ]);
    expect(requestsOf('cas k 0 0 1 99 noreply\r\nx\r\nms k 2 T0 q\r\nhi\r\nmg k v\r\n').map((r) => r.bytes)).toEqual([
      'cas k 0 0 1 99 noreply\r\nx\r\n',
      'ms k 2 T0 q\r\nhi\r\n',
      'mg k v\r\n',
    ]);
    // A value holding line ends and commands is counted, not scanned.
    expect(requestsOf('set k 0 0 12\r\nget x\r\nEND\r\n\r\nmn\r\n').map((r) => r.bytes)).toEqual(['set k 0 0 12\r\nget x\r\nEND\r\n\r\n', 'mn\r\n']);
  });

  it('tokenizes as memcached does: runs of spaces, one CR dropped, the line cut at a NUL', () => {
    expect(requestsOf('  get   a  b  \r\n')[0].tokens).toEqual(['get', 'a', 'b']);
    expect(requestsOf('get a\tb\r\n')[0].tokens).toEqual(['get', 'a\tb']);
    expect(requestsOf('set a\0b 0 0 1\r\nx\r\n').map((r) => r.tokens)).toEqual([['set', 'a'], ['x']]);
    // memcached drops a CR only after something: a bare CRLF is the token "\r" (answered ERROR either way).
    expect(requestsOf('\r\n')[0].tokens).toEqual(['\r']);
    expect(requestsOf('\n')[0].tokens).toEqual([]);
  });

  it('reads no data block after a storage line memcached refuses: what follows is the next line', () => {
    for (const line of ['set k 0 0 -1', 'set k 0 0 abc', 'set k 0 0', 'set k 0 0 1 2 3', `set ${'k'.repeat(251)} 0 0 1`, 'cas k 0 0 1', 'ms k', 'ms k abc', `ms k 1${' T1'.repeat(20)}`]) {
      expect(requestsOf(`${line}\r\nx\r\n`).map((r) => r.bytes), line).toEqual([`${line}\r\n`, 'x\r\n']);
    }
  });

  it('reads exactly the block size plus two bytes even when they are not \\r\\n', () => {
    expect(requestsOf('set k 0 0 1\r\nxy\r\n').map((r) => r.bytes)).toEqual(['set k 0 0 1\r\nxy\r', '\n']);
  });

  it('counts away a block larger than max_item_size without holding it', () => {
    const input = `set k 0 0 100\r\n${'x'.repeat(100)}\r\nget k\r\n`;
    const bytes = Buffer.from(input, 'latin1');
    for (const way of everySplit(bytes)) {
      const out = decodeRequests(way.chunks, 10);
      expect(out.requests.map((r) => r.bytes), way.name).toEqual(['set k 0 0 100\r\n', 'get k\r\n']);
      expect(out.maxBuffered, way.name).toBeLessThan(20);
    }
  });

  it('closes on a line longer than memcached reads, except a multi-get', () => {
    expect(decodeRequests([Buffer.from('x'.repeat(3000))]).error).toMatch(/line too long/);
    expect(decodeRequests([Buffer.from(`set k 0 0 1 ${'y'.repeat(3000)}\r\n`)]).error).toMatch(/line too long/);
    const keys = Array.from({ length: 400 }, (_, i) => `k${i}`).join(' ');
    expect(requestsOf(`get ${keys}\r\n`)[0].tokens.length).toBe(401);
    expect(decodeRequests([Buffer.from(`get ${keys}\r\n`)], 1 << 20, 1000).error).toMatch(/max_request_size/);
  });
});

function decodeResponses(chunks: Buffer[], expects: McExpect[]): { responses: string[]; error: string | null } {
  const responses: string[] = [];
  const queue = [...expects];
  const decoder = new McResponseDecoder({
    onResponse(bytes) {
      responses.push(bytes.toString('latin1'));
      queue.shift();
    },
    headExpectation: () => queue[0],
  });
  try {
    for (const chunk of chunks) decoder.push(chunk);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return { responses, error: err.message };
  }
  expect(decoder.midFrame).toBe(false);
  return { responses, error: null };
}

function responsesOf(input: string, expects: McExpect[]): string[] {
  const bytes = Buffer.from(input, 'latin1');
  const whole = decodeResponses([bytes], expects);
  for (const way of everySplit(bytes)) expect(decodeResponses(way.chunks, expects), way.name).toEqual(whole);
  expect(whole.error).toBeNull();
  return whole.responses;
}

/** Decodes with streaming on (blocks of `streamMin` bytes or more): each response as its pieces. */
function streamResponses(chunks: Buffer[], expects: McExpect[], streamMin: number): string[][] {
  const responses: string[][] = [];
  let current: string[] = [];
  const queue = [...expects];
  const decoder = new McResponseDecoder(
    {
      onResponse(bytes) {
        responses.push([bytes.toString('latin1')]);
        queue.shift();
      },
      onResponsePart(bytes, end) {
        current.push(bytes.toString('latin1'));
        if (!end) return;
        responses.push(current);
        current = [];
        queue.shift();
      },
      headExpectation: () => queue[0],
    },
    streamMin,
  );
  for (const chunk of chunks) decoder.push(chunk);
  expect(current).toEqual([]);
  return responses;
}

describe('memcached response framing', () => {
  it('hands a response with a large data block on in pieces that add up to it, however the reads fall', () => {
    const big = 'x'.repeat(40);
    const input = `STORED\r\nVALUE a 0 40\r\n${big}\r\nVALUE b 0 1\r\ny\r\nEND\r\nVA 40 f1\r\n${big}\r\nHD\r\n`;
    const expects: McExpect[] = ['line', 'values', 'meta', 'meta'];
    const whole = ['STORED\r\n', `VALUE a 0 40\r\n${big}\r\nVALUE b 0 1\r\ny\r\nEND\r\n`, `VA 40 f1\r\n${big}\r\n`, 'HD\r\n'];
    for (const way of everySplit(Buffer.from(input, 'latin1'))) {
      const responses = streamResponses(way.chunks, expects, 16);
      expect(responses.map((pieces) => pieces.join('')), way.name).toEqual(whole);
      // Small responses whole; the large ones in pieces, none of them empty but the last.
      expect(responses[0], way.name).toHaveLength(1);
      expect(responses[3], way.name).toHaveLength(1);
      for (const pieces of [responses[1], responses[2]]) expect(pieces.slice(0, -1).every((p) => p.length > 0), way.name).toBe(true);
    }
    expect(streamResponses([Buffer.from(input, 'latin1')], expects, 16)[1].length).toBeGreaterThan(1);
  });

  it('streams a response of many small blocks once what it holds of it reaches the threshold, never holding it whole', () => {
    // A get of many keys whose values are each below the threshold: 20 blocks of 5 bytes, threshold 16.
    const blocks = Array.from({ length: 20 }, (_, i) => `VALUE k${i} 0 5\r\nv${String(i).padStart(4, '0')}\r\n`).join('');
    const input = `${blocks}END\r\nHD\r\n`;
    const expects: McExpect[] = ['values', 'meta'];
    const whole = [`${blocks}END\r\n`, 'HD\r\n'];
    for (const way of everySplit(Buffer.from(input, 'latin1'))) {
      const responses = streamResponses(way.chunks, expects, 16);
      expect(responses.map((pieces) => pieces.join('')), way.name).toEqual(whole);
      if (way.name !== 'byte by byte') continue;
      // Read byte by byte: it goes on at about the threshold, held no longer than that plus one read.
      expect(responses[0].length, way.name).toBeGreaterThan(1);
      expect(responses[0][0].length, way.name).toBeLessThanOrEqual(16);
    }
  });

  it('frames each response by what its request expects', () => {
    const input =
      'STORED\r\nVALUE a 5 3\r\nabc\r\nVALUE b 0 7 99\r\nEND\r\nxx\r\nEND\r\nEND\r\nVA 2 f5\r\nhi\r\nEN\r\nHD c3\r\nSTAT pid 1\r\nSTAT x y\r\nEND\r\nRESET\r\nVERSION 1.6\r\n';
    expect(responsesOf(input, ['line', 'values', 'values', 'meta', 'meta', 'meta', 'list', 'list', 'line'])).toEqual([
      'STORED\r\n',
      'VALUE a 5 3\r\nabc\r\nVALUE b 0 7 99\r\nEND\r\nxx\r\nEND\r\n',
      'END\r\n',
      'VA 2 f5\r\nhi\r\n',
      'EN\r\n',
      'HD c3\r\n',
      'STAT pid 1\r\nSTAT x y\r\nEND\r\n',
      'RESET\r\n',
      'VERSION 1.6\r\n',
    ]);
  });

  it('ends a retrieval at an error line, even after values', () => {
    expect(responsesOf('VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory\r\nCLIENT_ERROR bad command line format\r\n', ['values', 'values'])).toEqual([
      'VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n',
      'CLIENT_ERROR bad command line format\r\n',
    ]);
  });

  it('refuses what no request could be answered with', () => {
    expect(decodeResponses([Buffer.from('STORED\r\n')], ['values']).error).toMatch(/unexpected line/);
    expect(decodeResponses([Buffer.from('VALUE a 0 x\r\n')], ['values']).error).toMatch(/size/);
    expect(decodeResponses([Buffer.from('STORED\n')], ['line']).error).toMatch(/\\r\\n/);
  });
});

const view: SessionView = {} as SessionView;

function intake(request: string): { intake: Intake; silent: boolean; spec: CommandSpec } {
  const rules = memcachedCodec.sessionRules();
  let out: { intake: Intake; silent: boolean; spec: CommandSpec } | null = null;
  const decoder = new McRequestDecoder(
    {
      onRequest(bytes: Buffer, args: ArgView) {
        const spec = memcachedCodec.classify(bytes, args);
        const taken = rules.intake(spec, bytes, args, view);
        // The first request only (a bad chunk's leftover bytes frame as more).
        out ??= { intake: taken, silent: rules.silentReply(), spec };
      },
    },
    { maxItemBytes: 100, maxRequestBytes: 1 << 20 },
  );
  decoder.push(Buffer.from(request, 'latin1'));
  if (out === null) throw new Error(`no request framed from ${JSON.stringify(request)}`);
  return out;
}

/** What the client gets for `request` without a server: a local answer, or the request sent on. */
function outcome(request: string): string {
  const { intake: taken, silent } = intake(request);
  const hidden = silent ? ' (silent)' : '';
  switch (taken.kind) {
    case 'route':
      return `route${hidden}`;
    case 'rewrite':
      return `send ${JSON.stringify(taken.bytes.toString('latin1'))}${taken.reply === undefined ? '' : ' (quiet)'}${hidden}`;
    case 'answer':
      return `answer ${JSON.stringify(taken.reply.toString('latin1'))}${hidden}`;
    case 'local':
      return 'local';
  }
}

describe('memcached intake', () => {
  it('takes noreply out wherever memcached would honour it, and drops the answer', () => {
    expect(outcome('set k 0 0 1 noreply\r\nx\r\n')).toBe('send "set k 0 0 1\\r\\nx\\r\\n" (silent)');
    expect(outcome('cas k 0 0 1 5 noreply\r\nx\r\n')).toBe('send "cas k 0 0 1 5\\r\\nx\\r\\n" (silent)');
    expect(outcome('delete k noreply\r\n')).toBe('send "delete k\\r\\n" (silent)');
    expect(outcome('delete k 0 noreply\r\n')).toBe('send "delete k 0\\r\\n" (silent)');
    expect(outcome('incr k 1 noreply\r\n')).toBe('send "incr k 1\\r\\n" (silent)');
    // memcached reads the last token as noreply here too (then fails the delta, silently).
    expect(outcome('incr k noreply\r\n')).toBe('send "incr k\\r\\n" (silent)');
    expect(outcome('touch k 10 noreply\r\n')).toBe('send "touch k 10\\r\\n" (silent)');
    expect(outcome('flush_all noreply\r\n')).toBe('send "flush_all\\r\\n" (silent)');
    expect(outcome('flush_all 0 noreply\r\n')).toBe('send "flush_all 0\\r\\n" (silent)');
    expect(outcome('verbosity noreply\r\n')).toBe('send "verbosity\\r\\n" (silent)');
    expect(outcome('verbosity 1 noreply\r\n')).toBe('send "verbosity 1\\r\\n" (silent)');
    // Not the last token, or a command without noreply: a key named noreply.
    expect(outcome('delete noreply\r\n')).toBe('route');
    expect(outcome('get noreply\r\n')).toBe('route');
    expect(outcome('set k 0 0 1 garbage\r\nx\r\n')).toBe('route');
  });

  it('answers noreply requests poolside refuses with nothing at all', () => {
    expect(outcome('set k 0 0 1 noreply\r\nxy\r\n')).toBe('answer "" (silent)');
    expect(outcome('set k 0 0 1000 noreply\r\n')).toBe('answer "" (silent)');
    expect(outcome(`delete ${'k'.repeat(251)} noreply\r\n`)).toBe('answer "" (silent)');
    expect(outcome('set k 0 0 noreply\r\n')).toBe('answer "" (silent)');
  });

  it('takes q out of meta requests and maps what q hides to nothing', () => {
    const mg = intake('mg k v q k\r\n').intake;
    expect(mg.kind).toBe('rewrite');
    if (mg.kind !== 'rewrite' || mg.reply === undefined) throw new Error('expected a quiet rewrite');
    expect(mg.bytes.toString()).toBe('mg k v k\r\n');
    expect(mg.reply(Buffer.from('EN\r\n'))).toBeNull();
    expect(mg.reply(Buffer.from('EN kk\r\n'))).toBeNull();
    expect(mg.reply(Buffer.from('HD\r\n'))?.toString()).toBe('HD\r\n');
    expect(mg.reply(Buffer.from('SERVER_ERROR poolside REQUEST_TIMEOUT x\r\n'))?.toString()).toMatch(/^SERVER_ERROR/);
    const ms = intake('ms k 1 q T0\r\nx\r\n').intake;
    if (ms.kind !== 'rewrite' || ms.reply === undefined) throw new Error('expected a quiet rewrite');
    expect(ms.bytes.toString()).toBe('ms k 1 T0\r\nx\r\n');
    expect(ms.reply(Buffer.from('HD\r\n'))).toBeNull();
    expect(ms.reply(Buffer.from('NS\r\n'))?.toString()).toBe('NS\r\n');
    const ma = intake('ma k q v\r\n').intake;
    if (ma.kind !== 'rewrite' || ma.reply === undefined) throw new Error('expected a quiet rewrite');
    expect(ma.reply(Buffer.from('VA 1\r\n5\r\n'))).toBeNull();
    expect(ma.reply(Buffer.from('NF\r\n'))?.toString()).toBe('NF\r\n');
    // Two q flags: the server refuses the duplicate, an error q never hides.
    expect(outcome('mg k q q\r\n')).toBe('route');
  });

  it('answers what memcached answers without running it', () => {
    expect(outcome('mn\r\n')).toBe('answer "MN\\r\\n"');
    expect(outcome('bogus\r\n')).toBe('answer "ERROR\\r\\n"');
    expect(outcome('get\r\n')).toBe('answer "ERROR\\r\\n"');
    expect(outcome(`get a ${'k'.repeat(251)}\r\n`)).toBe('answer "CLIENT_ERROR bad command line format\\r\\n"');
    expect(outcome('set k 0 0 1\r\nxy\r\n')).toBe('answer "CLIENT_ERROR bad data chunk\\r\\n"');
    expect(outcome('set k 0 0 1000\r\n')).toBe('answer "SERVER_ERROR object too large for cache\\r\\n"');
    expect(outcome('ms k 1000 q\r\n')).toBe('answer "SERVER_ERROR object too large for cache\\r\\n"');
    // memcached 1.6's own words differ: mg's "are too long", md's and ma's "too long".
    expect(outcome(`mg k${' v'.repeat(19)}\r\n`)).toBe('answer "CLIENT_ERROR options flags are too long\\r\\n"');
    expect(outcome(`md k${' T1'.repeat(18)}\r\n`)).toBe('answer "CLIENT_ERROR options flags too long\\r\\n"');
    expect(outcome(`ma k${' T1'.repeat(18)}\r\n`)).toBe('answer "CLIENT_ERROR options flags too long\\r\\n"');
    expect(outcome('me\r\n')).toBe('answer "CLIENT_ERROR bad command line format\\r\\n"');
  });

  it('routes base64 keys by the key they encode', () => {
    const keys = (request: string): string[] => {
      const found: string[] = [];
      const decoder = new McRequestDecoder(
        {
          onRequest(bytes, args) {
            const spec = memcachedCodec.classify(bytes, args);
            memcachedCodec.forEachKey(spec, bytes, args, (start, end, source) => found.push((source ?? bytes).toString('latin1', start, end)));
          },
        },
        { maxItemBytes: 100, maxRequestBytes: 1 << 20 },
      );
      decoder.push(Buffer.from(request));
      return found;
    };
    expect(keys('mg Zm9v b v\r\n')).toEqual(['foo']);
    expect(keys('me Zm9v b\r\n')).toEqual(['foo']);
    expect(keys('mg Zm9v v\r\n')).toEqual(['Zm9v']);
    expect(keys('get a b c\r\n')).toEqual(['a', 'b', 'c']);
    expect(keys('gat 10 a b\r\n')).toEqual(['a', 'b']);
    expect(keys('set k 0 0 1\r\nx\r\n')).toEqual(['k']);
    expect(keys('version\r\n')).toEqual([]);
  });

  it('writes poolside errors as one SERVER_ERROR line', () => {
    expect(memcachedCodec.errorReply('REQUEST_TIMEOUT', 'no reply\r\nEND').toString()).toBe('SERVER_ERROR poolside REQUEST_TIMEOUT no reply END\r\n');
    expect(memcachedCodec.isErrorResponse(Buffer.from('CLIENT_ERROR x\r\n'))).toBe(true);
    expect(memcachedCodec.isErrorResponse(Buffer.from('ERROR\r\n'))).toBe(true);
    expect(memcachedCodec.isErrorResponse(Buffer.from('ERRORS\r\n'))).toBe(false);
    expect(memcachedCodec.isErrorResponse(Buffer.from('VERSION 1.6\r\n'))).toBe(false);
  });
});
