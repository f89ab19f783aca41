/**
 * A raw memcached binary-protocol client for tests: writes exactly the bytes a test gives it and
 * frames response packets (24-byte header + body) with its own reader. Quiet requests may get no
 * packet at all, so the way to read "everything a batch got" is to end the batch with a NOOP and
 * read up to its response (`untilNoop`), as libmemcached does.
 */
import type net from 'node:net';
import { HEADER_BYTES, Op, RESPONSE_MAGIC, binaryRequest, parseResponses, type ParsedResponse } from '../../src/codec/memcached/binary-protocol.js';
import { connectSocket, FramedClient } from './framed-client.js';
import type { McTarget } from './mc-client.js';

/** One response packet at `pos`, copied out of the reader's buffer; throws at anything but a response's magic. */
function framePacket(buf: Buffer, pos: number): { value: ParsedResponse; end: number } | null {
  if (buf.length - pos < 1) return null;
  if (buf[pos] !== RESPONSE_MAGIC) {
    throw new Error(`not a binary response: ${JSON.stringify(buf.toString('latin1', pos, Math.min(buf.length, pos + 120)))}`);
  }
  if (buf.length - pos < HEADER_BYTES) return null;
  const end = pos + HEADER_BYTES + buf.readUInt32BE(pos + 8);
  if (buf.length < end) return null;
  return { value: parseResponses(Buffer.from(buf.subarray(pos, end))).packets[0], end };
}

export class McBinaryClient extends FramedClient<ParsedResponse> {
  private constructor(socket: net.Socket) {
    super(socket, framePacket, (p) => `op=0x${p.opcode.toString(16)} status=0x${p.status.toString(16)} opaque=${p.opaque}`);
  }

  static async connect(target: McTarget): Promise<McBinaryClient> {
    return new McBinaryClient(await connectSocket(target));
  }

  /** Every packet up to and including the NOOP response with this opaque, as one buffer. */
  async untilNoop(opaque: number, timeoutMs = 5000): Promise<Buffer> {
    const packets = await this.takeThrough((p) => p.opcode === Op.NOOP && p.opaque === opaque, `the NOOP response with opaque ${opaque}`, timeoutMs);
    return Buffer.concat(packets.map((p) => p.bytes));
  }

  /** Sends `requests` then a NOOP, and returns every response packet's bytes up to the NOOP's. */
  async batch(requests: Buffer, noopOpaque = 0xfffffff0, timeoutMs = 5000): Promise<Buffer> {
    this.write(Buffer.concat([requests, binaryRequest({ opcode: Op.NOOP, opaque: noopOpaque })]));
    return this.untilNoop(noopOpaque, timeoutMs);
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
