/**
 * The protocol's half of a session: what a request means beyond its framing. The codec supplies
 * one `SessionRules` per session; the session, the pool and the connection only ever see these
 * interfaces, never a command's name, so a new protocol is a codec directory with its own rules.
 *
 *   request ─▶ rules.intake(): route it (maybe rewritten) · answer it here · refuse it
 *   pinned connection ─▶ rules.pinned(): state that lives on it, from its replies (dirty? may we
 *                        add requests? what does this reply change?)
 */
import type { FailureReason } from '../errors.js';
import type { ArgView, RequestLimits } from './codec.js';
import type { CommandSpec } from './codec.js';

/** Where the session's connection-scoped state moved (a database, for Redis). */
export type DbChange = { kind: 'none' } | { kind: 'selected'; db: number } | { kind: 'unknown' };

/** Another client of the same pool, as the rules may see it. */
export interface ClientHandle {
  /** poolside-wide unique, never reused while the process runs. */
  readonly id: number;
  /** What CLIENT LIST shows (one line). */
  describe(now: number): string;
  /** Subscribed (relaying push frames). */
  readonly subscribed: boolean;
  /** Closes the client. */
  kill(): void;
  /** The server (by name) and server-side id of the connection it is blocked on now, if it is. */
  blockedOn(): { server: string; connectionId: number } | null;
  /** The server (by name) and server-side id of the connection it holds exclusively, if it does. */
  pinnedOn(): { server: string; connectionId: number } | null;
}

/** What the rules may learn of the session they belong to, and of the pool's other clients. */
export interface SessionView extends ClientHandle {
  /** Reads nothing more; closes once the replies it is owed are written. */
  closeAfterReplies(): void;
  /** The server (by name) the session is pinned to, or the one routing gives it now (null: none). */
  homeServer(): string | null;
  client(id: number): ClientHandle | undefined;
  clients(): Iterable<ClientHandle>;
  now(): number;
}

/** Facts about a session, for describing it (CLIENT LIST / CLIENT INFO). */
export interface SessionFacts {
  id: number;
  addr: string;
  laddr: string;
  ageMs: number;
  idleMs: number;
  db: number;
  subscribed: boolean;
  holding: boolean;
  blocked: boolean;
}

/**
 * What the client gets for a request in place of the reply it was answered with (the server's,
 * or poolside's own error or refusal, which is in the codec's protocol too): the mapped bytes, or
 * null for nothing at all (a memcached `noreply` or quiet request whose outcome the client asked
 * not to hear). Called once, in reply order; the reply is whole (never streamed) when a map is set.
 */
export type ReplyMap = (reply: Buffer) => Buffer | null;

/** What to do with a request, decided before it is routed. */
export type Intake =
  /** Route the request as the spec says (the common case: one shared object, no allocation). */
  | { kind: 'route' }
  /**
   * Route these bytes instead, by the keys of the request as the client sent it (Redis: TRACKING
   * REDIRECT with the id translated; memcached: `noreply` taken out so that every request on a
   * shared connection has exactly one reply). `reply`: what the client gets instead (ReplyMap).
   * `hash`: routed as a key with this hash would be instead (a cluster pool's hash is the key's
   * slot: SCAN's cursor names the node it scans by one of its slots).
   */
  | { kind: 'rewrite'; bytes: Buffer; reply?: ReplyMap; hash?: number }
  /** Answered by poolside when its turn comes (after the requests before it): `local` is the rules' own. */
  | { kind: 'local'; local: unknown }
  /** Answered with these bytes (an error for the server) when its turn comes. */
  | { kind: 'answer'; reply: Buffer };

/** How poolside answers a `local` request when its turn comes. */
export type LocalAnswer =
  | { kind: 'reply'; bytes: Buffer }
  | { kind: 'refuse'; message: string }
  /** Sent to this server on any shared connection; the server's reply is the answer. */
  | { kind: 'send'; server: string; bytes: Buffer };

/** How a request goes out on a pinned connection. */
export type PinnedSend =
  /** `prelude`: sent just before it (its reply is nobody's); `barrier`: send nothing more until its reply. */
  | { kind: 'send'; token: unknown; prelude: Buffer | null; barrier: boolean }
  /** Sent as `bytes` instead; the client gets `reply` instead of the server's answer. */
  | { kind: 'replace'; token: unknown; bytes: Buffer; reply: Buffer };

