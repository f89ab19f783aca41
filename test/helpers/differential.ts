/**
 * Differential testing: the same case of concurrent Redis clients runs once straight against one
 * redis-server (A) and once through poolside against another (B); every client's reply stream must
 * be the same, byte for byte, except for the differences documented in docs/differences.md (and
 * applied by `normalise` below, which is the only place that knows them).
 *
 *   fast-check ─▶ Case (steps of intents) ─▶ compile (a model of each client's state) ─▶ Plan
 *   Plan ─▶ run on A ─▶ streams A ─┐
 *   Plan ─▶ run on B ─▶ streams B ─┴─▶ normalise ─▶ compare
 *
 * Determinism: concurrent phases (`par`) only touch the client's own keys (a namespace per client
 * and incarnation), so their replies do not depend on how the clients interleave. Cross-client
 * interactions (a push waking a BLPOP, a PUBLISH to a subscriber, a CLIENT KILL of poolside's
 * connections) are synchronised steps: every client finished the step before, and the step waits
 * on the server (blocked_clients) before the push.
 *
 * Cases, features and plans (what is generated and how it compiles) are in differential-cases.ts.
 */
import net from 'node:net';
import type { Action, Plan } from './differential-cases.js';
import { encode } from './resp-client.js';
import { rawCommand, waitFor } from './servers.js';

// ── Running a plan ────────────────────────────────────────────────────────────────────────────

/** Where a plan runs: the address clients connect to, and the redis-server behind it. */
export interface Target {
  /** Port clients connect to (redis-server itself for A, poolside for B). */
  port: number;
  /** The redis-server's own port, for the side channel (blocked_clients, CLIENT KILL). */
  serverPort: number;
  /** Through poolside: CLIENT KILL steps run, and doomed clients must be closed by it. */
  proxied: boolean;
  /** Server connections poolside has seen close so far (a kill step waits for its kills to be seen). */
  closedConnections?: () => number;
  /** Called after a CLIENT KILL was seen: resolves once poolside has replaced its connections. */
  afterKill?: () => Promise<void>;
}

/** Per client, everything it read in order: frames as latin1 text, and markers in angle brackets. */
export type Streams = string[][];

/** How long a reply may take beyond the time the server itself needs: generous, a stuck proxy is the finding. */
const REPLY_SLACK_MS = 2000;

