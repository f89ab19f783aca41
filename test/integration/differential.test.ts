/**
 * poolside against redis-server itself: generated cases of concurrent clients run once straight
 * against redis-server A and once through poolside against redis-server B, and every client must
 * read the same bytes from both, but for the differences docs/differences.md lists. The harness:
 * test/helpers/differential.ts (runner, normaliser), differential-cases.ts (generator, compiler).
 *
 * `npm test` runs a small fixed-seed set (KNOWN_BROKEN below may keep features out of it) and
 * replays every minimal case the test found (FOUND).
 * Longer runs:
 *   POOLSIDE_DIFF_RUNS=500 npx vitest run test/integration/differential.test.ts     (random seed, printed)
 *   POOLSIDE_DIFF_SEED=123 POOLSIDE_DIFF_RUNS=500 …                                  (reproduce a seed)
 *   POOLSIDE_DIFF_BROKEN=1 …            also generate what KNOWN_BROKEN leaves out (to see a defect)
 *   POOLSIDE_DIFF_BROKEN=client-id,watch-discard …                                   (only those)
 *   POOLSIDE_DIFF_CASE='{"pool":"beating","clients":1,"steps":[…]}' …                  (one case, every feature)
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { caseArb, compile, describePlan, FEATURES } from '../helpers/differential-cases.js';
import type { Case, Feature, PoolKind } from '../helpers/differential-cases.js';
import { compareStreams, normalise, runPlan } from '../helpers/differential.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { rawCommand, RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * The one place that keeps features out of the fast run, each with the issue 8 defect it waits
 * for. Remove an entry once its defect is fixed (and turn its minimal case at the end of this file
 * into a regression test).
 */
const KNOWN_BROKEN = new Map<Feature, string>([
]);

const LIMITS = { connections: { min: 2, max: 4 }, exclusive: { max: 16 }, queue: { max: 16, timeout: '1s' } };
/** The proxies under test (see PoolKind). Idle gaps last 150–300 ms. */
const POOLS: Record<PoolKind, Record<string, unknown>> = {
  beating: { ...LIMITS, heartbeat: { interval: '100ms', timeout: '80ms', misses: 5, jitter: '20%' }, request_timeout: '1s' },
  quiet: { ...LIMITS, heartbeat: false, request_timeout: '100ms' },
};

/** poolside's connections to `server`, from the server's side (all but the asking one). */
async function proxyConnections(server: RedisServer): Promise<number> {
  const list = await rawCommand(server.port, ['CLIENT', 'LIST']);
  return list.split('\n').filter((line) => line.includes(' fd=') && !line.includes('cmd=client|list')).length;
}

function closedConnections(proxy: Proxy): number {
  return Object.values(proxy.stats()[0].servers[0].counters.connectionsClosed).reduce((sum, n) => sum + n, 0);
}

async function flush(server: RedisServer): Promise<void> {
  expect(await server.command('FLUSHALL')).toBe('+OK\r\n');
}

interface Settings {
  runs: number;
  seed: number;
  features: Set<Feature>;
  /** One case to run, as JSON (a counterexample fast-check printed), instead of generated ones. */
  only: Case | null;
}

function settings(): Settings {
  const runs = Number(process.env.POOLSIDE_DIFF_RUNS ?? '0');
  const seed = process.env.POOLSIDE_DIFF_SEED !== undefined ? Number(process.env.POOLSIDE_DIFF_SEED) : runs > 0 ? Date.now() % 1_000_000 : 8;
  const only = process.env.POOLSIDE_DIFF_CASE !== undefined ? (JSON.parse(process.env.POOLSIDE_DIFF_CASE) as Case) : null;
  // '1': every known-broken feature; or a comma-separated list of them. A single case gets them all.
  const broken = (process.env.POOLSIDE_DIFF_BROKEN ?? '').split(',');
  const included = (f: Feature): boolean => only !== null || !KNOWN_BROKEN.has(f) || broken.includes('1') || broken.includes(f);
  return { runs: runs > 0 ? runs : FAST_RUNS, seed, features: new Set(FEATURES.filter(included)), only };
}

/** Cases in `npm test`: 0.2–0.5 s each on this 2-core machine (idle gaps and blocking pops cost most). */
const FAST_RUNS = 30;

/**
 * Minimal cases this test found (shrunk by fast-check), replayed as regression tests with every
 * feature on. What each showed before its fix is in the commit history of this file.
 */
