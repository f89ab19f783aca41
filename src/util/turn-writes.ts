/**
 * Server-bound writes gathered per turn of the event loop. A connection queues the requests it is
 * sent during a turn and writes them in one write() when the turn ends (setImmediate): a turn that
 * reads twenty clients' requests costs the server connection one write, not twenty.
 *
 * But a turn also does work that is not reading requests: writing a server's replies to their
 * clients, setting up a client that connected, tearing down one that left. In Node each of those
 * costs tens of µs (a write per client, a net.Socket built or destroyed), and a request read
 * earlier in the turn would wait behind all of it before going out: measured with a server 1 ms
 * away (`bench:short-lived --remote`), that put a request's hop through poolside at p90 135 µs
 * against 57 µs for a relay writing each request as it is read. So that work calls
 * sendQueuedWrites() first: consecutive request reads still share one write, and nothing else
 * in the turn delays them.
 */

/** The flushes queued this turn, in the order their connections first queued bytes. */
const queued: (() => void)[] = [];
let endOfTurnScheduled = false;
/** sendQueuedWrites() is running its list now. */
let running = false;

function endOfTurn(): void {
  endOfTurnScheduled = false;
  sendQueuedWrites();
}

/**
 * Runs `flush` at the end of this turn, or earlier at sendQueuedWrites(). The caller queues each
 * flush once per batch (it keeps its own "scheduled" flag and clears it when `flush` runs).
 */
export function flushAtEndOfTurn(flush: () => void): void {
  queued.push(flush);
  if (!endOfTurnScheduled) {
    endOfTurnScheduled = true;
    setImmediate(endOfTurn);
  }
}

/**
 * Runs every queued flush now: before work in a turn that a request read earlier should not wait behind.
 * Called again from inside a flush (a write that set off work calling it), it returns at once: the
 * call already running runs everything queued, also what is queued after it began. Running the
 * list from both calls would have the outer one splice away flushes queued after the inner one
 * finished, never run, their connections' "scheduled" flags set for good (they would write nothing
 * again).
 */
export function sendQueuedWrites(): void {
  if (queued.length === 0 || running) return;
  running = true;
  // By index: a flush that leads to another connection queueing bytes appends to this same list.
  let done = 0;
  try {
    while (done < queued.length) {
      const flush = queued[done] as () => void;
      done++;
      flush();
    }
  } finally {
    // A flush that threw is not run again; the ones behind it still are, at the end of the turn.
    running = false;
    queued.splice(0, done);
    if (queued.length > 0 && !endOfTurnScheduled) {
      endOfTurnScheduled = true;
      setImmediate(endOfTurn);
    }
  }
}