/** Byte length of the RESP2/RESP3 frame at `pos`, or -1 if the buffer holds only part of it. */
export function frameEnd(buf: Buffer, pos: number): number {
  if (pos >= buf.length) return -1;
  const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
  if (lineEnd < 0) return -1;
  const type = String.fromCharCode(buf[pos]);
  const n = Number(buf.toString('latin1', pos + 1, lineEnd));
  const next = lineEnd + 2;
  switch (type) {
    case '+': case '-': case ':': case '_': case ',': case '#': case '(':
      return next;
    case '$': case '=': case '!':
      if (n < 0) return next;
      return buf.length < next + n + 2 ? -1 : next + n + 2;
    case '*': case '~': case '>': case '%': case '|': {
      if (n < 0) return next;
      let at = next;
      const items = type === '%' || type === '|' ? 2 * n : n;
      for (let k = 0; k < items; k++) {
        at = frameEnd(buf, at);
        if (at < 0) return -1;
      }
      // An attribute describes the value that follows it: one frame together.
      return type === '|' ? frameEnd(buf, at) : at;
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(buf.toString('latin1', pos, Math.min(buf.length, pos + 40)))}`);
  }
}

/** A raw socket that keeps every frame it reads, for byte-for-byte comparison. */
class StreamClient {
  readonly frames: string[] = [];
  closed = false;
  #buf: Buffer = Buffer.alloc(0);
  #wake: (() => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
      let pos = 0;
      for (let end = frameEnd(this.#buf, pos); end > 0; end = frameEnd(this.#buf, pos)) {
        this.frames.push(this.#buf.toString('latin1', pos, end));
        pos = end;
      }
      this.#buf = this.#buf.subarray(pos);
      this.#wake?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
  }

  static connect(port: number): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new StreamClient(socket));
      });
    });
  }

  /** Waits until `count` frames have been read in total: 'ok', or why not. */
  async until(count: number, timeoutMs: number): Promise<'ok' | 'closed' | 'timeout'> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.frames.length >= count) return 'ok';
      if (this.closed) return 'closed';
      const left = deadline - performance.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }
}

/** One client slot of a running plan: its current socket and the stream recorded so far. */
class Runner {
  stream: string[] = [];
  #client: StreamClient;
  #read = 0;
  /** Nothing more is sent: the socket closed or a reply never came. */
  dead = false;

  constructor(
    client: StreamClient,
    readonly port: number,
  ) {
    this.#client = client;
  }

  /** Writes without waiting (the first half of a wake). */
  send(action: Action): void {
    if (!this.dead && action.write !== null) this.#client.socket.write(action.write);
  }

  /** Reads the frames `action` produces, recording them or why they did not come. */
  async receive(action: Action): Promise<void> {
    if (this.dead) return;
    const want = this.#read + action.frames;
    const outcome = await this.#client.until(want, (action.blockMs ?? 0) + REPLY_SLACK_MS);
    const got = this.#client.frames.slice(this.#read, Math.min(want, this.#client.frames.length));
    this.#read += got.length;
    this.stream.push(...got.map((f) => (action.tag === undefined ? f : `${action.tag}:${f}`)));
    if (outcome !== 'ok') {
      this.stream.push(`<${outcome}>`);
      this.dead = true;
      this.#client.socket.destroy();
    }
  }

  async run(action: Action): Promise<void> {
    if (this.dead) return;
    if (action.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, action.pauseMs));
    if (action.vanish === true) {
      if (action.write !== null) this.#client.socket.write(action.write);
      this.#client.socket.destroy();
      this.stream.push('<vanished>');
      this.#client = await StreamClient.connect(this.port);
      this.#read = 0;
      return;
    }
    this.send(action);
    await this.receive(action);
  }

  /** Whether poolside closes this client within `timeoutMs` (after its pinned state was lost). */
  async closes(timeoutMs: number): Promise<boolean> {
    return (await this.#client.until(Number.MAX_SAFE_INTEGER, timeoutMs)) === 'closed';
  }

  /** Frames that arrived without being asked for (recorded at the end). */
  unread(): string[] {
    return this.#client.frames.slice(this.#read);
  }

  close(): void {
    this.#client.socket.destroy();
  }
}

function blockedClients(serverPort: number): Promise<number> {
  return rawCommand(serverPort, ['INFO', 'clients']).then((info) => Number(/blocked_clients:(\d+)/.exec(info)?.[1] ?? '0'));
}

/**
 * CLIENT KILL of poolside's connections from a side channel: all of them, or (`one`) the oldest by
 * id. Returns once poolside has seen every kill, so the next step does not race the FIN.
 */
async function killProxyConnections(target: Target, one: boolean): Promise<void> {
  const before = target.closedConnections?.() ?? 0;
  let killed: number;
  if (one) {
    const list = await rawCommand(target.serverPort, ['CLIENT', 'LIST']);
    const ids = list
      .split('\n')
      .filter((line) => line.includes(' fd=') && !line.includes('cmd=client|list'))
      .map((line) => Number(/^id=(\d+)/.exec(line)?.[1]))
      .sort((x, y) => x - y);
    if (ids.length === 0) return;
    killed = (await rawCommand(target.serverPort, ['CLIENT', 'KILL', 'ID', String(ids[0])])).startsWith('+OK') ? 1 : 0;
  } else {
    // Subscribed connections are of type pubsub: a kill of "every connection" takes both kinds.
    killed = 0;
    for (const type of ['normal', 'pubsub']) {
      killed += Number(/^:(\d+)/.exec(await rawCommand(target.serverPort, ['CLIENT', 'KILL', 'TYPE', type, 'SKIPME', 'yes']))?.[1] ?? '0');
    }
  }
  if (target.closedConnections !== undefined) {
    const closed = target.closedConnections;
    await waitFor(() => closed() >= before + killed, `poolside to see ${killed} connections killed`, REPLY_SLACK_MS);
  }
  await target.afterKill?.();
}

/** Runs `plan` against `target` and returns every client's stream. Every socket is closed on return. */
export async function runPlan(plan: Plan, target: Target): Promise<Streams> {
  const runners: Runner[] = [];
  try {
    for (let i = 0; i < plan.clients; i++) runners.push(new Runner(await StreamClient.connect(target.port), target.port));
    for (const step of plan.steps) {
      switch (step.t) {
        case 'par':
          await Promise.all(step.actions.map(async (actions, i) => {
            for (const action of actions) await runners[i].run(action);
          }));
          break;
        case 'wake': {
          const blocker = runners[step.blocker];
          const before = await blockedClients(target.serverPort);
          blocker.send(step.block);
          // The push must find the pop waiting on the server, or this would only test a plain pop.
          await waitFor(async () => blocker.dead || (await blockedClients(target.serverPort)) > before, 'BLPOP blocked on the server', REPLY_SLACK_MS).catch(() => {});
          await runners[step.pusher].run(step.push);
          await blocker.receive(step.block);
          break;
        }
        case 'pubsub':
          await runners[step.sub].run(step.subscribe);
          await runners[step.pub].run(step.publish);
          await runners[step.sub].receive({ write: null, frames: 1 });
          await runners[step.sub].run(step.unsubscribe);
          break;
        case 'kill':
          for (const r of runners) r.stream.push('<kill>');
          if (target.proxied) await killProxyConnections(target, step.one);
          break;
        case 'idle':
          await new Promise((resolve) => setTimeout(resolve, step.ms));
          break;
      }
    }
    await Promise.all(runners.map(async (r, i) => {
      if (plan.doomed.includes(i)) {
        if (!target.proxied) return;
        if (await r.closes(REPLY_SLACK_MS)) {
          r.stream.push('<closed>');
          return;
        }
        // Still open: what it answers now shows what became of it (state silently lost, or stuck).
        r.stream.push('<open>');
        await r.run({ write: encode('PING', 'end'), frames: 1 });
        return;
      }
      await r.run({ write: encode('PING', 'end'), frames: 1 });
      r.stream.push(...r.unread().map((f) => `<unasked>${f}`));
    }));
    return runners.map((r) => r.stream);
  } finally {
    for (const r of runners) r.close();
  }
}

// ── Documented differences (docs/differences.md) ─────────────────────────────────────────────

/**
 * Applies the differences docs/differences.md documents, to the streams of either side:
 *  1. `CLIENT ID` replies are compared by their equality pattern across the case (the n-th distinct
 *     id seen, scanning clients in order), not by value.
 *  2. `HELLO`'s `id` field is the id of whichever server connection answered; not compared.
 *  3. After a CLIENT KILL of poolside's connections, a client whose session had state a new
 *     connection cannot replay (WATCH, any SUBSCRIBE/UNSUBSCRIBE, CLIENT SETNAME, HELLO 3) is closed
 *     by poolside: on A, where no kill happens, such a client's stream is expected to end `<closed>`.
 */
export function normalise(streams: Streams, plan: Plan, proxied: boolean): Streams {
  const ids = new Map<string, string>();
  return streams.map((stream, i) => {
    let out = stream.map((entry) => {
      if (entry.startsWith('client-id:')) {
        const raw = entry.slice('client-id:'.length);
        if (!ids.has(raw)) ids.set(raw, `id#${ids.size}`);
        return `client-id:${ids.get(raw) as string}`;
      }
      if (entry.startsWith('hello:')) return entry.replace(/(\$2\r\nid\r\n):\d+\r\n/, '$1:<id>\r\n');
      return entry;
    });
    if (plan.doomed.includes(i) && !proxied) {
      // A doomed client sends nothing after the kill that doomed it: through poolside it must close.
      out = [...out, '<closed>'];
    }
    return out;
  });
}

export interface Mismatch {
  client: number;
  index: number;
  a: string[];
  b: string[];
}

/** The first place each client's streams differ (after `normalise`), with a little context. */
export function compareStreams(a: Streams, b: Streams): Mismatch[] {
  const found: Mismatch[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const sa = a[i] ?? [];
    const sb = b[i] ?? [];
    let k = 0;
    while (k < sa.length && k < sb.length && sa[k] === sb[k]) k++;
    if (k < sa.length || k < sb.length) found.push({ client: i, index: k, a: sa.slice(Math.max(0, k - 2), k + 3), b: sb.slice(Math.max(0, k - 2), k + 3) });
  }
  return found;
}
