/**
 * Redis requests that go to several servers of a sharded pool (codec.ts: Spread), and how their
 * replies become the one reply the client gets:
 *
 *   MGET k1 k2 k3   ─▶ MGET k1 k3 (server A) · MGET k2 (server B) ─▶ one array in the client's key order
 *   DEL/UNLINK/EXISTS/TOUCH                                         ─▶ the sum of the integers
 *   MSET k1 v1 k2 v2 ─▶ MSET k1 v1 (A) · MSET k2 v2 (B)             ─▶ +OK only if every part said +OK
 *   DBSIZE (to every server)                                        ─▶ the sum
 *   FLUSHDB/FLUSHALL (to every server, when the command policy allows them) ─▶ +OK only if all did
 *
 * Any part that failed (its connection died, timed out, no healthy server) or that the server
 * answered with an error makes the whole reply that error (the first in key order): a client
 * never gets half an MGET. An MSET that failed on one server may have been applied on the others:
 * across servers it is not atomic (docs/redis-commands.md).
 */
import type { FailureReason } from '../../errors.js';
import type { ArgView, CommandSpec, FanoutPart } from '../codec.js';
import { RespResponseDecoder } from './resp-response.js';

/**
 * How a command's parts' replies merge: `array` (a split's values in the client's key order), `sum`
 * of integers, `all-ok` (+OK only if every part said +OK); for a cluster pool's keyspace commands
 * (cluster-keyspace.ts) also `concat` (the arrays one after another: KEYS), `union` (the same,
 * each element once: PUBSUB CHANNELS), `same` (every part the same reply, which is the answer:
 * SCRIPT LOAD's sha), `and` (arrays of 0/1, 1 where every part said 1: SCRIPT EXISTS), `random`
 * (one non-nil reply picked at random, nil when all are: RANDOMKEY), `any-ok` (+OK when any part
 * said +OK, else the first error: SCRIPT KILL, which only the node running the script obeys) and
 * `pairs-sum` (name, count pairs with the counts summed: PUBSUB NUMSUB).
 */
export type Merge = 'array' | 'sum' | 'all-ok' | 'concat' | 'union' | 'same' | 'and' | 'random' | 'any-ok' | 'pairs-sum';

const merges = new Map<string, Merge>([
  ['MGET', 'array'],
  ['DEL', 'sum'],
  ['UNLINK', 'sum'],
  ['EXISTS', 'sum'],
  ['TOUCH', 'sum'],
  ['MSET', 'all-ok'],
  ['DBSIZE', 'sum'],
  ['FLUSHDB', 'all-ok'],
  ['FLUSHALL', 'all-ok'],
]);

/** The commands that spread, and how (commands.ts marks their specs from this). */
export const SPREADS: readonly (readonly [string, 'keys' | 'all'])[] = [
  ['MGET', 'keys'],
  ['DEL', 'keys'],
  ['UNLINK', 'keys'],
  ['EXISTS', 'keys'],
  ['TOUCH', 'keys'],
  ['MSET', 'keys'],
  ['DBSIZE', 'all'],
  ['FLUSHDB', 'all'],
  ['FLUSHALL', 'all'],
];

const OK = Buffer.from('+OK\r\n');

/**
 * One request per group of key indices: the arguments before the first key (the command name),
 * then, for each key of the group, the key and the arguments that belong to it (`step` of them:
 * MSET's value), then the arguments after the last key. Only `range` key specs spread.
 */
