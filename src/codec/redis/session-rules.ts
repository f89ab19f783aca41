/**
 * Redis's rules for one session (session-rules.ts): the CLIENT subcommands poolside answers for the
 * poolside client, CLIENT TRACKING REDIRECT translation, CLIENT REPLY, the write fence before WAIT,
 * transaction state on a pinned connection, and what CLIENT LIST shows.
 */
import type { FailureReason } from '../../errors.js';
import type { ArgView, RequestLimits } from '../codec.js';
import { screen, UNAUTHENTICATED_LIMITS, WRONGPASS } from './client-auth.js';
import type { ClientAuth } from './client-auth.js';
import type { CommandSpec } from './commands.js';
import {
  describeClient,
  needsWriteFence,
  parseClientCommand,
  rewriteRedirect,
  unblockRequest,
  WRITE_FENCE_REQUEST,
} from './client-commands.js';
import type { ClientCommand } from './client-commands.js';
import { DISCARD_REQUEST, EXECABORT, RedisTransaction, txRole } from './transaction.js';
import type { TxRole } from './transaction.js';
import { encodeError } from './resp.js';
import { clusterRule } from './cluster-keyspace.js';
import { CLUSTER_SLOTS, parseCursor, replaceArg, scanReplyMap } from './scan-cursor.js';
import type { SlotStarts } from './scan-cursor.js';
import type { Admission, ClusterRules, DbChange, Intake, LocalAnswer, PinnedSend, PinnedState, SessionFacts, SessionRules, SessionView } from '../session-rules.js';

/** Commands without keys that any server of a ketama pool can answer. */
const KEYLESS_ANYWHERE = new Set([
  'PING', 'ECHO', 'TIME', 'COMMAND', 'LOLWUT', 'HELLO', 'QUIT',
  // Subcommands have specs of their own (commands.ts); these describe the server's vocabulary.
  'COMMAND COUNT', 'COMMAND DOCS', 'COMMAND GETKEYS', 'COMMAND GETKEYSANDFLAGS', 'COMMAND HELP', 'COMMAND INFO', 'COMMAND LIST',
]);

const OK = Buffer.from('+OK\r\n');
const SCAN_ARITY = encodeError("ERR wrong number of arguments for 'scan' command");
const INVALID_CURSOR = encodeError('ERR invalid cursor');
const ZERO = Buffer.from(':0\r\n');
const ONE = Buffer.from(':1\r\n');

