/**
 * Steady, checked traffic for cluster fault tests: many clients, each owning its own keys (spread
 * over every slot, plus some on chosen "hot" slots a test is about to move), each sending one
 * command at a time — SET, GET, INCR, MGET of same-slot keys and, optionally, MGET across slots —
 * and checking every reply against a model of what the value must be.
 *
 * The model keeps, per key, the set of values the key may hold now. A reply that is right narrows
 * it to what was seen; a write that failed (an error reply, no reply in time, a closed connection)
 * may or may not have run, so its outcome joins the set: exactly that ambiguity and nothing more. A
 * reply outside the set is a wrong answer. Errors are counted with their time, so a test can check
 * that they all fall inside its fault window.
 *
 *   const traffic = ClusterTraffic.start({ clients: 24, connect: () => respConnector(port), hotSlots: [slot] });
 *   …fault…
 *   const report = await traffic.stop();
 *   expect(report.wrong).toEqual([]);
 */
import { RawClient, RespError, encode } from './resp-client.js';
import type { RespValue } from './resp-client.js';
import { SLOTS, tagForSlot } from './cluster.js';

/** One client's line to the system under test. */
export interface TrafficLine {
  /**
   * Sends a batch of commands in one write (one command: no pipelining) and resolves with their
   * replies in order; a NoReply for each one that got none within `timeoutMs` or before the
   * connection closed (the line is then broken: the client connects again).
   */
  send(batch: string[][], timeoutMs: number): Promise<(RespValue | NoReply)[]>;
  close(): void;
}

export class NoReply {
  constructor(readonly reason: string) {}
}

export type Connector = () => Promise<TrafficLine>;

/** A RawClient to a plain RESP endpoint (poolside's listener). */
export function respConnector(port: number): Connector {
  return async () => {
    const client = await RawClient.connect(port);
    let broken = false;
    return {
      async send(batch, timeoutMs) {
        if (broken || client.isClosed) return batch.map(() => new NoReply('connection closed'));
        client.write(Buffer.concat(batch.map((args) => encode(...args))));
        const replies: (RespValue | NoReply)[] = [];
        try {
          for (let i = 0; i < batch.length; i++) replies.push(await client.reply(timeoutMs));
        } catch (err) {
          // A late reply would be read as the next command's: this line is done.
          broken = true;
          client.destroy();
          while (replies.length < batch.length) replies.push(new NoReply((err as Error).message));
        }
        return replies;
      },
      close: () => client.destroy(),
    };
  };
}

export type OpKind = 'set' | 'get' | 'incr' | 'mget' | 'mget-cross';

export interface TrafficOptions {
  clients: number;
  connect: Connector;
  /** Plain keys per client, each on a slot of its own, spread over all slots (default 8). */
  keysPerClient?: number;
  /** Slots where every client also keeps a string, a counter and a same-slot MGET pair. */
  hotSlots?: number[];
  /** MGET of keys on different slots (poolside splits it per node); default false. */
  crossSlotMget?: boolean;
  /** How long a client waits for a reply before it gives up on it and reconnects (default 10s). */
  replyTimeoutMs?: number;
  /**
   * Every other client (the odd ones) sends this many commands in one write and then reads their
   * replies (default 1: none pipelines). The model checks them in order, as Redis runs them: a
   * proxy that lets a later command of a client overtake an earlier one (a redirected SET, then a
   * GET of the same key) gives a wrong answer.
   */
  pipelineDepth?: number;
  /**
   * Put in every key name (default ''): traffic that starts on a cluster an earlier traffic wrote
   * to needs its own, since the model starts from every key missing.
   */
  namespace?: string;
}

/** Something that is not a wrong answer but not a right one either. */
export interface TrafficError {
  /** performance.now() when the request was sent, and when its error (or its silence) was seen. */
  sentAt: number;
  at: number;
  client: number;
  op: OpKind;
  args: string[];
  error: string;
}

export interface WrongAnswer {
  sentAt: number;
  at: number;
  client: number;
  op: OpKind;
  args: string[];
  got: string;
  expected: string;
}

export interface TrafficReport {
  requests: number;
  ok: number;
  byOp: Record<OpKind, number>;
  errors: TrafficError[];
  wrong: WrongAnswer[];
  /** Writes whose outcome is not known (failed, maybe ran): how many keys ended ambiguous. */
  ambiguousWrites: number;
}

type Possible = Set<string | null>;

interface PlannedOp {
  op: OpKind;
  args: string[];
  /** Judges a reply that is not an error: true if the model allows it (and narrows the model to it). */
  check: (reply: RespValue) => boolean;
  /** A write that failed may have run: its outcome joins what the key may hold. */
  failed?: () => void;
}

interface KeyPlan {
  strings: string[];
  counters: string[];
  /** Groups of same-slot string keys for MGET. */
  groups: string[][];
}

