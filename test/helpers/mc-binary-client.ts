/**
 * A raw memcached binary-protocol client for tests: writes exactly the bytes a test gives it and
 * frames response packets (24-byte header + body) with its own reader. Quiet requests may get no
 * packet at all, so the way to read "everything a batch got" is to end the batch with a NOOP and
 * read up to its response (`untilNoop`), as libmemcached does.
 */
import net from 'node:net';
import { HEADER_BYTES, Op, RESPONSE_MAGIC, binaryRequest, parseResponses, type ParsedResponse } from '../../src/codec/memcached/binary-protocol.js';
import type { McTarget } from './mc-client.js';

export class McBinaryClient {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #packets: ParsedResponse[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #error: Error | null = null;
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

  static connect(target: McTarget): Promise<McBinaryClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target, noDelay: true }) : net.connect({ path: target.path });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new McBinaryClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next `n` packets, in order. */
  async take(n: number, timeoutMs = 5000): Promise<ParsedResponse[]> {
    await this.#waitUntil(() => this.#packets.length >= n, () => `${n} packets`, timeoutMs);
    return this.#packets.splice(0, n);
  }

  /** Every packet up to and including the NOOP response with this opaque, as one buffer. */
  async untilNoop(opaque: number, timeoutMs = 5000): Promise<Buffer> {
    const at = () => this.#packets.findIndex((p) => p.opcode === Op.NOOP && p.opaque === opaque);
    await this.#waitUntil(() => at() >= 0, () => `the NOOP response with opaque ${opaque}`, timeoutMs);
    const packets = this.#packets.splice(0, at() + 1);
    return Buffer.concat(packets.map((p) => p.bytes));
  }

  /** Sends `requests` then a NOOP, and returns every response packet's bytes up to the NOOP's. */
  async batch(requests: Buffer, noopOpaque = 0xfffffff0, timeoutMs = 5000): Promise<Buffer> {
    this.write(Buffer.concat([requests, binaryRequest({ opcode: Op.NOOP, opaque: noopOpaque })]));
    return this.untilNoop(noopOpaque, timeoutMs);
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

  async #waitUntil(done: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      if (this.#error !== null) throw this.#error;
      if (this.#closed) throw new Error(`connection closed before ${what()}; have ${this.#packets.length} packets: ${this.#describe()}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what()}; have ${this.#packets.length} packets: ${this.#describe()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #describe(): string {
    return this.#packets.map((p) => `op=0x${p.opcode.toString(16)} status=0x${p.status.toString(16)} opaque=${p.opaque}`).join(', ');
  }

  #onData(chunk: Buffer): void {
    this.#buf = this.#buf.length > 0 ? Buffer.concat([this.#buf, chunk]) : chunk;
    try {
      if (this.#buf.length > 0 && this.#buf[0] !== RESPONSE_MAGIC) {
        throw new Error(`not a binary response: ${JSON.stringify(this.#buf.toString('latin1', 0, Math.min(this.#buf.length, 120)))}`);
      }
      const { packets, rest } = parseResponses(this.#buf);
      // Keep each packet's own copy: the reader's buffer is reused.
      for (const p of packets) this.#packets.push(parseResponses(Buffer.from(p.bytes)).packets[0]);
      this.#buf = rest.length > 0 ? Buffer.from(rest) : Buffer.alloc(0);
    } catch (err) {
      this.#error = err as Error;
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A binary client of `target`, destroyed by `cleanup`. */
export async function connectMcBinary(cleanup: { add<T>(resource: T, close: (resource: T) => unknown): T }, target: McTarget): Promise<McBinaryClient> {
  return cleanup.add(await McBinaryClient.connect(target), (c) => c.destroy());
}

/**
 * Response bytes with every CAS replaced by its order of first appearance (1, 2, …), 0 kept: two
 * memcached servers hand out different CAS values for the same history, in the same pattern.
 */
export function normaliseCas(bytes: Buffer, seen: Map<bigint, bigint>): Buffer {
  const out = Buffer.from(bytes);
  let at = 0;
  while (out.length - at >= HEADER_BYTES) {
    const cas = out.readBigUInt64BE(at + 16);
    if (cas !== 0n) {
      let n = seen.get(cas);
      if (n === undefined) {
        n = BigInt(seen.size + 1);
        seen.set(cas, n);
      }
      out.writeBigUInt64BE(n, at + 16);
    }
    at += HEADER_BYTES + out.readUInt32BE(at + 8);
  }
  return out;
}

/**
 * Response packets as readable records for a diff, with the differences docs/memcached-binary.md
 * lists applied, and nothing else:
 * 1. a number memcached's binary DECREMENT shortened in place keeps its old length, padded with
 *    spaces (`10` → `9 `); its meta `ma` (what poolside sends) stores the short number (`9`), so a
 *    later GET through poolside reads `9` (and an APPEND then makes `9x`, not `9 x`): values
 *    compare with the spaces after a digit taken out, on both sides.
 */
export function responseRecords(bytes: Buffer): object[] {
  return parseResponses(bytes).packets.map((p) => ({
    opcode: p.opcode,
    status: p.status,
    opaque: p.opaque,
    cas: p.cas,
    extras: p.extras.toString('hex'),
    key: p.key.toString('latin1'),
    value: p.value.toString('latin1').replace(/(\d) +/g, '$1'),
  }));
}
