/**
 * memcached requests that go to several servers of a sharded pool (codec.ts: Spread), and how
 * their replies become the one reply the client gets:
 *
 *   get k1 k2 k3       ─▶ get k1 k3 (server A) · get k2 (server B)
 *                      ─▶ the VALUE blocks in the client's key order, one END
 *   gat/gats <exptime> k1 k2…   the same, each part with the exptime
 *   flush_all, verbosity (every server)   ─▶ OK only if every server said OK
 *   stats, stats items, stats slabs (every server) ─▶ one STAT list: counters summed, identity
 *                                            fields (pid, uptime, version, chunk_size…) and text from
 *                                            the first server; other stats forms: the first server's
 *
 * A miss is a legal answer to a retrieval, so a part that failed (its connection died or timed
 * out, its server is ejected) or that its server answered with an error line makes its keys
 * misses: the client gets the keys the other servers found, with END, never a torn reply. Only
 * when no part answered does the client get an error (the first one). `stats` likewise merges the
 * servers that answered; `flush_all` and `verbosity` answer the first error when any server did not
 * say OK (the others may have been flushed).
 */
import type { FailureReason } from '../../errors.js';
import type { ArgView, CommandSpec, FanoutPart } from '../codec.js';
import { commandOf } from './commands.js';
import { isErrorLine } from './response-decoder.js';
import { LF, SPACE, Tokens, tokenize } from './text.js';

const END = Buffer.from('END\r\n');
const OK = Buffer.from('OK\r\n');
const VALUE = Buffer.from('VALUE ');
const STAT = Buffer.from('STAT ');

/** STAT fields that describe one server rather than count something: the first server's is kept. */
const KEEP_FIRST = new Set([
  'pid',
  'uptime',
  'time',
  'version',
  'libevent',
  'pointer_size',
  'rusage_user',
  'rusage_system',
  'max_connections',
  'threads',
  'hash_power_level',
  'hash_is_expanding',
  'slab_reassign_running',
  'lru_crawler_running',
  'malloc_fails',
  'log_watchers',
  'reserved_fds',
]);
/** `stats items` / `stats slabs` fields (`items:1:age`, `1:chunk_size`) that are sizes or ages, not counts. */
const KEEP_FIRST_PER_SLAB = new Set(['chunk_size', 'chunks_per_page', 'age', 'age_hot', 'age_warm']);

/** Which `stats` form a request is: its counters merge differently. */
type StatsForm = 'general' | 'per-slab' | 'other';

function statsForm(request: Buffer): StatsForm {
  const tokens = new Tokens();
  tokenize(request, request.indexOf(LF), tokens);
  if (tokens.count === 1) return 'general';
  const group = request.toString('latin1', tokens.starts[1], tokens.ends[1]);
  return tokens.count === 2 && (group === 'items' || group === 'slabs') ? 'per-slab' : 'other';
}

/** Whether a STAT field is summed over the servers (else the first server's value is kept). */
function summed(form: StatsForm, name: string): boolean {
  if (form === 'general') return !KEEP_FIRST.has(name);
  const last = name.slice(name.lastIndexOf(':') + 1);
  // Slab totals (`active_slabs`, `total_malloced`) have no ':' and are counts too.
  return !KEEP_FIRST_PER_SLAB.has(last);
}

type ErrorReply = (reason: FailureReason, message: string) => Buffer;

/** One request per group of key indices: the tokens before the keys, then the group's keys. */
export function splitRequest(spec: CommandSpec, bytes: Buffer, args: ArgView, groups: readonly (readonly number[])[]): Buffer[] {
  const keys = spec.keys;
  if (keys.kind !== 'range' || keys.step !== 1) throw new Error(`${spec.name} cannot be split: its keys are not a range`);
  const { starts, ends } = args;
  const prefixEnd = ends[keys.first - 1];
  return groups.map((group) => {
    let size = prefixEnd + 2;
    for (const k of group) size += 1 + ends[keys.first + k] - starts[keys.first + k];
    const request = Buffer.allocUnsafe(size);
    let at = bytes.copy(request, 0, 0, prefixEnd);
    for (const k of group) {
      request[at++] = SPACE;
      at += bytes.copy(request, at, starts[keys.first + k], ends[keys.first + k]);
    }
    request[at++] = 0x0d;
    request[at++] = LF;
    return request;
  });
}

export function mergeReplies(spec: CommandSpec, request: Buffer, keyCount: number, parts: readonly FanoutPart[], errorReply: ErrorReply): Buffer {
  switch (commandOf(spec).kind) {
    case 'get':
    case 'gat':
      return mergeValues(spec, request, keyCount, parts, errorReply);
    case 'stats':
      return mergeStats(spec, statsForm(request), parts, errorReply);
    default:
      return mergeAllOk(spec, parts, errorReply);
  }
}

function failure(spec: CommandSpec, part: FanoutPart & { kind: 'failed' }, errorReply: ErrorReply): Buffer {
  return errorReply(part.reason, `${spec.name} across servers: ${part.message}`);
}

/** One `VALUE <key> …` block: its key (a view of the line) and the whole block. */
interface ValueBlock {
  key: Buffer;
  block: Buffer;
}

/**
 * The VALUE blocks of a complete retrieval reply, or an error line: the whole reply when it is
 * one, or the line that ended it early (memcached may fail after some blocks), or null when the
 * reply cannot be read as one.
 */
