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
 * A connect that completes while the server is ejected proves nothing: it stays out for
 * eject.for, and then one probe connect decides.
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
  | { kind: 'ejected'; until: number; failures: number; lastError: string }
  | { kind: 'probing'; failures: number; lastError: string };

export type HealthEvent =
  | { kind: 'connected' }
  | { kind: 'failed'; error: string }
  | { kind: 'tick'; now: number };

export interface EjectPolicy {
  afterFailures: number;
  forMs: number;
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
      // A failed probe re-ejects at once: the server already proved itself unhealthy.
      if (health.kind === 'probing' || failures >= policy.afterFailures) {
        return { kind: 'ejected', until: now + policy.forMs, failures, lastError: event.error };
      }
      return { kind: 'failing', failures, lastError: event.error };
    }
    case 'tick':
      if (health.kind === 'ejected' && event.now >= health.until) {
        return { kind: 'probing', failures: health.failures, lastError: health.lastError };
      }
      return health;
  }
}

/** Whether requests may wait for this server to produce a connection. */
export function isHopeful(health: ServerHealth): boolean {
  return health.kind !== 'ejected';
}
