/**
 * A configured exchange on a raw connection (protocol: tcp): send `probe.send`, read until
 * `probe.expect` is decided, within a deadline. Used for heartbeats (a new connection's readiness,
 * idle connections, validation before lending) and for tcp.reset (proving a returned connection
 * clean). With no framing, the reply is "what arrives until the expectation is decided": exact
 * bytes and masks read exactly their length, a prefix reads its length and takes the rest of that
 * read as the reply's tail. A byte arriving after that, with nobody attached, closes the
 * connection (`unexpected_response`): it can never be handed to the next client.
 */
import type { Probe, ProbeExpect } from '../config/schema.js';
import type { Clock } from '../util/clock.js';
import type { Connection } from './connection.js';

export type ProbeResult =
  | { kind: 'ok' }
  /** Answered, but not with what was expected: `got` is what came (cut for messages). */
  | { kind: 'mismatch'; got: Buffer }
  | { kind: 'timeout' }
  /** The server sent its FIN or the connection closed before the reply was decided. */
  | { kind: 'closed' };

/** How many bytes decide `expect`. */
function expectLength(expect: ProbeExpect): number {
  return expect.kind === 'mask' ? expect.mask.length : expect.bytes.length;
}

/** Whether the first `got.length` bytes (fewer than or as many as expectLength) can still match. */
export function stillMatches(expect: ProbeExpect, got: Buffer): boolean {
  const n = Math.min(got.length, expectLength(expect));
  if (expect.kind === 'mask') {
    for (let i = 0; i < n; i++) if ((got[i] & expect.mask[i]) !== (expect.value[i] & expect.mask[i])) return false;
    return true;
  }
  return got.compare(expect.bytes, 0, n, 0, n) === 0;
}

/**
 * Whether a whole reply matches: at least expectLength bytes, the first of them matching, and for
 * `exact` nothing more.
 */
export function replyMatches(expect: ProbeExpect, reply: Buffer): boolean {
  const n = expectLength(expect);
  if (reply.length < n || !stillMatches(expect, reply)) return false;
  return expect.kind !== 'exact' || reply.length === n;
}

/** Runs one exchange on an idle, ready raw connection; the connection is left idle (nothing attached) whatever the outcome. */
export function runProbe(conn: Connection, probe: Probe, timeoutMs: number, clock: Clock): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const need = expectLength(probe.expect);
    let got: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (result: ProbeResult): void => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      if (conn.ready) conn.detachStream();
      resolve(result);
    };
    const timer = clock.setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    if (!conn.ready) {
      finish({ kind: 'closed' });
      return;
    }
    conn.attachStream({
      onData: (chunk) => {
        got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
        if (!stillMatches(probe.expect, got)) finish({ kind: 'mismatch', got: got.subarray(0, 64) });
        else if (got.length >= need) finish(replyMatches(probe.expect, got) ? { kind: 'ok' } : { kind: 'mismatch', got: got.subarray(0, 64) });
      },
      onEnd: () => finish({ kind: 'closed' }),
      onDrain: () => {},
      onClose: () => finish({ kind: 'closed' }),
    });
    conn.write(probe.send);
  });
}

/** What a probe's failure says, for logs and close reasons. */
export function describeProbeFailure(result: ProbeResult, timeoutMs: number): string {
  switch (result.kind) {
    case 'ok':
      return 'answered';
    case 'timeout':
      return `unanswered within ${timeoutMs}ms`;
    case 'closed':
      return 'the server closed the connection';
    case 'mismatch':
      return `answered ${result.got.toString('hex')} (hex), not what expect says`;
  }
}
