/**
 * memcached's rules for one session (session-rules.ts): what a request line means beyond its
 * framing. A shared server connection must see exactly one reply per request, in order, so:
 *
 * - `noreply` (text commands) is never forwarded: the request goes out without it, the server
 *   answers, and the session drops that answer (silentReply): the client hears nothing, whatever
 *   happened, poolside's own errors included (memcached also hides errors under noreply).
 * - `q` (quiet meta commands) is never forwarded either: the request goes out without it, and a
 *   ReplyMap drops the answers q would have hidden (mg: `EN`; ms/md/ma: `HD`, and ma's `VA` on
 *   success), passing the others (`NF`, `EX`, `NS`, errors) to the client.
 * - `mn` is answered `MN` by poolside when its turn comes: replies reach the client in request
 *   order, so every reply of the requests before it has been written by then, on whichever servers
 *   they ran.
 * - Requests memcached would answer without reading their data block (a storage line it refuses),
 *   or answer twice, are answered here as memcached answers them and never forwarded.
 */
import type { FailureReason } from '../../errors.js';
import type { ArgView, CommandSpec, RequestLimits } from '../codec.js';
import type { Admission, DbChange, Intake, LocalAnswer, PinnedSend, PinnedState, ReplyMap, SessionFacts, SessionRules } from '../session-rules.js';
import { binaryIntake, binaryRefusal, isBinaryRequest } from './binary-codec.js';
import { commandOf, storageLine } from './commands.js';
import type { McKind } from './commands.js';
import { KEY_MAX_BYTES, LF, META_MAX_TOKENS, parseInt32, tokenIs } from './text.js';

const PASS: Admission = { kind: 'pass' };
const ROUTE: Intake = { kind: 'route' };

function answer(text: string): Intake {
  return { kind: 'answer', reply: Buffer.from(`${text}\r\n`, 'latin1') };
}

const ERROR = answer('ERROR');
const BAD_FORMAT = answer('CLIENT_ERROR bad command line format');
const FLAGS_TOO_LONG = answer('CLIENT_ERROR options flags too long');
/** mg's own words for it (memcached 1.6): a client matching the text sees what memcached says. */
const MG_FLAGS_TOO_LONG = answer('CLIENT_ERROR options flags are too long');
const TOO_LARGE = answer('SERVER_ERROR object too large for cache');
const BAD_CHUNK = answer('CLIENT_ERROR bad data chunk');
const MN = answer('MN');
/** An answer the client asked not to get (noreply): nothing is written. */
const NOTHING: Intake = { kind: 'answer', reply: Buffer.alloc(0) };

const ANSWERS = new Map<string, Intake>([
  ['ERROR', ERROR],
  ['CLIENT_ERROR bad command line format', BAD_FORMAT],
  ['CLIENT_ERROR options flags too long', FLAGS_TOO_LONG],
]);

function isWord(reply: Buffer, word: string): boolean {
  if (reply.length < word.length + 2) return false;
  for (let i = 0; i < word.length; i++) if (reply[i] !== word.charCodeAt(i)) return false;
  const next = reply[word.length];
  return next === 0x20 || next === 0x0d;
}

/** mg with q: a miss is not told. */
const QUIET_GET: ReplyMap = (reply) => (isWord(reply, 'EN') ? null : reply);
/** ms, md with q: success is not told. */
const QUIET_STORE: ReplyMap = (reply) => (isWord(reply, 'HD') ? null : reply);
/** ma with q: success is not told, with its value or without. */
const QUIET_ARITH: ReplyMap = (reply) => (isWord(reply, 'HD') || isWord(reply, 'VA') ? null : reply);

/** `bytes` without token i (and the spaces before it). */
export function withoutToken(bytes: Buffer, starts: Int32Array, ends: Int32Array, i: number): Buffer {
  const cut = i > 0 ? ends[i - 1] : starts[i];
  return Buffer.concat([bytes.subarray(0, cut), bytes.subarray(ends[i])]);
}

/** The meta flag tokens start here (after the key; ms: after the data length). */
export function firstFlag(kind: McKind): number {
  return kind === 'ms' ? 3 : 2;
}