function bulk(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

/** A transaction tracker behind the protocol-neutral PinnedState. */
class RedisPinnedState implements PinnedState {
  readonly #tx = new RedisTransaction();

  get dirty(): boolean {
    return this.#tx.dirty;
  }

  get holding(): boolean {
    return this.#tx.holding;
  }

  get queuing(): boolean {
    return this.#tx.queuing;
  }

  send(spec: CommandSpec): PinnedSend {
    const role = txRole(spec.name);
    const queuing = this.#tx.queuing;
    // An EXEC that may commit a SELECT: nothing more on the session's behalf until its reply says
    // which database the connection is in.
    const barrier = this.#tx.needsBarrier(role);
    if (this.#tx.onSend(role) === 'abort') {
      // poolside refused a command of this transaction: Redis would answer EXECABORT, and so does
      // poolside, after discarding what the server queued.
      return { kind: 'replace', token: 'discard' satisfies TxRole, bytes: DISCARD_REQUEST, reply: EXECABORT };
    }
    // WAIT counts replicas that acknowledged this connection's last write; the session's writes
    // ran on shared connections, so a propagated no-op first makes that offset cover them.
    const prelude = !queuing && needsWriteFence(spec.name) ? WRITE_FENCE_REQUEST : null;
    return { kind: 'send', token: role, prelude, barrier };
  }

  reply(token: unknown, selectDb: number | null, bytes: Buffer): DbChange {
    // The token is the role send() gave this request.
    return this.#tx.onReply(token as TxRole, selectDb, bytes);
  }

  refusedInside(): void {
    this.#tx.refusedInside();
  }
}

const EMPTY_ARRAY = Buffer.from('*0\r\n');
const NESTED_MULTI = Buffer.from('-ERR MULTI calls can not be nested\r\n');
const WATCH_INSIDE_MULTI = Buffer.from('-ERR WATCH inside MULTI is not allowed\r\n');

/** Redis's answers in a cluster pool (docs/redis-cluster.md#stateful-commands). */
const REDIS_CLUSTER_RULES: ClusterRules = {
  closeDeferred(spec: CommandSpec, aborted: boolean): Buffer | null {
    // MULTI with nothing queued: EXEC runs nothing (an empty array), unless a command of it was
    // refused, which aborts it as Redis's failed-to-queue does; DISCARD just ends it.
    if (spec.name === 'EXEC') return aborted ? EXECABORT : EMPTY_ARRAY;
    if (spec.name === 'DISCARD') return OK;
    return null;
  },
  refusedInsideDeferred(spec: CommandSpec): Buffer | null {
    // Redis answers these without queuing them or aborting the transaction.
    if (spec.name === 'MULTI') return NESTED_MULTI;
    if (spec.name === 'WATCH') return WATCH_INSIDE_MULTI;
    return null;
  },
};

const PASS: Admission = { kind: 'pass' };
const ROUTE: Intake = { kind: 'route' };

export class RedisSessionRules implements SessionRules {
  readonly cluster: ClusterRules = REDIS_CLUSTER_RULES;
  /** client_auth of the pool, or null: clients need not authenticate to poolside. */
  readonly #auth: ClientAuth | null;
  #authenticated: boolean;
  #wrongPasswords = 0;

  /** A cluster pool's primaries by slot (SCAN across them), or null: the pool is no cluster. */
  readonly #scanStarts: SlotStarts | null;

  constructor(auth: ClientAuth | null, scanStarts: SlotStarts | null = null) {
    this.#auth = auth;
    this.#authenticated = auth === null;
    this.#scanStarts = scanStarts;
  }

  admit(spec: CommandSpec, bytes: Buffer, args: ArgView): Admission {
    const auth = this.#auth;
    if (auth === null) return PASS;
    if (spec.name === 'RESET' && this.#authenticated) {
      // RESET logs the client out, as with requirepass on Redis: what follows needs AUTH again.
      this.#authenticated = false;
      return PASS;
    }
    if (this.#authenticated && spec.name !== 'AUTH' && spec.name !== 'HELLO') return PASS;
    const screened = screen(auth, spec.name, bytes, args, this.#authenticated);
    switch (screened.kind) {
      case 'pass':
        return PASS;
      case 'answer': {
        const wrongPassword = screened.reply === WRONGPASS;
        const close = wrongPassword && auth.wrongPassword(++this.#wrongPasswords) === 'close';
        this.#authenticated = screened.authenticated;
        return { kind: 'answer', reply: screened.reply, wrongPassword, close };
      }
      case 'replace':
        this.#authenticated = true;
        return screened;
    }
  }

  requestLimits(): RequestLimits | null {
    // Redis's limits for a client that has not authenticated: it cannot make poolside hold a large request.
    return this.#authenticated ? null : UNAUTHENTICATED_LIMITS;
  }

  /** CLIENT REPLY: OFF drops every reply; `#skip` replies are dropped first (SKIP: itself and the next). */
  #replyOff = false;
  #skip = 0;
  /** MULTI seen and no EXEC/DISCARD/RESET after it, in the order the client sent them. */
  #queuingAtIntake = false;
  /** From CLIENT SETNAME and HELLO replies, for CLIENT LIST. */
  #name = '';
  #resp = 2;
  /** A MULTI poolside could not serve (no exclusive connection): its commands fail until EXEC or DISCARD. */
  #aborted: { reason: FailureReason; message: string } | null = null;

  refusedPin(spec: CommandSpec, reason: FailureReason, message: string): void {
    // Only a refused MULTI opens a transaction that must not run in parts; a refused WATCH is just refused.
    if (spec.name === 'MULTI') this.#aborted = { reason, message };
  }

  aborted(spec: CommandSpec): { reason: FailureReason; message: string } | null {
    const aborted = this.#aborted;
    if (aborted === null) return null;
    // Inside MULTI an UNWATCH is queued, not run: only EXEC, DISCARD and RESET end the transaction.
    if (spec.name === 'EXEC' || spec.name === 'DISCARD' || spec.name === 'RESET') this.#aborted = null;
    if (spec.name === 'RESET' || spec.name === 'QUIT') return null;
    return aborted;
  }

  /** A refusal is a RESP error as it is; CLIENT REPLY OFF / SKIP still apply (silentReply). */
  refusalReply(): null {
    return null;
  }

  intake(spec: CommandSpec, bytes: Buffer, args: ArgView, view: SessionView): Intake {
    switch (spec.name) {
      case 'MULTI':
        this.#queuingAtIntake = true;
        break;
      case 'EXEC':
      case 'DISCARD':
        this.#queuingAtIntake = false;
        break;
      case 'RESET':
        // RESET ends a transaction and turns CLIENT REPLY back on (and is answered itself).
        this.#queuingAtIntake = false;
        this.#replyOff = false;
        this.#skip = 0;
        break;
    }
    if (spec.use === 'local') {
      const command = parseClientCommand(bytes, args);
      // Inside MULTI the command is refused when its turn comes (the transaction aborts): it
      // changes nothing now.
      // Subscribed (RESP2), the server refuses it as Redis does: nothing changes either.
      if (command.kind === 'reply' && !this.#queuingAtIntake && !view.subscribed) {
        // In request order, not when its turn comes: it decides which of the following replies are written.
        // SKIP drops its own reply and the next one; while OFF it changes nothing (as in Redis).
        if (command.mode === 'SKIP') {
          if (!this.#replyOff) this.#skip = 2;
        } else {
          this.#replyOff = command.mode === 'OFF';
          this.#skip = 0;
        }
      }
      return { kind: 'local', local: command };
    }
    if (this.#scanStarts !== null && spec.use === 'shared') {
      const routed = this.#clusterIntake(spec, bytes, args, this.#scanStarts);
      if (routed !== null) return routed;
    }
    if (spec.name === 'CLIENT TRACKING') {
      const rewritten = rewriteRedirect(bytes, args, (id) => {
        const target = view.client(id)?.pinnedOn();
        return target === undefined || target === null || target.server !== view.homeServer() ? null : target.connectionId;
      });
      if (rewritten === null) return ROUTE;
      if ('error' in rewritten) return { kind: 'answer', reply: encodeError(rewritten.error) };
      return { kind: 'rewrite', bytes: rewritten as Buffer };
    }
    return ROUTE;
  }

  /**
   * A cluster pool's keyless requests that go to one node chosen by an argument: SCAN by its
   * cursor (scan-cursor.ts), CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT by their slot. null: as usual.
   */
  #clusterIntake(spec: CommandSpec, bytes: Buffer, args: ArgView, cluster: SlotStarts): Intake | null {
    const r = clusterRule(spec.name);
    if (r === undefined) return null;
    if (r.how === 'scan') {
      if (args.count < 2) return { kind: 'answer', reply: SCAN_ARITY };
      const position = parseCursor(bytes.toString('latin1', args.starts[1], args.ends[1]));
      if (position === null) return { kind: 'answer', reply: INVALID_CURSOR };
      return {
        kind: 'rewrite',
        bytes: replaceArg(bytes, args, 1, position.server.toString()),
        reply: scanReplyMap(position.slot, cluster),
        hash: position.slot,
      };
    }
    if (r.how === 'slot') {
      // A slot the node cannot read goes to slot 0's owner, which refuses it in Redis's words.
      const text = args.count > r.at ? bytes.toString('latin1', args.starts[r.at], args.ends[r.at]) : '';
      const slot = /^[0-9]{1,5}$/.test(text) ? Number(text) : 0;
      return { kind: 'rewrite', bytes, hash: slot < CLUSTER_SLOTS ? slot : 0 };
    }
    return null;
  }

  silentReply(): boolean {
    if (this.#skip > 0) {
      this.#skip--;
      return true;
    }
    return this.#replyOff;
  }

  answerLocal(local: unknown, view: SessionView): LocalAnswer {
    const command = local as ClientCommand;
    switch (command.kind) {
      case 'error':
        return { kind: 'reply', bytes: encodeError(command.message) };
      case 'refuse':
        return { kind: 'refuse', message: command.message };
      case 'id':
        return { kind: 'reply', bytes: Buffer.from(`:${view.id}\r\n`) };
      case 'info':
        return { kind: 'reply', bytes: bulk(`${view.describe(view.now())}\n`) };
      case 'list': {
        const now = view.now();
        let text = '';
        for (const client of view.clients()) {
          if (command.ids !== null && !command.ids.includes(client.id)) continue;
          if (command.type !== null && (command.type === 'pubsub') !== client.subscribed) continue;
          text += `${client.describe(now)}\n`;
        }
        return { kind: 'reply', bytes: bulk(text) };
      }
      case 'kill': {
        const target = view.client(command.id);
        if (target === undefined || (command.skipMe && target.id === view.id)) return { kind: 'reply', bytes: ZERO };
        // Killing itself, a client still gets the :1 (Redis closes it after the reply).
        if (target.id === view.id) view.closeAfterReplies();
        else target.kill();
        return { kind: 'reply', bytes: ONE };
      }
      case 'unblock': {
        const blocked = view.client(command.id)?.blockedOn() ?? null;
        if (blocked === null) return { kind: 'reply', bytes: ZERO };
        return { kind: 'send', server: blocked.server, bytes: unblockRequest(blocked.connectionId, command.mode) };
      }
      case 'reply':
        return { kind: 'reply', bytes: OK };
    }
  }

  anyServer(spec: CommandSpec): boolean {
    return KEYLESS_ANYWHERE.has(spec.name);
  }

  pinned(): PinnedState {
    return new RedisPinnedState();
  }

  noteReply(spec: CommandSpec, request: Buffer, reply: Buffer): void {
    if (reply[0] === 0x2d /* - */) return;
    if (spec.name === 'RESET') {
      this.#name = '';
      this.#resp = 2;
      return;
    }
    if (spec.name !== 'CLIENT SETNAME' && spec.name !== 'HELLO') return;
    // Arguments of a short multibulk: every other line after the count.
    const words = request.toString('latin1', 0, Math.min(request.length, 512)).split('\r\n').filter((_, i) => i % 2 === 0 && i > 0);
    if (spec.name === 'CLIENT SETNAME') this.#name = words[2] ?? '';
    else if (words[1] === '3' || words[1] === '2') this.#resp = Number(words[1]);
  }

  describe(facts: SessionFacts, lastCommand: string): string {
    let flags = '';
    if (facts.subscribed) flags += 'P';
    if (facts.holding) flags += 'x';
    if (facts.blocked) flags += 'b';
    return describeClient({
      id: facts.id,
      addr: facts.addr,
      laddr: facts.laddr,
      name: this.#name,
      ageS: Math.floor(facts.ageMs / 1000),
      idleS: Math.floor(facts.idleMs / 1000),
      db: facts.db,
      flags: flags === '' ? 'N' : flags,
      multi: -1,
      cmd: lastCommand.toLowerCase().replace(' ', '|'),
      resp: this.#resp,
    });
  }
}