export function splitRequest(spec: CommandSpec, bytes: Buffer, args: ArgView, groups: readonly (readonly number[])[]): Buffer[] {
  const keys = spec.keys;
  if (keys.kind !== 'range') throw new Error(`${spec.name} cannot be split: its keys are not a range`);
  const { starts, ends, count } = args;
  const last = keys.last < 0 ? count + keys.last : Math.min(keys.last, count - 1);
  const keyCount = last < keys.first ? 0 : Math.floor((last - keys.first) / keys.step) + 1;
  const suffixFrom = keys.first + keyCount * keys.step;
  const out: Buffer[] = [];
  const picked: number[] = [];
  for (const group of groups) {
    // The arguments of this part, then one buffer written in one pass.
    picked.length = 0;
    for (let i = 0; i < keys.first; i++) picked.push(i);
    for (const k of group) {
      const at = keys.first + k * keys.step;
      for (let i = at; i < at + keys.step && i < count; i++) picked.push(i);
    }
    for (let i = suffixFrom; i < count; i++) picked.push(i);
    let size = 1 + decimalLength(picked.length) + 2;
    for (const i of picked) size += 1 + decimalLength(ends[i] - starts[i]) + 2 + (ends[i] - starts[i]) + 2;
    const request = Buffer.allocUnsafe(size);
    let at = request.write(`*${picked.length}\r\n`, 0, 'latin1');
    for (const i of picked) {
      at += request.write(`$${ends[i] - starts[i]}\r\n`, at, 'latin1');
      at += bytes.copy(request, at, starts[i], ends[i]);
      request[at++] = 0x0d;
      request[at++] = 0x0a;
    }
    out.push(request);
  }
  return out;
}