/** The meta flag tokens starting with one character: none, exactly one (at `index`), or several. */
export type FlagSearch = { kind: 'none' } | { kind: 'one'; index: number } | { kind: 'several' };
const NO_FLAG: FlagSearch = { kind: 'none' };
const SEVERAL_FLAGS: FlagSearch = { kind: 'several' };

export function metaFlag(bytes: Buffer, args: ArgView, from: number, flag: number): FlagSearch {
  let found: FlagSearch = NO_FLAG;
  for (let i = from; i < args.count; i++) {
    if (bytes[args.starts[i]] !== flag) continue;
    if (found.kind === 'one') return SEVERAL_FLAGS;
    found = { kind: 'one', index: i };
  }
  return found;
}

const Q = 0x71;

/** Nothing lives on a memcached connection: an exclusive one (lease: exclusive) carries no state. */
const STATELESS: PinnedState = {
  dirty: false,
  holding: false,
  queuing: false,
  send: (): PinnedSend => ({ kind: 'send', token: null, prelude: null, barrier: false }),
  reply: (): DbChange => ({ kind: 'none' }),
  refusedInside: () => {},
};

export class McSessionRules implements SessionRules {
  /** The request just taken in asked for no reply (noreply): its answer is dropped. */
  #silent = false;

  admit(): Admission {
    return PASS;
  }

  requestLimits(): RequestLimits | null {
    return null;
  }

  /**
   * Taken in as if it were to run (intake keeps no state here but the noreply flag, which is what
   * a refusal needs too): a binary request gets its binary map (binaryRefusal: one poolside
   * answers itself, NOOP included, a binary error too), a `noreply` one is silent, and a quiet
   * meta request's map passes errors as memcached does.
   */
  refusalReply(spec: CommandSpec, bytes: Buffer, args: ArgView): ReplyMap | null {
    if (isBinaryRequest(bytes, args)) return binaryRefusal(bytes);
    const intake = this.intake(spec, bytes, args);
    return intake.kind === 'rewrite' ? (intake.reply ?? null) : null;
  }

  intake(spec: CommandSpec, bytes: Buffer, args: ArgView): Intake {
    if (isBinaryRequest(bytes, args)) return binaryIntake(bytes);
    const command = commandOf(spec);
    const { starts, ends, count } = args;
    switch (command.kind) {
      case 'unknown':
        return ERROR;
      case 'refused':
      case 'version':
      case 'stats':
      case 'quit':
        return ROUTE;
      case 'mn':
        return MN;
      case 'get':
      case 'gat': {
        if (count < 2) return ERROR;
        let first = 1;
        if (command.kind === 'gat') {
          // memcached reads the exptime first; one it cannot read is its error, not a key's.
          if (parseInt32(bytes, starts[1], ends[1]) === null) return ROUTE;
          first = 2;
        }
        for (let i = first; i < count; i++) if (ends[i] - starts[i] > KEY_MAX_BYTES) return BAD_FORMAT;
        return ROUTE;
      }
      case 'store':
      case 'cas':
      case 'ms':
        return this.#storage(command.kind, bytes, args);
      // memcached takes a last token `noreply` as noreply wherever it stands once the token count
      // fits (`incr k noreply` too: then the delta is unreadable and even that error is hidden): it
      // is taken out whenever memcached would honour it, so the server always answers.
      case 'delete':
        // delete <key> [0] [noreply]
        return this.#keyed(bytes, args, 2, 4);
      case 'arith':
      case 'touch':
        // incr <key> <delta> [noreply], touch <key> <exptime> [noreply]
        return this.#keyed(bytes, args, 3, 4);
      case 'verbosity':
        // verbosity <level> [noreply]
        return this.#keyless(bytes, args, 2, 3);
      case 'flush_all':
        // flush_all [delay] [noreply]
        return this.#keyless(bytes, args, 1, 3);
      case 'mg':
      case 'md':
      case 'ma': {
        if (count < 2) return ERROR;
        if (ends[1] - starts[1] > KEY_MAX_BYTES) return BAD_FORMAT;
        if (count + 1 > META_MAX_TOKENS) return command.kind === 'mg' ? MG_FLAGS_TOO_LONG : FLAGS_TOO_LONG;
        return this.#quiet(command.kind, bytes, args);
      }
      case 'me':
        return count < 2 ? BAD_FORMAT : ROUTE;
    }
  }

