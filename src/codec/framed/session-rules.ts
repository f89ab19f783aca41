/**
 * A framed RPC session's rules: a frame is an opaque request with one reply. Nothing is answered
 * locally, nothing pins a connection, and no state lives on one, so every connection is clean
 * when a session gives it back.
 */
import type { CommandSpec } from '../codec.js';
import type { Admission, DbChange, Intake, LocalAnswer, PinnedSend, PinnedState, SessionFacts, SessionRules } from '../session-rules.js';

const PASS: Admission = { kind: 'pass' };
const ROUTE: Intake = { kind: 'route' };
const SEND: PinnedSend = { kind: 'send', token: null, prelude: null, barrier: false };
const NO_CHANGE: DbChange = { kind: 'none' };

/** A framed connection lent exclusively (lease: exclusive) carries no session state. */
const CLEAN: PinnedState = {
  dirty: false,
  holding: false,
  queuing: false,
  send: () => SEND,
  reply: () => NO_CHANGE,
  refusedInside: () => {},
};

export class FramedSessionRules implements SessionRules {
  admit(): Admission {
    return PASS;
  }

  requestLimits(): null {
    return null;
  }

  intake(): Intake {
    return ROUTE;
  }

  refusalReply(): null {
    return null;
  }

  silentReply(): boolean {
    return false;
  }

  answerLocal(): LocalAnswer {
    // intake never keeps a request for a local answer.
    return { kind: 'refuse', message: 'framed requests are never answered by poolside' };
  }

  anyServer(): boolean {
    // A frame has no key: any server of the pool may serve it.
    return true;
  }

  pinned(): PinnedState {
    return CLEAN;
  }

  noteReply(): void {}

  refusedPin(): void {}

  aborted(_spec: CommandSpec): null {
    return null;
  }

  describe(facts: SessionFacts): string {
    return `id=${facts.id} addr=${facts.addr} laddr=${facts.laddr} age=${Math.floor(facts.ageMs / 1000)} idle=${Math.floor(facts.idleMs / 1000)}`;
  }
}