function decimalLength(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

function isError(bytes: Buffer): boolean {
  return bytes[0] === 0x2d /* - */ || bytes[0] === 0x21 /* ! */;
}

/** A RESP integer reply's value, or null. */
function integerOf(bytes: Buffer): number | null {
  if (bytes[0] !== 0x3a /* : */) return null;
  const n = Number(bytes.toString('latin1', 1, bytes.length - 2));
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * The elements of a RESP array reply (`*n` then n values; also a RESP3 set `~n`, and a map `%n` as
 * its 2n keys and values), each whole, or null if it is no array.
 */
function elementsOf(bytes: Buffer): Buffer[] | null {
  const type = bytes[0];
  if (type !== 0x2a /* * */ && type !== 0x7e /* ~ */ && type !== 0x25 /* % */) return null;
  const headerEnd = bytes.indexOf('\r\n');
  if (headerEnd < 0) return null;
  const count = Number(bytes.toString('latin1', 1, headerEnd)) * (type === 0x25 ? 2 : 1);
  if (!Number.isInteger(count) || count < 0) return null;
  const elements: Buffer[] = [];
  // MGET's elements are bulk strings and nulls: framed here; anything else by the response decoder.
  let at = headerEnd + 2;
  while (elements.length < count && at < bytes.length) {
    const end = simpleElementEnd(bytes, at);
    if (end < 0) break;
    elements.push(bytes.subarray(at, end));
    at = end;
  }
  if (elements.length === count) return at === bytes.length ? elements : null;
  const decoder = new RespResponseDecoder({ onResponse: (element) => void elements.push(element) });
  decoder.push(bytes.subarray(at));
  return elements.length === count && !decoder.midFrame ? elements : null;
}

/** A whole RESP array (or RESP3 set) reply's element count and the bytes of its elements, or null. */
function arrayBody(bytes: Buffer): { count: number; bytes: Buffer } | null {
  if (bytes[0] !== 0x2a /* * */ && bytes[0] !== 0x7e /* ~ */) return null;
  const headerEnd = bytes.indexOf('\r\n');
  if (headerEnd < 0) return null;
  const count = Number(bytes.toString('latin1', 1, headerEnd));
  if (!Number.isInteger(count) || count < 0) return null;
  return { count, bytes: bytes.subarray(headerEnd + 2) };
}

/** Where a bulk string (`$n`, `$-1`) or RESP3 null (`_`) starting at `at` ends; -1 for anything else. */
function simpleElementEnd(bytes: Buffer, at: number): number {
  const type = bytes[at];
  if (type === 0x5f /* _ */) return bytes[at + 1] === 0x0d && bytes[at + 2] === 0x0a ? at + 3 : -1;
  if (type !== 0x24 /* $ */) return -1;
  const lineEnd = bytes.indexOf(0x0d, at + 1);
  if (lineEnd < 0 || bytes[lineEnd + 1] !== 0x0a) return -1;
  if (lineEnd === at + 3 && bytes[at + 1] === 0x2d /* - */ && bytes[at + 2] === 0x31 /* 1 */) return lineEnd + 2;
  let length = 0;
  for (let i = at + 1; i < lineEnd; i++) {
    const c = bytes[i];
    if (c < 0x30 || c > 0x39) return -1;
    length = length * 10 + (c - 0x30);
  }
  const end = lineEnd + 2 + length + 2;
  if (lineEnd === at + 1 || end > bytes.length || bytes[end - 2] !== 0x0d || bytes[end - 1] !== 0x0a) return -1;
  return end;
}

/** The merge of a command's replies on a ketama pool (a cluster pool's keyspace table has its own). */
export function ketamaMerge(spec: CommandSpec): Merge | undefined {
  return merges.get(spec.name);
}

/**
 * The one reply from the parts' replies. `merge`: how they combine (ketamaMerge, or the cluster
 * keyspace table's); `random`: uniform in [0, 1), for `random` (the pool's clock).
 */
export function mergeReplies(
  spec: CommandSpec,
  keyCount: number,
  parts: readonly FanoutPart[],
  errorReply: (reason: FailureReason, message: string) => Buffer,
  merge: Merge | undefined = merges.get(spec.name),
  random: () => number = Math.random,
): Buffer {
  // SCRIPT KILL: one node obeying is the answer; the others' NOTBUSY (or a failure) only when none did.
  if (merge === 'any-ok') {
    for (const part of parts) if (part.kind === 'reply' && part.bytes.equals(OK)) return OK;
  }
  // The first part (in key order) that failed or was refused decides: never a partial answer.
  for (const part of parts) {
    if (part.kind === 'failed') return errorReply(part.reason, `${spec.name} across servers: ${part.message}`);
    if (isError(part.bytes)) return part.bytes;
  }
  const unexpected = (what: string): Buffer => errorReply('SERVER_ERROR', `${spec.name} across servers: a server answered ${what} where poolside expected ${merge ?? 'nothing'}`);
  switch (merge) {
    case 'sum': {
      let sum = 0;
      for (const part of parts) {
        const n = part.kind === 'reply' ? integerOf(part.bytes) : null;
        if (n === null) return unexpected('something else');
        sum += n;
      }
      return Buffer.from(`:${sum}\r\n`, 'latin1');
    }
    case 'all-ok':
      for (const part of parts) {
        if (part.kind !== 'reply' || !part.bytes.equals(OK)) return unexpected('something else');
      }
      return OK;
    case 'array': {
      const placed: Buffer[] = new Array<Buffer>(keyCount);
      let filled = 0;
      for (const part of parts) {
        const elements = part.kind === 'reply' ? elementsOf(part.bytes) : null;
        if (elements === null || elements.length !== part.keys.length) return unexpected('a reply of another shape');
        for (let i = 0; i < elements.length; i++) {
          placed[part.keys[i]] = elements[i];
          filled++;
        }
      }
      if (filled !== keyCount) return unexpected('too few values');
      return Buffer.concat([Buffer.from(`*${keyCount}\r\n`, 'latin1'), ...placed]);
    }
    case 'any-ok':
      // No part said +OK and none failed: a server answered something else.
      return unexpected('something else');
    case 'concat': {
      // Each part is one whole array frame (the response decoder framed it): its elements are
      // the bytes after its header, taken as they are, never framed one by one (KEYS: 100k keys).
      let count = 0;
      const bodies: Buffer[] = [];
      for (const part of parts) {
        const body = part.kind === 'reply' ? arrayBody(part.bytes) : null;
        if (body === null) return unexpected('a reply of another shape');
        count += body.count;
        bodies.push(body.bytes);
      }
      return Buffer.concat([Buffer.from(`*${count}\r\n`, 'latin1'), ...bodies]);
    }
    case 'union': {
      const all: Buffer[] = [];
      const seen = new Set<string>();
      for (const part of parts) {
        const elements = part.kind === 'reply' ? elementsOf(part.bytes) : null;
        if (elements === null) return unexpected('a reply of another shape');
        for (const element of elements) {
          const key = element.toString('latin1');
          if (seen.has(key)) continue;
          seen.add(key);
          all.push(element);
        }
      }
      return Buffer.concat([Buffer.from(`*${all.length}\r\n`, 'latin1'), ...all]);
    }
    case 'same': {
      const first = parts[0];
      if (first === undefined || first.kind !== 'reply') return unexpected('nothing');
      for (const part of parts) {
        if (part.kind !== 'reply' || !part.bytes.equals(first.bytes)) return unexpected('different replies');
      }
      return first.bytes;
    }
    case 'and': {
      let flags: boolean[] | null = null;
      for (const part of parts) {
        const elements = part.kind === 'reply' ? elementsOf(part.bytes) : null;
        if (elements === null || (flags !== null && elements.length !== flags.length)) return unexpected('a reply of another shape');
        const these = elements.map((e) => integerOf(e));
        if (these.some((n) => n === null)) return unexpected('something else');
        flags = flags === null ? these.map((n) => n !== 0) : flags.map((f, i) => f && these[i] !== 0);
      }
      if (flags === null) return unexpected('nothing');
      return Buffer.from(`*${flags.length}\r\n${flags.map((f) => (f ? ':1\r\n' : ':0\r\n')).join('')}`, 'latin1');
    }
    case 'random': {
      const found: Buffer[] = [];
      for (const part of parts) {
        if (part.kind !== 'reply') return unexpected('nothing');
        if (!isNil(part.bytes)) found.push(part.bytes);
      }
      if (found.length === 0) {
        const first = parts[0];
        return first !== undefined && first.kind === 'reply' ? first.bytes : unexpected('nothing');
      }
      return found[Math.min(found.length - 1, Math.floor(random() * found.length))];
    }
    case 'pairs-sum': {
      let names: Buffer[] | null = null;
      let counts: number[] = [];
      let map = false;
      for (const part of parts) {
        const elements = part.kind === 'reply' ? elementsOf(part.bytes) : null;
        if (elements === null || elements.length % 2 !== 0 || (names !== null && elements.length !== names.length * 2)) return unexpected('a reply of another shape');
        map = part.kind === 'reply' && part.bytes[0] === 0x25; /* % (RESP3 map) */
        const theseNames = elements.filter((_, i) => i % 2 === 0);
        const theseCounts = elements.filter((_, i) => i % 2 === 1).map((e) => integerOf(e));
        if (theseCounts.some((n) => n === null)) return unexpected('something else');
        if (names === null) {
          names = theseNames;
          counts = theseCounts.map((n) => n ?? 0);
        } else {
          for (let i = 0; i < names.length; i++) {
            if (!names[i].equals(theseNames[i])) return unexpected('names in another order');
            counts[i] += theseCounts[i] ?? 0;
          }
        }
      }
      if (names === null) return unexpected('nothing');
      const out: Buffer[] = [Buffer.from(map ? `%${names.length}\r\n` : `*${names.length * 2}\r\n`, 'latin1')];
      for (let i = 0; i < names.length; i++) out.push(names[i], Buffer.from(`:${counts[i]}\r\n`, 'latin1'));
      return Buffer.concat(out);
    }
    case undefined:
      return errorReply('SERVER_ERROR', `${spec.name} has no merge of replies from several servers`);
  }
}

/** A RESP2 null bulk (`$-1`) or RESP3 null (`_`). */
function isNil(bytes: Buffer): boolean {
  return bytes[0] === 0x5f /* _ */ || (bytes[0] === 0x24 /* $ */ && bytes[1] === 0x2d /* - */);
}
