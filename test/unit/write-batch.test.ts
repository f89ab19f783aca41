import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeBatch } from '../../src/util/write-batch.js';

/** A stream that records each write() call's bytes. */
function recorder(): { stream: Writable; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      writes.push(chunk);
      done();
    },
    writev(chunks, done) {
      for (const { chunk } of chunks) writes.push(chunk as Buffer);
      done();
    },
  });
  return { stream, writes };
}

describe('writeBatch', () => {
  it('merges adjacent views of one buffer into one write without copying', () => {
    const read = Buffer.alloc(30, 'x');
    const parts = [read.subarray(0, 10), read.subarray(10, 20), read.subarray(20, 30)];
    const { stream, writes } = recorder();
    writeBatch(stream, parts);
    expect(writes).toHaveLength(1);
    expect(writes[0].buffer).toBe(read.buffer);
    expect(writes[0].byteOffset).toBe(read.byteOffset);
    expect(writes[0].length).toBe(30);
  });

  it('keeps the order and bytes of views that are not adjacent, in one write when small', () => {
    const a = Buffer.alloc(8, 'a');
    const b = Buffer.alloc(8, 'b');
    const parts = [a.subarray(0, 4), b.subarray(0, 4), a.subarray(4, 8), b.subarray(4, 8)];
    const { stream, writes } = recorder();
    writeBatch(stream, parts);
    expect(writes).toHaveLength(1);
    expect(writes[0].toString()).toBe('aaaabbbbaaaabbbb');
  });

  it('never merges views of different buffers, even where their offsets would line up', () => {
    const a = new Uint8Array(new ArrayBuffer(16)).fill(0x61);
    const b = new Uint8Array(new ArrayBuffer(16)).fill(0x62);
    const parts = [Buffer.from(a.buffer, 0, 8), Buffer.from(b.buffer, 8, 8), Buffer.from(a.buffer, 8, 8)];
    const { stream, writes } = recorder();
    writeBatch(stream, parts);
    expect(Buffer.concat(writes).toString()).toBe('aaaaaaaabbbbbbbbaaaaaaaa');
  });

  it('merges a run after a part of another buffer', () => {
    const read = Buffer.alloc(20, 'r');
    const other = Buffer.from('xx');
    const { stream, writes } = recorder();
    writeBatch(stream, [other, read.subarray(0, 10), read.subarray(10, 20), other]);
    expect(Buffer.concat(writes).toString()).toBe(`xx${'r'.repeat(20)}xx`);
  });

  it('writes large batches piece by piece rather than copying them', () => {
    const a = Buffer.alloc(40_000, 'a');
    const b = Buffer.alloc(40_000, 'b');
    const { stream, writes } = recorder();
    writeBatch(stream, [a, b]);
    expect(writes.map((w) => w.buffer)).toEqual([a.buffer, b.buffer]);
  });

  it('writes a single buffer as it is', () => {
    const only = Buffer.from('+OK\r\n');
    const { stream, writes } = recorder();
    writeBatch(stream, [only]);
    expect(writes).toEqual([only]);
  });
});
