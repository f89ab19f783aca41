/**
 * A server's health as a closed union with one transition function, so every path into and out
 * of ejection is in one place and unit tests can drive it with plain numbers.
 *
 *   starting ──connected──▶ up ◀──────────────connected────────────┐
 *      │                    │                                      │
 *      └──failure──▶ failing(n) ──n = after_failures──▶ ejected(until) ──expired──▶ probing
 *                       ▲                                   ▲                        │
 *                       └──────────────failure (n < limit)──┴────────failure─────────┘
 */
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