const FOUND: [string, string][] = [
  ["select-in-multi #1", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"tx\",\"watch\":false,\"touch\":false,\"body\":[],\"selectAt\":0,\"end\":\"EXEC\",\"pipeline\":false}],[],[],[]]}]}"],
  ["select-in-multi #2", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"cmds\",\"cmds\":[[\"SET\",\"@a\",\"v\"]],\"pipeline\":false},{\"t\":\"tx\",\"watch\":false,\"touch\":false,\"body\":[[\"GET\",\"@a\"]],\"selectAt\":1,\"end\":\"DISCARD\",\"pipeline\":false},{\"t\":\"cmds\",\"cmds\":[[\"GET\",\"@a\"]],\"pipeline\":false}],[],[],[]]}]}"],
  ["watch-discard #1", "{\"pool\":\"beating\",\"clients\":3,\"steps\":[{\"t\":\"par\",\"blocks\":[[],[{\"t\":\"watch-discard\",\"touch\":true}],[],[]]},{\"t\":\"par\",\"blocks\":[[],[],[{\"t\":\"tx\",\"watch\":false,\"touch\":false,\"body\":[],\"selectAt\":null,\"end\":\"EXEC\",\"pipeline\":false}],[]]}]}"],
  ["kill-pinned #1", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"setname\",\"name\":\"app\"}],[],[],[]]},{\"t\":\"kill\",\"one\":false}]}"],
  ["kill-pinned #2", "{\"pool\":\"beating\",\"clients\":2,\"steps\":[{\"t\":\"pubsub\",\"sub\":0,\"pub\":1},{\"t\":\"kill\",\"one\":false}]}"],
  ["client-id #1", "{\"pool\":\"beating\",\"clients\":2,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"client-id\"}],[{\"t\":\"cmds\",\"cmds\":[[\"INCR\",\"@b\"]],\"pipeline\":false},{\"t\":\"client-id\"}],[],[]]}]}"],
  ["client-reply #1", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"client-reply\",\"mode\":\"SKIP\"}],[],[],[]]}]}"],
  ["long-tx-pipeline #1", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"long-tx\",\"n\":15,\"behind\":\"MULTI\"}],[],[],[]]}]}"],
  ["long-tx-pipeline #2", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"long-tx\",\"n\":19,\"behind\":\"BLPOP\"}],[],[],[]]}]}"],
  ["quiet-pool #1", "{\"pool\":\"quiet\",\"clients\":1,\"steps\":[{\"t\":\"idle\",\"ms\":200},{\"t\":\"par\",\"blocks\":[[{\"t\":\"cmds\",\"cmds\":[[\"EVAL\",\"local i = 0 while i < 300000 do i = i + 1 end return i\",\"0\"]],\"pipeline\":false}],[],[],[]]}]}"],
  ["relay-after-select #1", "{\"pool\":\"beating\",\"clients\":1,\"steps\":[{\"t\":\"par\",\"blocks\":[[{\"t\":\"cmds\",\"cmds\":[[\"SET\",\"@a\",\"v\"]],\"pipeline\":false},{\"t\":\"select\",\"db\":2},{\"t\":\"unsubscribe\"},{\"t\":\"cmds\",\"cmds\":[[\"GET\",\"@a\"]],\"pipeline\":false}],[],[],[]]}]}"],
];

describe('differential: poolside answers like redis-server', () => {
  const { runs, seed, features, only } = settings();
  const long = process.env.POOLSIDE_DIFF_RUNS !== undefined || only !== null;
  let a: RedisServer;
  let b: RedisServer;
  let caseId = 0;

  /** Runs one case on A and through poolside on B; throws with both streams where they differ. */
  async function check(c: Case): Promise<void> {
    const plan = compile(c, features, caseId++);
    await Promise.all([flush(a), flush(b)]);
    const proxy: Proxy = await startProxy([b.address], POOLS[plan.pool]);
    try {
      await waitFor(async () => (await proxyConnections(b)) >= LIMITS.connections.min, 'poolside connected');
      const afterKill = async (): Promise<void> => {
        await waitFor(async () => (await proxyConnections(b)) >= LIMITS.connections.min, 'poolside reconnected after CLIENT KILL');
      };
      const [direct, proxied] = await Promise.all([
        runPlan(plan, { port: a.port, serverPort: a.port, proxied: false }),
        runPlan(plan, { port: portOf(proxy), serverPort: b.port, proxied: true, afterKill, closedConnections: () => closedConnections(proxy) }),
      ]);
      const mismatches = compareStreams(normalise(direct, plan, false), normalise(proxied, plan, true));
      if (mismatches.length > 0) {
        throw new Error(
          `replies differ\n${describePlan(plan)}\n${mismatches
            .map((m) => `client ${m.client} at reply ${m.index}:\n  redis-server: ${JSON.stringify(m.a)}\n  poolside:     ${JSON.stringify(m.b)}`)
            .join('\n')}`,
        );
      }
    } finally {
      await proxy.close();
    }
  }

  it(
    only !== null ? 'gives every client the same replies as a direct connection (POOLSIDE_DIFF_CASE)' : `gives every client the same replies as a direct connection (seed ${seed}, ${runs} cases)`,
    async () => {
      a = cleanup.add(await RedisServer.start(), (s) => s.stop());
      b = cleanup.add(await RedisServer.start(), (s) => s.stop());
      if (only !== null) return check(only);
      await fc.assert(fc.asyncProperty(caseArb, check), { seed, numRuns: runs, endOnFailure: !long, verbose: long ? 1 : 0 });
    },
    long ? 3_600_000 : 60_000,
  );

  it.each(FOUND)('replays a case it once found: %s', async (_name, json) => {
    a = cleanup.add(await RedisServer.start(), (s) => s.stop());
    b = cleanup.add(await RedisServer.start(), (s) => s.stop());
    await check(JSON.parse(json) as Case);
  });
});


