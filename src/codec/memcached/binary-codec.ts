/**
 * The binary protocol's place in the memcached codec. memcached fixes a connection's protocol at
 * its first byte (0x80: binary), and so does poolside: `ClientRequestDecoder` frames the rest of
 * the stream as binary or as text from that byte on. Binary requests get command specs of their
 * own here (`classifyBinary`), and intake (`binaryIntake`) turns each into one meta request for
 * the shared text connections with a ReplyMap back to binary (binary-translate.ts), or answers it.
 *
 * How the session sees a binary request:
 * - keyed opcodes: a spec named after the opcode (`GETKQ`), its key as argument 0 (the decoder's
 *   ArgView), so routing hashes the key the client sent; the response decoder expects a meta reply.
 * - VERSION, STAT, FLUSH: the specs of `version`, `stats` and `flush_all`, whose text they are sent as
 *   (any server, every server: as the text commands go).
 * - requests memcached closes the connection after (QUIT, lengths that do not fit the opcode): use
 *   `quit`, so the session reads nothing more and closes once the answer is written; the answer is
 *   the ReplyMap's (QUITQ: none).
 * - NOOP, unknown opcodes, SASL: answered by poolside in their turn.
 */
import type { ArgView, CommandSpec, KeySpec, RequestDecoder, RequestLimits, RequestSink } from '../codec.js';
import type { Intake, ReplyMap } from '../session-rules.js';
import { HEADER_BYTES, Op, REQUEST_MAGIC } from './binary-protocol.js';
import { BinaryRequestDecoder } from './binary-request.js';
import { opcodeName, refusalResponse, shapeError, translateBinary } from './binary-translate.js';
import type { McExpect } from './commands.js';
import { commandTable } from './commands.js';

const EMPTY = Buffer.alloc(0);
const NONE: KeySpec = { kind: 'none' };
/** A binary request's key is argument 0 of its ArgView (binary-request.ts). */
const KEY: KeySpec = { kind: 'range', first: 0, last: 0, step: 1 };

/**
 * A client's request stream: binary or text, decided by its first byte. Until that byte arrives it
 * holds nothing; from then on it is the chosen decoder.
 */
export class ClientRequestDecoder implements RequestDecoder {
  readonly #sink: RequestSink;
  readonly #text: () => RequestDecoder;
  readonly #maxItemBytes: number;
  #inner: RequestDecoder | null = null;
  #limits: RequestLimits | null = null;

  constructor(sink: RequestSink, text: () => RequestDecoder, maxItemBytes: number) {
    this.#sink = sink;
    this.#text = text;
    this.#maxItemBytes = maxItemBytes;
  }

  get buffered(): number {
    return this.#inner === null ? 0 : this.#inner.buffered;
  }

  setLimits(limits: RequestLimits | null): void {
    this.#limits = limits;
    this.#inner?.setLimits(limits);
  }

  push(chunk: Buffer): void {
    let inner = this.#inner;
    if (inner === null) {
      if (chunk.length === 0) return;
      inner = chunk[0] === REQUEST_MAGIC ? new BinaryRequestDecoder(this.#sink, this.#maxItemBytes) : this.#text();
      if (this.#limits !== null) inner.setLimits(this.#limits);
      this.#inner = inner;
    }
    inner.push(chunk);
  }
}

/**
 * Whether a framed request is a binary one. A text line that happens to start with 0x80 has its
 * first token at offset 0; a binary request's key (argument 0) never starts before byte 24.
 */
export function isBinaryRequest(bytes: Buffer, args: ArgView): boolean {
  return bytes.length >= HEADER_BYTES && bytes[0] === REQUEST_MAGIC && (args.count === 0 || args.starts[0] >= HEADER_BYTES);
}

function spec(name: string, keys: KeySpec, idempotent: boolean, expects: McExpect, use: 'shared' | 'quit' = 'shared'): CommandSpec {
  return { name, use, keys, idempotent, note: '', expects };
}

function textSpec(name: string): CommandSpec {
  const command = commandTable().get(name);
  if (command === undefined) throw new Error(`memcached command table has no ${name}`);
  return command.spec;
}

const SPECS: CommandSpec[] = [];
const CLOSING = new Map<number, CommandSpec>();
for (let opcode = 0; opcode < 256; opcode++) {
  const name = opcodeName(opcode);
  CLOSING.set(opcode, spec(name, NONE, false, 'line', 'quit'));
  switch (opcode) {
    case Op.GET:
    case Op.GETQ:
    case Op.GETK:
    case Op.GETKQ:
    case Op.GAT:
    case Op.GATQ:
    case Op.GATK:
    case Op.GATKQ:
    case Op.TOUCH:
      SPECS[opcode] = spec(name, KEY, true, 'meta');
      break;
    case Op.SET:
    case Op.SETQ:
    case Op.ADD:
    case Op.ADDQ:
    case Op.REPLACE:
    case Op.REPLACEQ:
    case Op.APPEND:
    case Op.APPENDQ:
    case Op.PREPEND:
    case Op.PREPENDQ:
    case Op.DELETE:
    case Op.DELETEQ:
    case Op.INCREMENT:
    case Op.INCREMENTQ:
    case Op.DECREMENT:
    case Op.DECREMENTQ:
      SPECS[opcode] = spec(name, KEY, false, 'meta');
      break;
    case Op.VERSION:
      SPECS[opcode] = textSpec('version');
      break;
    case Op.STAT:
      SPECS[opcode] = textSpec('stats');
      break;
    case Op.FLUSH:
    case Op.FLUSHQ:
      SPECS[opcode] = textSpec('flush_all');
      break;
    case Op.QUIT:
    case Op.QUITQ:
      SPECS[opcode] = spec(name, NONE, false, 'line', 'quit');
      break;
    default:
      // Answered by poolside (NOOP, SASL, unknown opcodes): nothing is sent.
      SPECS[opcode] = spec(name, NONE, true, 'line');
  }
}

/** The spec of a binary request (isBinaryRequest). */
export function classifyBinary(bytes: Buffer): CommandSpec {
  const opcode = bytes[1];
  return shapeError(bytes) === null ? SPECS[opcode] : (CLOSING.get(opcode) as CommandSpec);
}

/**
 * What a binary client gets for a request refused unrun (DRAINING): its intake's map (the
 * translated requests', or a closing request's own answer), and for one poolside answers itself
 * (NOOP, an opcode it refuses) the refusal as a binary error, never the text line.
 */
export function binaryRefusal(bytes: Buffer): ReplyMap {
  const intake = binaryIntake(bytes);
  if (intake.kind === 'rewrite' && intake.reply !== undefined) return intake.reply;
  return refusalResponse(bytes);
}

/** Intake of a binary request: its meta translation and the map back, or poolside's answer. */
export function binaryIntake(bytes: Buffer): Intake {
  const intake = translateBinary(bytes);
  if (intake.kind === 'send') return { kind: 'rewrite', bytes: intake.bytes, reply: intake.reply };
  const reply = intake.reply;
  // Closing requests have use `quit` (classifyBinary): nothing is sent, the session answers them
  // with the codec's quit reply, which this map replaces with the binary answer (QUITQ: none).
  if (intake.close) return { kind: 'rewrite', bytes: EMPTY, reply: () => reply };
  return { kind: 'answer', reply: reply ?? EMPTY };
}
