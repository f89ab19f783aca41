/**
 * An in-test RPC server with a Dubbo-style header, for the framed codec:
 *
 *   0      2       3        4                12              16
 *   | dabb | flags | status | request id (8) | body length (4) | body …
 *   flags: 0x80 request, 0x40 two-way, 0x20 event (heartbeat), low bits the serialization id
 *
 * It answers each request after a delay of its choice (`delayMs`), so replies come out of order;
 * answers heartbeat requests at once; and, every `heartbeatEveryMs`, sends each connection a
 * heartbeat request of its own, with ids from its own counter starting at 1 (so they collide with
 * poolside's), counting those answered. It records any request id that arrives while the same id
 * is still in flight on the same connection: poolside must never let clients' ids collide.
 */
import net from 'node:net';

export const FLAG_REQUEST = 0x80;
export const FLAG_TWOWAY = 0x40;
export const FLAG_EVENT = 0x20;
const SERIALIZATION = 0x02;
const HEADER = 16;

export interface DubboFrame {
  flags: number;
  status: number;
  id: bigint;
  body: Buffer;
}

export function encodeDubbo(frame: DubboFrame): Buffer {
  const out = Buffer.alloc(HEADER + frame.body.length);
  out.writeUInt16BE(0xdabb, 0);
  out[2] = frame.flags;
  out[3] = frame.status;
  out.writeBigUInt64BE(frame.id, 4);
  out.writeUInt32BE(frame.body.length, 12);
  frame.body.copy(out, HEADER);
  return out;
}

/** Splits a byte stream into Dubbo frames (a tiny test-side framer, independent of poolside's). */
export class DubboReader {
  #buf = Buffer.alloc(0);
  push(chunk: Buffer): DubboFrame[] {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const out: DubboFrame[] = [];
    while (this.#buf.length >= HEADER) {
      if (this.#buf.readUInt16BE(0) !== 0xdabb) throw new Error(`bad magic ${this.#buf.subarray(0, 2).toString('hex')}`);
      const total = HEADER + this.#buf.readUInt32BE(12);
      if (this.#buf.length < total) break;
      out.push({ flags: this.#buf[2], status: this.#buf[3], id: this.#buf.readBigUInt64BE(4), body: Buffer.from(this.#buf.subarray(HEADER, total)) });
      this.#buf = this.#buf.subarray(total);
    }
    return out;
  }
}

export const request = (id: bigint, body: string): Buffer =>
  encodeDubbo({ flags: FLAG_REQUEST | FLAG_TWOWAY | SERIALIZATION, status: 0, id, body: Buffer.from(body) });

export interface DubboServerOptions {
  /** How long to sit on a request before answering it (varied per request: replies out of order). */
  delayMs: (body: string) => number;
  /** Send each connection a heartbeat request this often (0: never). */
  heartbeatEveryMs: number;
  /**
   * Requests whose reply stops half way: its header and half its body are written, the rest never
   * (a server stuck mid-reply). The connection's byte stream can frame nothing after it.
   */
  torn?: (body: string) => boolean;
}

export class DubboServer {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Request ids that arrived while the same id was in flight on the same connection. */
  readonly collisions: bigint[] = [];
  /** Requests answered, heartbeat requests from poolside answered, our heartbeats answered by poolside. */
  requests = 0;
  heartbeatsReceived = 0;
  heartbeatsAnswered = 0;
  /** Replies written while a request that came earlier on the same connection was still unanswered. */
  answeredOutOfOrder = 0;
  /** Responses poolside's answer rule must not have sent us: anything but an answer to our heartbeat. */
  strayFrames = 0;

  private constructor(server: net.Server, options: DubboServerOptions) {
    this.#server = server;
    server.on('connection', (socket) => this.#serve(socket, options));
  }

  static async start(options: DubboServerOptions): Promise<DubboServer> {
    const server = net.createServer();
    const dubbo = new DubboServer(server, options);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return dubbo;
  }

  get address(): string {
    const info = this.#server.address();
    if (info === null || typeof info === 'string') throw new Error('not listening');
    return `127.0.0.1:${info.port}`;
  }

  get connections(): number {
    return this.#sockets.size;
  }

  /** Sends every connection a response to a request nobody made (an unknown id). */
  sendStray(): void {
    for (const socket of this.#sockets) socket.write(encodeDubbo({ flags: SERIALIZATION, status: 20, id: 0xfffffffn, body: Buffer.from('stray') }));
  }

  #serve(socket: net.Socket, options: DubboServerOptions): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.#sockets.delete(socket));
    const inflight = new Set<bigint>();
    const ours = new Set<bigint>();
    let nextBeat = 1n;
    const reader = new DubboReader();
    if (options.heartbeatEveryMs > 0) {
      const timer = setInterval(() => {
        const id = nextBeat++;
        ours.add(id);
        socket.write(encodeDubbo({ flags: FLAG_REQUEST | FLAG_TWOWAY | FLAG_EVENT | SERIALIZATION, status: 0, id, body: Buffer.from('N') }));
      }, options.heartbeatEveryMs);
      this.#timers.add(timer);
      socket.on('close', () => {
        clearInterval(timer);
        this.#timers.delete(timer);
      });
    }
    socket.on('data', (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        if ((frame.flags & FLAG_REQUEST) === 0) {
          // A response: only answers to our own heartbeats may come this way.
          if ((frame.flags & FLAG_EVENT) !== 0 && ours.delete(frame.id) && frame.status === 20) this.heartbeatsAnswered++;
          else this.strayFrames++;
          continue;
        }
        if ((frame.flags & FLAG_EVENT) !== 0) {
          this.heartbeatsReceived++;
          socket.write(encodeDubbo({ flags: FLAG_EVENT | SERIALIZATION, status: 20, id: frame.id, body: Buffer.from('N') }));
          continue;
        }
        if (inflight.has(frame.id)) this.collisions.push(frame.id);
        inflight.add(frame.id);
        const body = frame.body.toString();
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          // A Set iterates in insertion order: its first id is the oldest request unanswered.
          if (inflight.values().next().value !== frame.id) this.answeredOutOfOrder++;
          inflight.delete(frame.id);
          this.requests++;
          const reply = encodeDubbo({ flags: SERIALIZATION, status: 20, id: frame.id, body: Buffer.from(`echo:${body}`) });
          const torn = options.torn?.(body) === true;
          if (!socket.destroyed) socket.write(torn ? reply.subarray(0, HEADER + Math.floor((reply.length - HEADER) / 2)) : reply);
        }, options.delayMs(body));
        this.#timers.add(timer);
      }
    });
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