/** Every key of one client, spread over slots: key i of client c is on slot (c * 7919 + i * 2053) mod 16384. */
function planKeys(ns: string, client: number, perClient: number, hotSlots: number[]): KeyPlan {
  const strings: string[] = [];
  const counters: string[] = [];
  const groups: string[][] = [];
  for (let i = 0; i < perClient; i++) {
    const tag = tagForSlot((client * 7919 + i * 2053) % SLOTS);
    if (i % 2 === 0) {
      strings.push(`{${tag}}${ns}c${client}:s${i}`);
      counters.push(`{${tag}}${ns}c${client}:n${i}`);
    } else {
      const pair = [`{${tag}}${ns}c${client}:a${i}`, `{${tag}}${ns}c${client}:b${i}`];
      strings.push(...pair);
      groups.push(pair);
    }
  }
  for (const slot of hotSlots) {
    const tag = tagForSlot(slot);
    const pair = [`{${tag}}${ns}c${client}:hot-a`, `{${tag}}${ns}c${client}:hot-b`];
    strings.push(...pair);
    groups.push(pair);
    counters.push(`{${tag}}${ns}c${client}:hot-n`);
  }
  return { strings, counters, groups };
}

class Client {
  readonly #index: number;
  readonly #owner: ClusterTraffic;
  readonly #plan: KeyPlan;
  readonly #model = new Map<string, Possible>();
  readonly #crossSlot: boolean;
  readonly #timeoutMs: number;
  readonly #connect: Connector;
  readonly #depth: number;
  #line: TrafficLine | null = null;
  #seq = 0;

  constructor(index: number, owner: ClusterTraffic, plan: KeyPlan, options: Required<Omit<TrafficOptions, 'hotSlots' | 'clients' | 'namespace' | 'pipelineDepth'>> & { depth: number }) {
    this.#index = index;
    this.#owner = owner;
    this.#plan = plan;
    this.#crossSlot = options.crossSlotMget;
    this.#timeoutMs = options.replyTimeoutMs;
    this.#connect = options.connect;
    this.#depth = options.depth;
    for (const key of [...plan.strings, ...plan.counters]) this.#model.set(key, new Set([null]));
  }

