/**
 * A configured exchange on a raw connection (protocol: tcp): send `probe.send`, read until
 * `probe.expect` is decided, within a deadline. Used for heartbeats (a new connection's readiness,
 * idle connections, validation before lending) and for tcp.reset (proving a returned connection
 * clean). With no framing, the reply is "what arrives until the expectation is decided": exact
 * bytes and masks read exactly their length, a prefix reads its length and takes the rest of that
 * read as the reply's tail. A byte arriving after that, with nobody attached, closes the
 * connection (`unexpected_response`): it can never be handed to the next client.
 */
import { expectLength, matches } from '../config/probe.js';
import type { Expect, Probe } from '../config/probe.js';
import type { Clock } from '../util/clock.js';
import type { Connection } from './connection.js';

export type ProbeResult =
  | { kind: 'ok' }
  /** Answered, but not with what was expected: `got` is what came (cut for messages). */
  | { kind: 'mismatch'; got: Buffer }
  | { kind: 'timeout' }
  /** The server sent its FIN or the connection closed before the reply was decided. */
  | { kind: 'closed' };

/**
 * Whether what a stream has read so far (`got`) can still become a match: every byte read within
 * the expectation's length agrees with it. (`matches` then decides on the whole reply.)
 */
export function stillMatches(expect: Expect, got: Buffer): boolean {
  const n = Math.min(got.length, expectLength(expect));
  switch (expect.kind) {
    case 'any':
      return true;
    case 'mask':
      for (let i = 0; i < n; i++) if ((got[i] & expect.mask[i]) !== expect.value[i]) return false;
      return true;
    case 'exact':
    case 'prefix':
      return got.compare(expect.bytes, 0, n, 0, n) === 0;
  }
}

/** Runs one exchange on an idle, ready raw connection; the connection is left idle (nothing attached) whatever the outcome. */
export function runProbe(conn: Connection, probe: Probe, timeoutMs: number, clock: Clock): Promise<ProbeResult> {
  return new Promise((resolve) => {
    // `any` reply: the first byte decides.
    const need = Math.max(1, expectLength(probe.expect));
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
        else if (got.length >= need) finish(matches(probe.expect, got) ? { kind: 'ok' } : { kind: 'mismatch', got: got.subarray(0, 64) });
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
