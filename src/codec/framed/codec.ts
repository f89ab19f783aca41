/**
 * `protocol: framed`: any length-prefixed RPC, its framing declared in the config (FramedConfig)
 * rather than coded. A frame is an opaque request with exactly one reply frame. With a request-id
 * field, replies may come out of order: the connection matches them by the id poolside gave each
 * request (RequestIds below), and the client gets its own id back. The heartbeat is the configured
 * probe (heartbeat.send / expect), the server's own heartbeat requests are answered by rule
 * (heartbeat.answer), and other frames nobody asked for are dropped or close the connection
 * (framed.unasked). poolside cannot write an error in a protocol it only frames: a request it
 * cannot answer closes the client at that reply's turn (errorReply null).
 */
import { NO_FANOUT } from '../no-fanout.js';
import type { FramedConfig, HeartbeatConfig, PoolConfig } from '../../config/schema.js';
import { matches } from '../../config/probe.js';
import type { ArgView, CommandSpec, RequestDecoder, RequestSink, ResponseDecoder, ResponseSink } from '../codec.js';
import type { Codec, HeartbeatReply, RequestIds } from '../registry.js';
import { Framer } from './framer.js';
import { idKey, idSpace, readId, writeId } from './framing.js';
import { FramedSessionRules } from './session-rules.js';

/** Every frame: shared, no key, never retried (poolside cannot know whether a call is idempotent). */
const FRAME: CommandSpec = { name: 'frame', use: 'shared', keys: { kind: 'none' }, idempotent: false, note: '' };
const NO_ARGS: ArgView = { count: 0, starts: new Int32Array(0), ends: new Int32Array(0) };
const EMPTY = Buffer.alloc(0);

/** Thrift's framed transport (a 4-byte big-endian length, then the body): the registry's base codec, before forPool. */
const THRIFT_FRAMING: FramedConfig = {
  headerSize: 4,
  length: { offset: 0, size: 4, endian: 'big', includesHeader: false, adjustment: 0 },
  requestId: null,
  maxFrameBytes: 16 << 20,
  unasked: 'close',
};
const NO_HEARTBEAT: HeartbeatConfig = { intervalMs: 0, timeoutMs: 1000, misses: 2, jitter: 0, probe: null, answer: null };

class FramedRequestDecoder implements RequestDecoder {
  readonly #framer: Framer;

  constructor(config: FramedConfig, limit: number, sink: RequestSink) {
    this.#framer = new Framer(config, limit, (frame) => sink.onRequest(frame, NO_ARGS));
  }

  push(chunk: Buffer): void {
    this.#framer.push(chunk);
  }

  get buffered(): number {
    return this.#framer.buffered;
  }

  setLimits(): void {}
}

/**
 * A response of this size or more that arrives over several reads is streamed to its client as it
 * arrives (in order only: matched by id, whose it is shows only in its header, and the connection
 * gathers it whole), as Redis's large bulk strings are.
 */
const STREAM_MIN_BYTES = 1024 * 1024;

class FramedResponseDecoder implements ResponseDecoder {
  readonly #framer: Framer;

  constructor(config: FramedConfig, sink: ResponseSink) {
    const part = sink.onResponsePart === undefined || config.requestId !== null ? null : (piece: Buffer, end: boolean): void => sink.onResponsePart?.(piece, end);
    this.#framer = new Framer(config, config.maxFrameBytes, (frame) => sink.onResponse(frame), part, STREAM_MIN_BYTES);
  }

  push(chunk: Buffer): void {
    this.#framer.push(chunk);
  }

  get midFrame(): boolean {
    return this.#framer.midFrame;
  }
}

/** The request-id field, as the connection uses it (Codec.requestIds). */
export function requestIds(field: NonNullable<FramedConfig['requestId']>): RequestIds {
  return {
    space: idSpace(field.size),
    original: (request) => readId(field, request),
    tag(request, id) {
      const copy = Buffer.from(request);
      writeId(field, copy, id);
      return copy;
    },
    idOf: (response) => idKey(field, response),
    restore(response, original) {
      original.copy(response, field.offset);
    },
  };
}

/** The framed codec for one framing and heartbeat configuration. */
export function framedCodecFor(config: FramedConfig, heartbeat: HeartbeatConfig): Codec {
  const ids = config.requestId === null ? undefined : requestIds(config.requestId);
  const probe = heartbeat.probe;
  const answer = heartbeat.answer;
  const idField = config.requestId;
  const codec: Codec = {
    protocol: 'framed',
  sessionKind: 'requests',
    ...NO_FANOUT,
    requestDecoder: (sink, maxRequestBytes) => new FramedRequestDecoder(config, Math.min(maxRequestBytes, config.maxFrameBytes), sink),
    responseDecoder: (sink) => new FramedResponseDecoder(config, sink),
    sessionRules: () => new FramedSessionRules(),
    classify: () => FRAME,
    forPool: (pool: PoolConfig) => forPool(pool),
    forEachKey: () => 0,
    selectIndex: () => null,
    // No database, no setup, no reset, no identity: framed connections hold no session state.
    encodeSelect: () => EMPTY,
    initRequests: () => [],
    resetRequest: null,
    identifyRequest: null,
    parseIdentity: () => null,
    heartbeatRequest: probe === null ? null : probe.send,
    // The reply comes back with send's own id in place (the connection restores it), so an exact
    // expect can be written as the server answers send.
    heartbeatReply: (bytes): HeartbeatReply => (probe === null || matches(probe.expect, bytes) ? 'ok' : 'error'),
    requestIds: ids,
    answerServer:
      answer === null
        ? undefined
        : (frame) => {
            if (!matches(answer.match, frame)) return null;
            const reply = Buffer.from(answer.reply);
            // The server matches our answer to its request by its own id.
            if (idField !== null && frame.length >= idField.offset + idField.size) frame.copy(reply, idField.offset, idField.offset, idField.offset + idField.size);
            return reply;
          },
    unasked: config.unasked,
    okReply: EMPTY,
    isErrorResponse: () => false,
    isBusyResponse: () => false,
    isPush: () => false,
    errorReply: () => null,
  };
  return codec;
}

function forPool(pool: PoolConfig): Codec {
  if (pool.framed === null) throw new Error(`pool ${pool.name}: protocol framed without its framed: section (load.ts requires one)`);
  return framedCodecFor(pool.framed, pool.heartbeat);
}

/** The registry's entry: Thrift framing until forPool binds a pool's own. */
export const framedCodec: Codec = framedCodecFor(THRIFT_FRAMING, NO_HEARTBEAT);