  /** A command with a key: its token count, its key's length, noreply. */
  #keyed(bytes: Buffer, args: ArgView, min: number, max: number): Intake {
    const { starts, ends, count } = args;
    if (count < min || count > max) return ERROR;
    const noreply = count >= 3 && tokenIs(bytes, starts, ends, count - 1, 'noreply');
    if (ends[1] - starts[1] > KEY_MAX_BYTES) return noreply ? this.#nothing() : BAD_FORMAT;
    return this.#stripNoreply(noreply, bytes, args);
  }

  #keyless(bytes: Buffer, args: ArgView, min: number, max: number): Intake {
    const { starts, ends, count } = args;
    if (count < min || count > max) return ERROR;
    return this.#stripNoreply(count >= 2 && tokenIs(bytes, starts, ends, count - 1, 'noreply'), bytes, args);
  }

  /** noreply: whatever poolside would answer, the client gets nothing. */
  #nothing(): Intake {
    this.#silent = true;
    return NOTHING;
  }

  #stripNoreply(noreply: boolean, bytes: Buffer, args: ArgView): Intake {
    if (!noreply) return ROUTE;
    this.#silent = true;
    return { kind: 'rewrite', bytes: withoutToken(bytes, args.starts, args.ends, args.count - 1) };
  }

  #storage(kind: McKind, bytes: Buffer, args: ArgView): Intake {
    const line = storageLine(kind, bytes, args.starts, args.ends, args.count);
    if (line.kind === 'error') {
      if (line.quiet) return this.#nothing();
      return ANSWERS.get(line.reply) ?? answer(line.reply);
    }
    // The text commands' noreply hides even errors; ms's q never hides one.
    const lineEnd = bytes.indexOf(LF) + 1;
    // The decoder counted away a block larger than max_item_size: the line came alone.
    if (bytes.length === lineEnd) return line.noreply ? this.#nothing() : TOO_LARGE;
    if (bytes[bytes.length - 2] !== 0x0d || bytes[bytes.length - 1] !== LF) return line.noreply ? this.#nothing() : BAD_CHUNK;
    if (kind === 'ms') return this.#quiet('ms', bytes, args);
    return this.#stripNoreply(line.noreply, bytes, args);
  }

  /** A meta command with q goes out without it; the map hides what q would have hidden. */
  #quiet(kind: McKind, bytes: Buffer, args: ArgView): Intake {
    const q = metaFlag(bytes, args, firstFlag(kind), Q);
    // Several q flags: memcached refuses the duplicate, an error q never hides.
    if (q.kind !== 'one') return ROUTE;
    const reply = kind === 'mg' ? QUIET_GET : kind === 'ma' ? QUIET_ARITH : QUIET_STORE;
    return { kind: 'rewrite', bytes: withoutToken(bytes, args.starts, args.ends, q.index), reply };
  }

  silentReply(): boolean {
    const silent = this.#silent;
    this.#silent = false;
    return silent;
  }

  answerLocal(): LocalAnswer {
    // intake never keeps a request for a local answer.
    return { kind: 'reply', bytes: Buffer.from('ERROR\r\n') };
  }

  anyServer(spec: CommandSpec): boolean {
    const command = commandOf(spec);
    return command.spread === 'one' && spec.keys.kind === 'none';
  }

  pinned(): PinnedState {
    return STATELESS;
  }

  noteReply(): void {}

  refusedPin(_spec: CommandSpec, _reason: FailureReason, _message: string): void {}

  aborted(): { reason: FailureReason; message: string } | null {
    return null;
  }

  describe(facts: SessionFacts, lastCommand: string): string {
    return `id=${facts.id} addr=${facts.addr} laddr=${facts.laddr} age=${Math.floor(facts.ageMs / 1000)} idle=${Math.floor(facts.idleMs / 1000)} cmd=${lastCommand}`;
  }
}
