/**
 * An in-test TCP relay between poolside and a server, for network faults a real server cannot
 * produce on demand:
 *
 *   poolside ──▶ relay (127.0.0.1:port) ──▶ server
 *
 * - blackhole(): every connection, open or new, stops forwarding in both directions. Sockets stay
 *   open: no FIN, no RST, bytes are dropped, as when a NAT or firewall forgets a flow.
 *   restore(): new connections forward again; a flow that was blackholed stays dead.
 * - dropReplyAndClose(match): the next request chunk that matches is forwarded to the server, and
 *   the connection is closed the moment the server's reply starts, before any byte of it reaches
 *   poolside: "written, maybe executed, no response byte read".
 * - With no target at all, the relay is an address that accepts and never answers.
 *
 * Every accepted connection is recorded with when it was accepted and when poolside closed it.
 */
import net from 'node:net';

export interface RelayTarget {
  host: string;
  port: number;
}

/** One connection poolside opened to the relay. */
export interface RelayedConnection {
  /** performance.now() when the relay accepted it. */
  acceptedAt: number;
  /** performance.now() when it closed, or null while open. */
  closedAt: number | null;
  /** Bytes received from poolside, forwarded or not. */
  bytesIn: number;
}

type Mode = 'forward' | 'silent' | 'close-on-reply';

interface Pair {
  record: RelayedConnection;
  downstream: net.Socket;
  upstream: net.Socket | null;
  mode: Mode;
}

interface Trap {
  match: (bytes: Buffer) => boolean;
  fired: () => void;
}

export class Relay {
  readonly #server: net.Server;
  readonly #target: RelayTarget | null;
  readonly #pairs = new Set<Pair>();
  #blackholed = false;
  #trap: Trap | null = null;
  readonly connections: RelayedConnection[] = [];

  private constructor(server: net.Server, target: RelayTarget | null) {
    this.#server = server;
    this.#target = target;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** A relay on a free loopback port forwarding to `target`; `null` for an address that never answers. */
  static async start(target: RelayTarget | null): Promise<Relay> {
    const server = net.createServer();
    const relay = new Relay(server, target);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Connections open now. */
  get open(): number {
    return this.connections.filter((c) => c.closedAt === null).length;
  }

  blackhole(): void {
    this.#blackholed = true;
    for (const pair of this.#pairs) pair.mode = 'silent';
  }

  restore(): void {
    this.#blackholed = false;
  }

  /** Arms a one-shot trap; resolves once a request chunk matched and its connection was closed. */
  dropReplyAndClose(match: (bytes: Buffer) => boolean): Promise<void> {
    return new Promise((resolve) => {
      this.#trap = { match, fired: resolve };
    });
  }

  async close(): Promise<void> {
    this.#trap = null;
    for (const pair of this.#pairs) this.#destroy(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(downstream: net.Socket): void {
    const record: RelayedConnection = { acceptedAt: performance.now(), closedAt: null, bytesIn: 0 };
    this.connections.push(record);
    const target = this.#target;
    const pair: Pair = {
      record,
      downstream,
      upstream: target === null ? null : net.connect({ host: target.host, port: target.port, noDelay: true }),
      mode: this.#blackholed || target === null ? 'silent' : 'forward',
    };
    this.#pairs.add(pair);
    downstream.setNoDelay(true);
    downstream.on('error', () => {});
    downstream.on('close', () => {
      record.closedAt ??= performance.now();
      // A blackholed flow stays open towards the server too: nothing passes through it any more.
      if (pair.mode !== 'silent') this.#destroy(pair);
    });
    downstream.on('data', (chunk: Buffer) => {
      record.bytesIn += chunk.length;
      if (pair.mode !== 'forward' || pair.upstream === null) return;
      const trap = this.#trap;
      if (trap !== null && trap.match(chunk)) {
        this.#trap = null;
        pair.mode = 'close-on-reply';
        pair.upstream.write(chunk);
        pair.upstream.once('data', () => {
          this.#destroy(pair);
          trap.fired();
        });
        return;
      }
      pair.upstream.write(chunk);
    });
    const upstream = pair.upstream;
    if (upstream === null) return;
    upstream.on('error', () => {});
    upstream.on('close', () => {
      if (pair.mode === 'forward') this.#destroy(pair);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pair.mode === 'forward') downstream.write(chunk);
    });
  }

  #destroy(pair: Pair): void {
    pair.record.closedAt ??= performance.now();
    pair.downstream.destroy();
    pair.upstream?.destroy();
    this.#pairs.delete(pair);
  }
}
