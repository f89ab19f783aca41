/**
 * A raw memcached client for integration tests: writes exactly the bytes a test gives it (torn
 * requests, noreply, quiet meta commands, garbage) and frames responses with its own small reader
 * of memcached's text and meta grammar (doc/protocol.txt), independent of poolside's codec, so a
 * test checks the proxy against memcached rather than against itself.
 *
 * A response is one string (latin1, so every byte is kept): a single line (`STORED\r\n`,
 * `HD\r\n`, `VERSION 1.6.18\r\n`…), a `VA` line with its data block, or a multi-line answer
 * (`VALUE …` blocks, `STAT …`, `ITEM …` or `key=…` lines) up to and including its `END\r\n`.
 */
import net from 'node:net';

export type McTarget = number | { path: string };

const MULTI_LINE = /^(VALUE|STAT|ITEM|key=|PREFIX) ?/;
const ERROR_LINE = /^(ERROR|CLIENT_ERROR|SERVER_ERROR)/;

/**
 * Reads one response from `buf` at `pos`: the response text and the offset after it, or null when
 * the buffer holds only part of it.
 */
export function parseMcResponse(buf: Buffer, pos: number): { value: string; end: number } | null {
  let at = pos;
  let multi = false;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return null;
    const line = buf.toString('latin1', at, lineEnd);
    let next = lineEnd + 2;
    if (line.startsWith('VALUE ') || line.startsWith('VA ')) {
      const words = line.split(' ');
      const size = Number(line.startsWith('VA ') ? words[1] : words[3]);
      if (!Number.isInteger(size) || size < 0) throw new Error(`bad data block size in ${JSON.stringify(line)}`);
      if (buf.length < next + size + 2) return null;
      next += size + 2;
      if (line.startsWith('VA ')) return { value: buf.toString('latin1', pos, next), end: next };
      multi = true;
    } else if (MULTI_LINE.test(line)) {
      multi = true;
    } else if (!multi || line === 'END' || ERROR_LINE.test(line)) {
      return { value: buf.toString('latin1', pos, next), end: next };
    }
    at = next;
  }
}

export class McClient {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #pos = 0;
  #replies: string[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  /** Bytes received in total. */
  received = 0;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
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

  static connect(target: McTarget): Promise<McClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target, noDelay: true }) : net.connect({ path: target.path });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new McClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Responses framed and not yet taken. */
  get pending(): number {
    return this.#replies.length;
  }

  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** The next `n` responses, in order; rejects if they do not all arrive within `timeoutMs`. */
  async take(n: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = performance.now() + timeoutMs;
    while (this.#replies.length < n) {
      if (this.#closed) throw new Error(`connection closed after ${this.#replies.length} of ${n} responses: ${JSON.stringify(this.#replies)}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms with ${this.#replies.length} of ${n} responses: ${JSON.stringify(this.#replies)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#replies.splice(0, n);
  }

  async reply(timeoutMs = 5000): Promise<string> {
    const [value] = await this.take(1, timeoutMs);
    return value;
  }

  /** Sends raw text (one or more requests) and returns the next response. */
  async call(text: string | Buffer): Promise<string> {
    this.write(text);
    return this.reply();
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

  #onData(chunk: Buffer): void {
    this.received += chunk.length;
    this.#buf = this.#pos < this.#buf.length ? Buffer.concat([this.#buf.subarray(this.#pos), chunk]) : chunk;
    this.#pos = 0;
    for (;;) {
      const parsed = parseMcResponse(this.#buf, this.#pos);
      if (parsed === null) break;
      this.#replies.push(parsed.value);
      this.#pos = parsed.end;
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A client of `target`, destroyed by `cleanup`. */
export async function connectMc(cleanup: { add<T>(resource: T, close: (resource: T) => unknown): T }, target: McTarget): Promise<McClient> {
  return cleanup.add(await McClient.connect(target), (c) => c.destroy());
}

/** The `SERVER_ERROR poolside <REASON> …` reason a response carries, or null if it is not one. */
export function mcPoolsideReason(response: string): string | null {
  const match = /^SERVER_ERROR poolside ([A-Z_]+)/.exec(response);
  return match === null ? null : match[1];
}
