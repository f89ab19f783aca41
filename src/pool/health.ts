/**
 * A server's health as a closed union with one transition function, so every path into and out
 * of ejection is in one place and unit tests can drive it with plain numbers.
 *
 *   starting ──connected──▶ up ◀──────────connected──────────────────────────────┐
 *      │                     │                                                   │
 *      └──failure──▶ failing(n) ──n = after_failures──▶ ejected(until) ──expired──▶ probing
 *                                                          ▲    (connected: ignored)   │
 *                                                          └─────────failure───────────┘
 *
 * Only "gone" counts as a failure: a connect refused or timed out, a heartbeat unanswered. A server
 * that is merely slow or busy (a request past request_timeout, a `-BUSY` reply) still answers, and
 * taking it out of routing would only turn slow replies into errors.
 *
 * Ejection moves traffic elsewhere; it is not a sentence. An ejected server is probed early and
 * often: the first probe after probe_after (connect.backoff.initial), each failed probe doubling
 * the wait up to eject.for, so a restarted server is back within about a second of a short outage.
 * A connect that completes while the server is ejected proves nothing: the next probe decides.
 */
import type { BackoffConfig } from '../config/schema.js';
import type { Clock } from '../util/clock.js';
import { jittered } from '../util/clock.js';

/** Spread of each backoff delay: ±20%, so servers' refills never synchronise. */
export const BACKOFF_JITTER = 0.2;

/** Delay before the next connect after `failures` consecutive failures: initial × 2^(n-1), capped, jittered. */
export function backoffDelay(failures: number, backoff: BackoffConfig, clock: Pick<Clock, 'random'>): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1));
  return jittered(clock, base, BACKOFF_JITTER);
}
export type ServerHealth =
  | { kind: 'starting' }
  | { kind: 'up' }
  | { kind: 'failing'; failures: number; lastError: string }
  /** Out of routing until `until`, when a probe connect is made; `probes`: failed probes since the ejection. */
  | { kind: 'ejected'; until: number; failures: number; probes: number; lastError: string }
  | { kind: 'probing'; failures: number; probes: number; lastError: string };

export type HealthEvent =
  | { kind: 'connected' }
  | { kind: 'failed'; error: string }
  | { kind: 'tick'; now: number };

export interface EjectPolicy {
  afterFailures: number;
  /** The longest wait between probes of an ejected server. */
  forMs: number;
  /** The first wait after an ejection; each failed probe doubles it, up to forMs. */
  probeAfterMs: number;
}

/** How long an ejected server waits for its next probe after `probes` failed ones. */
export function probeDelay(probes: number, policy: EjectPolicy): number {
  return Math.min(policy.forMs, policy.probeAfterMs * 2 ** Math.min(probes, 30));
}

export function nextHealth(health: ServerHealth, event: HealthEvent, policy: EjectPolicy, now: number): ServerHealth {
  switch (event.kind) {
    case 'connected':
      // A connect begun before the ejection that completes during it proves nothing yet:
      // the server stays out for eject.for, then a probe decides.
      if (health.kind === 'up' || health.kind === 'ejected') return health;
      return { kind: 'up' };
    case 'failed': {
      if (health.kind === 'ejected') return health;
      const failures = health.kind === 'failing' || health.kind === 'probing' ? health.failures + 1 : 1;
      // A failed probe re-ejects at once (the server already proved itself unhealthy), and waits
      // twice as long for the next one.
      if (health.kind === 'probing') {
        const probes = health.probes + 1;
        return { kind: 'ejected', until: now + probeDelay(probes, policy), failures, probes, lastError: event.error };
      }
      if (failures >= policy.afterFailures) {
        return { kind: 'ejected', until: now + probeDelay(0, policy), failures, probes: 0, lastError: event.error };
      }
      return { kind: 'failing', failures, lastError: event.error };
    }
    case 'tick':
      if (health.kind === 'ejected' && event.now >= health.until) {
        return { kind: 'probing', failures: health.failures, probes: health.probes, lastError: health.lastError };
      }
      return health;
  }
}

/**
 * Whether requests may wait for this server to produce a connection. `panic`: every server of the
 * pool is ejected. Ejection exists to move traffic to other servers; with none left, requests wait
 * for the servers being probed rather than fail at once (Envoy's panic threshold).
 */
export function isHopeful(health: ServerHealth, panic: boolean): boolean {
  return panic || health.kind !== 'ejected';
}
