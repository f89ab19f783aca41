/**
 * Writes a turn's worth of buffers to a socket with as few write() calls as possible. Each
 * write() on a Node stream costs far more than copying a few hundred bytes, so:
 * - adjacent views of one underlying buffer (pipelined requests framed from one client read, or
 *   responses from one server read) are merged back into one view, with no copy;
 * - what remains is concatenated into one buffer when small, or written corked (one writev)
 *   when large, where a copy would cost more than the calls.
 */
import type { Writable } from 'node:stream';

const CONCAT_LIMIT = 64 * 1024;

export function writeBatch(stream: Writable, parts: readonly Buffer[]): void {
  if (parts.length === 1) {
    stream.write(parts[0]);
    return;
  }
  const merged: Buffer[] = [];
  let run = parts[0];
  // `.buffer` is a call into V8's C++ (not an inlined load): read once per run, and for a part
  // only when its offset already says it may continue the run.
  let runBuffer = run.buffer;
  let runEnd = run.byteOffset + run.length;
  let runLength = run.length;
  let total = runLength;
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i];
    const length = part.length;
    total += length;
    const offset = part.byteOffset;
    if (offset === runEnd && part.buffer === runBuffer) {
      runLength += length;
      runEnd += length;
      continue;
    }
    merged.push(runLength === run.length ? run : Buffer.from(runBuffer, run.byteOffset, runLength));
    run = part;
    runBuffer = part.buffer;
    runEnd = offset + length;
    runLength = length;
  }
  merged.push(runLength === run.length ? run : Buffer.from(runBuffer, run.byteOffset, runLength));
  if (merged.length === 1) {
    stream.write(merged[0]);
  } else if (total <= CONCAT_LIMIT) {
    stream.write(Buffer.concat(merged, total));
  } else {
    stream.cork();
    for (const buffer of merged) stream.write(buffer);
    stream.uncork();
  }
}
