/**
 * The socket half of the raw test clients (mc-client.ts for memcached text and meta,
 * mc-binary-client.ts for memcached binary): connects, frames what arrives with the client's own
 * reader, and lets a test take frames in order or wait for one, with a deadline and a clear
 * message. A reader that throws (bytes that can never frame) fails every wait after it.
 */
import net from 'node:net';

export type ClientTarget = number | { path: string };

/** One frame read from `buf` at `pos` and the offset after it, or null when only part of it is there. */
export type Framer<T> = (buf: Buffer, pos: number) => { value: T; end: number } | null;

/** Connects to 127.0.0.1:port (Nagle off) or a unix socket path. */
export function connectSocket(target: ClientTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target, noDelay: true }) : net.connect({ path: target.path });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

export class FramedClient<T> {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  /** Bytes received in total. */
  received = 0;
  readonly #frame: Framer<T>;
  readonly #describe: (frame: T) => string;
  #buf: Buffer = Buffer.alloc(0);
  #pos = 0;
  #frames: T[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #error: Error | null = null;

  protected constructor(socket: net.Socket, frame: Framer<T>, describe: (frame: T) => string) {
    this.socket = socket;
    this.#frame = frame;
    this.#describe = describe;
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#closed = true;
        this.#wake();
        resolve();
      });
    });
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Frames read and not yet taken. */
  get pending(): number {
    return this.#frames.length;
  }

  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** The next `n` frames, in order; rejects if they do not all arrive within `timeoutMs`. */
  async take(n: number, timeoutMs = 5000): Promise<T[]> {
    await this.#waitFor(() => this.#frames.length >= n, () => `${n} responses`, timeoutMs);
    return this.#frames.splice(0, n);
  }

  /** The frames up to and including the first that `last` picks. */
  async takeThrough(last: (frame: T) => boolean, what: string, timeoutMs = 5000): Promise<T[]> {
    await this.#waitFor(() => this.#frames.some(last), () => what, timeoutMs);
    return this.#frames.splice(0, this.#frames.findIndex(last) + 1);
  }

  /** Resolves true once the peer closed the connection, false if it is still open after `timeoutMs`. */
  async closesWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }

  async #waitFor(done: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      if (this.#error !== null) throw this.#error;
      const have = () => `have ${this.#frames.length}: ${this.#frames.map(this.#describe).join(', ')}`;
      if (this.#closed) throw new Error(`connection closed before ${what()}; ${have()}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what()}; ${have()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #onData(chunk: Buffer): void {
    this.received += chunk.length;
    this.#buf = this.#pos < this.#buf.length ? Buffer.concat([this.#buf.subarray(this.#pos), chunk]) : chunk;
    this.#pos = 0;
    try {
      for (;;) {
        const framed = this.#frame(this.#buf, this.#pos);
        if (framed === null) break;
        this.#frames.push(framed.value);
        this.#pos = framed.end;
      }
    } catch (err) {
      this.#error = err instanceof Error ? err : new Error(String(err));
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