function valueBlocks(reply: Buffer): ValueBlock[] | { error: Buffer | null } {
  const blocks: ValueBlock[] = [];
  let at = 0;
  while (at < reply.length) {
    const lf = reply.indexOf(LF, at);
    if (lf < 0) return { error: null };
    if (lf + 1 === reply.length && reply.compare(END, 0, END.length, at, lf + 1) === 0) return blocks;
    const line = reply.subarray(at, lf + 1);
    if (isErrorLine(line)) return { error: line };
    if (line.compare(VALUE, 0, VALUE.length, 0, VALUE.length) !== 0) return { error: null };
    const tokens = new Tokens();
    tokenize(line, lf - at, tokens);
    if (tokens.count < 4) return { error: null };
    const size = Number(line.toString('latin1', tokens.starts[3], tokens.ends[3]));
    const end = lf + 1 + size + 2;
    if (!Number.isInteger(size) || size < 0 || end > reply.length) return { error: null };
    blocks.push({ key: line.subarray(tokens.starts[1], tokens.ends[1]), block: reply.subarray(at, end) });
    at = end;
  }
  return { error: null };
}

function mergeValues(spec: CommandSpec, request: Buffer, keyCount: number, parts: readonly FanoutPart[], errorReply: ErrorReply): Buffer {
  const tokens = new Tokens();
  tokenize(request, request.indexOf(LF), tokens);
  // The keys are the request's last keyCount tokens (after `get`, or `gat <exptime>`).
  const first = tokens.count - keyCount;
  const keyEquals = (index: number, key: Buffer): boolean =>
    key.length === tokens.ends[first + index] - tokens.starts[first + index] && request.compare(key, 0, key.length, tokens.starts[first + index], tokens.ends[first + index]) === 0;
  const placed: (Buffer | null)[] = new Array<Buffer | null>(keyCount).fill(null);
  let answered = 0;
  let firstError: Buffer | null = null;
  for (const part of parts) {
    if (part.kind === 'failed') {
      firstError ??= failure(spec, part, errorReply);
      continue;
    }
    const blocks = valueBlocks(part.bytes);
    if (!Array.isArray(blocks)) {
      firstError ??= blocks.error ?? errorReply('SERVER_ERROR', `${spec.name} across servers: a server's reply could not be read`);
      continue;
    }
    // memcached answers a part's keys in the order asked, misses left out: match them in order.
    const mine: [number, Buffer][] = [];
    let k = 0;
    for (const { key, block } of blocks) {
      while (k < part.keys.length && !keyEquals(part.keys[k], key)) k++;
      if (k === part.keys.length) break;
      mine.push([part.keys[k++], block]);
    }
    if (mine.length !== blocks.length) {
      firstError ??= errorReply('SERVER_ERROR', `${spec.name} across servers: a server answered keys it was not asked for`);
      continue;
    }
    for (const [index, block] of mine) placed[index] = block;
    answered++;
  }
  if (answered === 0) return firstError ?? errorReply('SERVER_ERROR', `${spec.name} across servers: no server answered`);
  const out: Buffer[] = [];
  for (const block of placed) if (block !== null) out.push(block);
  out.push(END);
  return Buffer.concat(out);
}

function mergeAllOk(spec: CommandSpec, parts: readonly FanoutPart[], errorReply: ErrorReply): Buffer {
  for (const part of parts) {
    if (part.kind === 'failed') return failure(spec, part, errorReply);
    if (!part.bytes.equals(OK)) return part.bytes;
  }
  return OK;
}

/** A STAT line's name and value, or null for any other line. */
function statOf(line: Buffer): { name: string; value: string } | null {
  if (line.compare(STAT, 0, STAT.length, 0, STAT.length) !== 0) return null;
  const text = line.toString('latin1', STAT.length).replace(/\r?\n$/, '');
  const space = text.indexOf(' ');
  return space < 0 ? { name: text, value: '' } : { name: text.slice(0, space), value: text.slice(space + 1) };
}

function mergeStats(spec: CommandSpec, form: StatsForm, parts: readonly FanoutPart[], errorReply: ErrorReply): Buffer {
  const replies: Buffer[] = [];
  let firstError: Buffer | null = null;
  for (const part of parts) {
    if (part.kind === 'failed') firstError ??= failure(spec, part, errorReply);
    else if (isErrorLine(part.bytes)) firstError ??= part.bytes;
    else replies.push(part.bytes);
  }
  if (replies.length === 0) return firstError ?? errorReply('SERVER_ERROR', `${spec.name} across servers: no server answered`);
  // A one-line answer (`stats reset`: RESET, `stats detail on`: OK), or a form that describes one
  // server's set-up (`stats settings`, `stats sizes`, `stats conns`): the first server's.
  if (form === 'other' || !replies.every((reply) => reply.length >= END.length && reply.compare(END, 0, END.length, reply.length - END.length) === 0)) return replies[0];
  const stats = new Map<string, string[]>();
  const others: Buffer[] = [];
  for (const reply of replies) {
    let at = 0;
    for (let lf = reply.indexOf(LF, at); lf >= 0 && lf + 1 < reply.length; lf = reply.indexOf(LF, at)) {
      const line = reply.subarray(at, lf + 1);
      at = lf + 1;
      const stat = statOf(line);
      if (stat === null) others.push(line);
      else {
        const values = stats.get(stat.name);
        if (values === undefined) stats.set(stat.name, [stat.value]);
        else values.push(stat.value);
      }
    }
  }
  const lines: string[] = [];
  for (const [name, values] of stats) {
    const sum = summed(form, name) && values.every((v) => /^\d{1,20}$/.test(v));
    lines.push(`STAT ${name} ${sum ? values.reduce((total, v) => total + BigInt(v), 0n).toString() : values[0]}\r\n`);
  }
  return Buffer.concat([Buffer.from(lines.join(''), 'latin1'), ...others, END]);
}
