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
import type net from 'node:net';
import { connectSocket, FramedClient, type ClientTarget } from './framed-client.js';

export type McTarget = ClientTarget;

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

/** A text/meta client: each frame is one response, as a latin1 string. */
export class McClient extends FramedClient<string> {
  private constructor(socket: net.Socket) {
    super(socket, parseMcResponse, (response) => JSON.stringify(response));
  }

  static async connect(target: McTarget): Promise<McClient> {
    return new McClient(await connectSocket(target));
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