  get ambiguous(): number {
    return [...this.#model.values()].filter((p) => p.size > 1).length;
  }

  async run(running: () => boolean): Promise<void> {
    while (running()) {
      if (this.#line === null) {
        try {
          this.#line = await this.#connect();
        } catch (err) {
          const now = performance.now();
          this.#owner.error({ sentAt: now, at: now, client: this.#index, op: 'get', args: ['(connect)'], error: (err as Error).message });
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
      }
      await this.#step(this.#line);
    }
    this.#line?.close();
  }

  #pick<T>(items: T[]): T {
    return items[Math.floor(Math.random() * items.length)];
  }

  /** One command of the mix: what it is, and what its reply does to the model. */
  #next(): PlannedOp {
    const roll = Math.random();
    if (roll < 0.3) {
      const key = this.#pick(this.#plan.strings);
      const value = `c${this.#index}-${++this.#seq}`;
      return {
        op: 'set',
        args: ['SET', key, value],
        check: (reply) => {
          if (reply !== 'OK') return false;
          this.#model.set(key, new Set([value]));
          return true;
        },
        failed: () => this.#possible(key).add(value),
      };
    }
    if (roll < 0.55) {
      const key = this.#pick(this.#plan.strings);
      return { op: 'get', args: ['GET', key], check: (reply) => this.#observe(key, reply) };
    }
    if (roll < 0.8) {
      const key = this.#pick(this.#plan.counters);
      return {
        op: 'incr',
        args: ['INCR', key],
        check: (reply) => {
          if (typeof reply !== 'number') return false;
          const before = this.#possible(key);
          if (![...before].some((v) => Number(v ?? 0) + 1 === reply)) return false;
          this.#model.set(key, new Set([String(reply)]));
          return true;
        },
        failed: () => {
          const before = this.#possible(key);
          for (const v of [...before]) before.add(String(Number(v ?? 0) + 1));
        },
      };
    }
    if (roll < 0.92 || !this.#crossSlot) {
      const keys = this.#pick(this.#plan.groups);
      return { op: 'mget', args: ['MGET', ...keys], check: (reply) => this.#observeMany(keys, reply) };
    }
    const keys = [this.#pick(this.#plan.strings), this.#pick(this.#plan.strings), this.#pick(this.#plan.strings)];
    return { op: 'mget-cross', args: ['MGET', ...keys], check: (reply) => this.#observeMany(keys, reply) };
  }

  async #step(line: TrafficLine): Promise<void> {
    const ops = Array.from({ length: this.#depth }, () => this.#next());
    const sentAt = performance.now();
    const replies = await line.send(ops.map((o) => o.args), this.#timeoutMs);
    const at = performance.now();
    // In order: each reply is judged against the model as the ones before it left it.
    ops.forEach((o, i) => this.#judge(o, replies[i], sentAt, at));
  }

  #possible(key: string): Possible {
    const found = this.#model.get(key);
    if (found === undefined) throw new Error(`key ${key} is not in client ${this.#index}'s model`);
    return found;
  }

  #observe(key: string, reply: RespValue): boolean {
    if (typeof reply !== 'string' && reply !== null) return false;
    if (!this.#possible(key).has(reply)) return false;
    this.#model.set(key, new Set([reply]));
    return true;
  }

  #observeMany(keys: string[], reply: RespValue): boolean {
    if (!Array.isArray(reply) || reply.length !== keys.length) return false;
    // All checked before any is narrowed: a wrong array leaves the model as it was.
    if (!keys.every((k, i) => (typeof reply[i] === 'string' || reply[i] === null) && this.#possible(k).has(reply[i] as string | null))) return false;
    keys.forEach((k, i) => this.#model.set(k, new Set([reply[i] as string | null])));
    return true;
  }

  /**
   * A reply `check` accepts is right; an error reply or no reply is an error (and `failed` widens
   * the model: the write may have run); anything else is a wrong answer.
   */
  #judge(o: PlannedOp, reply: RespValue | NoReply | undefined, sentAt: number, at: number): void {
    const { op, args } = o;
    if (reply === undefined || reply instanceof NoReply || reply instanceof RespError) {
      o.failed?.();
      if (!(reply instanceof RespError)) this.#line = null;
      const error = reply instanceof RespError ? reply.message : `no reply: ${reply?.reason ?? 'missing'}`;
      this.#owner.error({ sentAt, at, client: this.#index, op, args, error });
      return;
    }
    const expected = args.slice(1).map((k) => (op === 'set' ? '' : `${k}∈{${[...(this.#model.get(k) ?? [])].map((v) => JSON.stringify(v)).join(',')}}`)).join(' ');
    if (o.check(reply)) this.#owner.ok(op);
    else this.#owner.wrongAnswer({ sentAt, at, client: this.#index, op, args, got: JSON.stringify(reply), expected });
  }
}

export class ClusterTraffic {
  readonly #clients: Client[] = [];
  #running = true;
  #loops: Promise<void>[] = [];
  #requests = 0;
  #ok = 0;
  readonly #byOp: Record<OpKind, number> = { set: 0, get: 0, incr: 0, mget: 0, 'mget-cross': 0 };
  readonly #errors: TrafficError[] = [];
  readonly #wrong: WrongAnswer[] = [];

  private constructor() {}

  static start(options: TrafficOptions): ClusterTraffic {
    const traffic = new ClusterTraffic();
    const rest = {
      connect: options.connect,
      keysPerClient: options.keysPerClient ?? 8,
      crossSlotMget: options.crossSlotMget ?? false,
      replyTimeoutMs: options.replyTimeoutMs ?? 10_000,
    };
    for (let i = 0; i < options.clients; i++) {
      const depth = i % 2 === 1 ? (options.pipelineDepth ?? 1) : 1;
      traffic.#clients.push(new Client(i, traffic, planKeys(options.namespace ?? '', i, rest.keysPerClient, options.hotSlots ?? []), { ...rest, depth }));
    }
    traffic.#loops = traffic.#clients.map((c) => c.run(() => traffic.#running));
    return traffic;
  }

  /** Requests answered so far (right, wrong or error). */
  get requests(): number {
    return this.#requests;
  }

  get errorCount(): number {
    return this.#errors.length;
  }

  /** Errors so far from the `from`th on (errorCount before an event, to see what it caused). */
  errorsSince(from: number): TrafficError[] {
    return this.#errors.slice(from);
  }

  get wrongCount(): number {
    return this.#wrong.length;
  }

  /** Resolves once `n` more requests have been answered right (traffic is flowing). */
  async flowing(n = 200, timeoutMs = 10_000): Promise<void> {
    const target = this.#ok + n;
    const deadline = performance.now() + timeoutMs;
    while (this.#ok < target) {
      if (performance.now() > deadline) throw new Error(`traffic is not flowing: ${this.#ok - (target - n)} of ${n} right answers in ${timeoutMs}ms; last errors: ${this.#errors.slice(-3).map((e) => e.error).join(' | ')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** @internal */
  ok(op: OpKind): void {
    this.#requests++;
    this.#ok++;
    this.#byOp[op]++;
  }

  /** @internal */
  error(e: TrafficError): void {
    this.#requests++;
    this.#errors.push(e);
  }

  /** @internal */
  wrongAnswer(w: WrongAnswer): void {
    this.#requests++;
    this.#wrong.push(w);
  }

  /** Stops every client after its current request and reports. */
  async stop(): Promise<TrafficReport> {
    this.#running = false;
    await Promise.all(this.#loops);
    return {
      requests: this.#requests,
      ok: this.#ok,
      byOp: { ...this.#byOp },
      errors: [...this.#errors],
      wrong: [...this.#wrong],
      ambiguousWrites: this.#clients.reduce((n, c) => n + c.ambiguous, 0),
    };
  }
}

