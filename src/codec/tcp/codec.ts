/**
 * protocol: tcp — no framing at all. Each client gets an exclusive connection for its whole life
 * and bytes are relayed both ways as they come (session/relay-session.ts), so nothing here is ever
 * asked to frame, classify or answer a request: the codec exists to say so (`sessionKind:
 * 'relay'`) and that poolside has no error reply in it (errorReply null: a refused client of an
 * unknown protocol can only be told by a close). Liveness and reuse are configured exchanges
 * (heartbeat.send/expect, tcp.reset), run by the pool on raw connections (pool/probe.ts).
 */
import { NO_FANOUT } from '../no-fanout.js';
import type { RequestDecoder, ResponseDecoder } from '../codec.js';
import type { Codec } from '../registry.js';
import { ProtocolError } from '../codec.js';
import type { SessionRules } from '../session-rules.js';

/** okReply: never written (a tcp session answers nothing itself). */
const NOTHING = Buffer.alloc(0);

function unframed(what: string): never {
  throw new Error(`protocol tcp frames nothing (${what}): its sessions relay bytes`);
}

/** A decoder that must never be fed: tcp connections and clients are relayed, not framed. */
const noDecoder: RequestDecoder & ResponseDecoder = {
  push: () => {
    throw new ProtocolError('protocol tcp frames nothing');
  },
  buffered: 0,
  midFrame: false,
  setLimits: () => {},
};

export const tcpCodec: Codec = {
  protocol: 'tcp',
  sessionKind: 'relay',
  ...NO_FANOUT,
  requestDecoder: () => noDecoder,
  responseDecoder: () => noDecoder,
  sessionRules: (): SessionRules => unframed('session rules'),
  classify: () => unframed('classify'),
  forPool: () => tcpCodec,
  forEachKey: () => 0,
  selectIndex: () => null,
  encodeSelect: () => unframed('select'),
  initRequests: () => [],
  // Its reset is configured (tcp.reset) and run by the relay session on the raw stream.
  resetRequest: null,
  identifyRequest: null,
  parseIdentity: () => null,
  heartbeatRequest: null,
  okReply: NOTHING,
  isErrorResponse: () => false,
  isBusyResponse: () => false,
  isPush: () => false,
  errorReply: () => null,
};
