/**
 * A raw RESP client for integration tests: writes exactly the bytes a test gives it (garbage,
 * torn frames, inline commands, big pipelines) and parses replies with its own small RESP2
 * reader, independent of poolside's codec, so a test checks the proxy against Redis's grammar
 * rather than against itself.
 */
import net from 'node:net';

/** An error reply (`-ERR …`), kept as a value so pipelines can hold errors in order. */
export class RespError {
  constructor(readonly message: string) {}
  toString(): string {
    return `-${this.message}`;
  }
}

export type RespValue = string | number | null | RespError | RespValue[];

/** Encodes one command as a RESP multibulk. */
export function encode(...args: (string | Buffer | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Reads one RESP2 value from `buf` at `pos`. Returns the value and the offset after it, or null
 * when the buffer holds only part of it.
 */
export function parseReply(buf: Buffer, pos: number): { value: RespValue; end: number } | null {
  if (pos >= buf.length) return null;
  const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
  if (lineEnd < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at);
        if (item === null) return null;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`not a RESP2 reply: ${JSON.stringify(buf.toString('latin1', pos, Math.min(buf.length, pos + 40)))}`);
  }
}

export type Target = number | { path: string };

export class RawClient {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #pos = 0;
  #replies: RespValue[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  /** Bytes received in total (for tests that only count). */
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

  static connect(target: Target): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target, noDelay: true }) : net.connect({ path: target.path });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Replies parsed and not yet taken. */
  get pending(): number {
    return this.#replies.length;
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  send(...args: (string | Buffer | number)[]): void {
    this.socket.write(encode(...args));
  }

  /** The next `n` replies, in order; rejects if they do not all arrive within `timeoutMs`. */
  async take(n: number, timeoutMs = 5000): Promise<RespValue[]> {
    const deadline = performance.now() + timeoutMs;
    while (this.#replies.length < n) {
      if (this.#closed) throw new Error(`connection closed after ${this.#replies.length} of ${n} replies`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms with ${this.#replies.length} of ${n} replies`);
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

  async reply(timeoutMs = 5000): Promise<RespValue> {
    const [value] = await this.take(1, timeoutMs);
    return value;
  }

  /** Sends one command and returns its reply. */
  async call(...args: (string | Buffer | number)[]): Promise<RespValue> {
    this.send(...args);
    return this.reply();
  }

  /** Resolves true once the proxy closed the connection, false if it is still open after `timeoutMs`. */
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
      const parsed = parseReply(this.#buf, this.#pos);
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

/** The `-ERR poolside <REASON> …` error a reply carries, or null if it is not one. */
export function poolsideReason(value: RespValue): string | null {
  if (!(value instanceof RespError)) return null;
  const match = /^ERR poolside ([A-Z_]+) /.exec(value.message);
  return match === null ? null : match[1];
}