/** State that lives on one pinned connection (a transaction, watched keys), tracked from replies. */
export interface PinnedState {
  /** State that only a reset undoes may exist (sent or acknowledged). */
  readonly dirty: boolean;
  /** Acknowledged state holds the connection (for describing the session). */
  readonly holding: boolean;
  /** poolside must add nothing to the stream now (a transaction is being queued). */
  readonly queuing: boolean;
  /** A request is about to go out on the connection. */
  send(spec: CommandSpec): PinnedSend;
  /** The reply to a request sent with `token`, in order; `selectDb` as classified at intake. */
  reply(token: unknown, selectDb: number | null, bytes: Buffer): DbChange;
  /** poolside answered a request itself (refused it) on this connection's behalf. */
  refusedInside(): void;
}

/** What to do with a request before anything else, while the client must authenticate to poolside. */
export type Admission =
  | { kind: 'pass' }
  /** Answered here; `wrongPassword`: it carried credentials that were refused; `close`: close the client after it. */
  | { kind: 'answer'; reply: Buffer; wrongPassword: boolean; close: boolean }
  /** Run `request` instead, as if the client had sent it (credentials taken out). */
  | { kind: 'replace'; request: Buffer };

/**
 * A protocol's own answers in a pool whose servers are one keyspace cut in slots (Redis Cluster),
 * where state that lives on a connection lives on one node only: see docs/redis-cluster.md.
 */
export interface ClusterRules {
  /**
   * A keyless pin-open request (Redis MULTI) is answered at once and opened on the node of the
   * first request after it. Before that, the reply for a request that closes it (EXEC: an empty
   * array, or EXECABORT when `aborted`: poolside refused a request inside it; DISCARD: OK); null:
   * not a closing request, it opens the pin like any other.
   */
  closeDeferred(spec: CommandSpec, aborted: boolean): Buffer | null;
  /**
   * Before the deferred pin-open is sent: the server's own refusal for a request that may not come
   * inside it and leaves it as it is (Redis: a nested MULTI, WATCH inside MULTI), or null. It must
   * not pin the transaction to a node of its choosing.
   */
  refusedInsideDeferred(spec: CommandSpec): Buffer | null;
}

export interface SessionRules {
  /** Present for a protocol a cluster pool can serve (Redis). */
  readonly cluster?: ClusterRules;
  /**
   * Admission to poolside (Redis: client_auth checks AUTH and HELLO … AUTH itself). Cheap when the
   * pool has no client authentication.
   */
  admit(spec: CommandSpec, bytes: Buffer, args: ArgView): Admission;
  /** Limits the request decoder applies now (smaller before the client has authenticated), or null. */
  requestLimits(): RequestLimits | null;
  /** Before routing: route, answer here, or keep for a local answer. */
  intake(spec: CommandSpec, bytes: Buffer, args: ArgView, view: SessionView): Intake;
  /**
   * Instead of intake, for a request refused unrun (DRAINING): what the client's protocol makes of
   * poolside's error reply to it (memcached: a binary request's binary error, nothing for
   * `noreply`), or null to write the error as it is. Changes no session state, except that
   * silentReply() then answers for this request as after its intake.
   */
  refusalReply(spec: CommandSpec, bytes: Buffer, args: ArgView): ReplyMap | null;
  /**
   * Asked once per request, in request order, right after its intake: true when the client asked
   * not to get its reply (Redis CLIENT REPLY OFF / SKIP). The reply is still framed, then dropped.
   */
  silentReply(): boolean;
  /** Answers a request intake kept for a local answer, when its turn comes. */
  answerLocal(local: unknown, view: SessionView): LocalAnswer;
  /** A command with no key that any server of a sharded pool can answer. */
  anyServer(spec: CommandSpec): boolean;
  /** Tracks the state of a newly pinned connection. */
  pinned(): PinnedState;
  /** A successful reply to a request that changes the session's own state (name, protocol). */
  noteReply(spec: CommandSpec, request: Buffer, reply: Buffer): void;
  /**
   * poolside could not give a pin request its connection (no exclusive connection in time, no
   * healthy server, a sharded pool): whether later requests must fail with it is the rules' call
   * (Redis: a refused MULTI fails everything up to its EXEC/DISCARD).
   */
  refusedPin(spec: CommandSpec, reason: FailureReason, message: string): void;
  /** Whether this request must fail because of an earlier refusal (see refusedPin), and how. */
  aborted(spec: CommandSpec): { reason: FailureReason; message: string } | null;
  /** One line describing the session (CLIENT LIST). */
  describe(facts: SessionFacts, lastCommand: string): string;
}
