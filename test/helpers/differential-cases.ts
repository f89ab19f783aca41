/**
 * Cases for the differential test (harness: differential.ts): what fast-check generates, and how a
 * case compiles into concrete writes per client against a model of each client's state.
 *
 * Features (`Feature`) name what a case may contain, so that a test can leave out the ones a known
 * defect breaks; `compile` drops an intent whose feature is not enabled, which keeps shrinking
 * simple: every generated case is valid for every feature set.
 */
import fc from 'fast-check';
import { encode } from './resp-client.js';

export const FEATURES = [
  'strings',
  'pipeline',
  'transactions',
  'watch',
  'select',
  'scripts',
  'blocking',
  'wake',
  'pubsub',
  'client-name',
  'resp3',
  'idle-gap',
  'vanish',
  'kill',
  // Each of these is a known defect's trigger (see KNOWN_BROKEN in the test):
  'select-in-multi',
  'watch-discard',
  'kill-pinned',
  'client-id',
  'client-reply',
  'long-tx-pipeline',
  'quiet-pool',
  'relay-after-select',
] as const;
export type Feature = (typeof FEATURES)[number];

// ── Cases: what fast-check generates ─────────────────────────────────────────────────────────

/** A command; `@a` … `@e` are the client's own keys, `@ch` its own channel. */
export type Cmd = readonly string[];

export type Block =
  | { t: 'cmds'; cmds: Cmd[]; pipeline: boolean }
  | { t: 'tx'; watch: boolean; touch: boolean; body: Cmd[]; selectAt: number | null; end: 'EXEC' | 'DISCARD'; pipeline: boolean }
  | { t: 'long-tx'; n: number; behind: 'MULTI' | 'BLPOP' }
  | { t: 'watch-discard'; touch: boolean }
  | { t: 'select'; db: number }
  | { t: 'setname'; name: string }
  | { t: 'hello3' }
  | { t: 'hello2' }
  | { t: 'client-id' }
  | { t: 'client-reply'; mode: 'SKIP' | 'OFF' }
  | { t: 'blpop-timeout' }
  | { t: 'subscribe' }
  | { t: 'unsubscribe' }
  | { t: 'pause'; ms: number }
  | { t: 'vanish'; cmds: Cmd[] };

export type Step =
  | { t: 'par'; blocks: Block[][] }
  | { t: 'wake'; blocker: number; pusher: number }
  | { t: 'pubsub'; sub: number; pub: number }
  | { t: 'kill'; one: boolean }
  | { t: 'idle'; ms: number };

/**
 * The proxy's configuration: `beating` heartbeats idle connections more often than the idle gaps
 * last; `quiet` has no heartbeat and a request_timeout shorter than the idle gaps, so a connection
 * can sit idle past its request deadline.
 */
export type PoolKind = 'beating' | 'quiet';

export interface Case {
  pool: PoolKind;
  clients: number;
  steps: Step[];
}

export const MAX_CLIENTS = 4;
/** Idle gaps: longer than the heartbeat interval the proxy under test is configured with. */
export const IDLE_MS = { min: 150, max: 300 };

/** `%big` stands for a 100 kB value (expanded by compile), a reply that arrives in many reads. */
const BIG = 'b'.repeat(100_000);
const value = fc.constantFrom('v', 'hello', '', '12', 'x y', 'ünï', '%big');
const num = fc.constantFrom('1', '-3', '100', 'abc');

const dataCmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.tuple(fc.constant('SET'), fc.constant('@a'), value),
  fc.constant(['GET', '@a']),
  fc.tuple(fc.constant('APPEND'), fc.constant('@a'), value),
  fc.constant(['STRLEN', '@a']),
  fc.constant(['INCR', '@b']),
  fc.tuple(fc.constant('INCRBY'), fc.constant('@b'), num),
  fc.constant(['DECR', '@b']),
  fc.constant(['GET', '@b']),
  fc.constant(['MGET', '@a', '@b', '@c']),
  fc.constant(['DEL', '@a']),
  fc.constant(['EXISTS', '@a', '@b']),
  fc.tuple(fc.constant('SETNX'), fc.constant('@a'), value),
  fc.tuple(fc.constant('LPUSH'), fc.constant('@c'), value),
  fc.tuple(fc.constant('RPUSH'), fc.constant('@c'), value, value),
  fc.constant(['LPOP', '@c']),
  fc.constant(['RPOP', '@c']),
  fc.constant(['LRANGE', '@c', '0', '-1']),
  fc.constant(['LLEN', '@c']),
  fc.tuple(fc.constant('HSET'), fc.constant('@d'), fc.constantFrom('f1', 'f2'), value),
  fc.constant(['HGET', '@d', 'f1']),
  fc.constant(['HGETALL', '@d']),
  fc.tuple(fc.constant('HINCRBY'), fc.constant('@d'), fc.constant('n'), num),
  fc.constant(['HDEL', '@d', 'f1']),
  fc.constant(['HLEN', '@d']),
  fc.constant(['TYPE', '@a']),
  fc.constant(['PING']),
  fc.tuple(fc.constant('ECHO'), value),
  fc.constant(['CLIENT', 'GETNAME']),
);

const scriptCmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.constant(['EVAL', "return redis.call('INCR', KEYS[1])", '1', '@b']),
  fc.tuple(fc.constant('EVAL'), fc.constant('return {KEYS[1], ARGV[1], 7}'), fc.constant('1'), fc.constant('@a'), value),
  fc.tuple(fc.constant('EVAL'), fc.constant("return redis.call('LPUSH', KEYS[1], ARGV[1])"), fc.constant('1'), fc.constant('@a'), value),
  fc.constant(['EVAL', "return redis.error_reply('boom')", '0']),
  fc.constant(['EVAL', 'return nil +', '0']),
  // A few milliseconds of server time: long enough for a sweep to see the request in flight.
  fc.constant(['EVAL', 'local i = 0 while i < 300000 do i = i + 1 end return i', '0']),
);

/** Transaction commands out of place: errors (or an early end of a transaction), one reply each. */
const misuseCmd: fc.Arbitrary<Cmd> = fc.constantFrom<Cmd>(['EXEC'], ['DISCARD'], ['UNWATCH']);
/** A short blocking pop amid other commands: the session switches to an exclusive connection and back. */
const blockingCmd: fc.Arbitrary<Cmd> = fc.constant(['BLPOP', '@e', '0.05']);

const anyCmd = fc.oneof(
  { weight: 12, arbitrary: dataCmd },
  { weight: 2, arbitrary: scriptCmd },
  { weight: 1, arbitrary: misuseCmd },
  { weight: 1, arbitrary: blockingCmd },
);

const block: fc.Arbitrary<Block> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('cmds' as const), cmds: fc.array(anyCmd, { minLength: 1, maxLength: 5 }), pipeline: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('tx' as const),
      watch: fc.boolean(),
      touch: fc.boolean(),
      body: fc.array(anyCmd, { maxLength: 4 }),
      selectAt: fc.option(fc.nat(4), { freq: 3 }),
      end: fc.constantFrom('EXEC' as const, 'DISCARD' as const),
      pipeline: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('long-tx' as const), n: fc.integer({ min: 10, max: 24 }), behind: fc.constantFrom('MULTI' as const, 'BLPOP' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('watch-discard' as const), touch: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('select' as const), db: fc.constantFrom(0, 1, 2, 15, 99) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('setname' as const), name: fc.constantFrom('app', 'worker-1') }) },
  { weight: 1, arbitrary: fc.constant({ t: 'hello3' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'hello2' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'client-id' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('client-reply' as const), mode: fc.constantFrom('SKIP' as const, 'OFF' as const) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'blpop-timeout' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'subscribe' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'unsubscribe' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('pause' as const), ms: fc.integer(IDLE_MS) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('vanish' as const),
      cmds: fc.array(
        fc.oneof(
          { weight: 4, arbitrary: dataCmd },
          { weight: 1, arbitrary: fc.constantFrom<Cmd>(['MULTI'], ['WATCH', '@a'], ['BLPOP', '@e', '1'], ['SUBSCRIBE', '@ch'], ['SELECT', '3'], ['CLIENT', 'SETNAME', 'gone']) },
        ),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
);

const client = fc.nat(MAX_CLIENTS - 1);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('par' as const), blocks: fc.array(fc.array(block, { maxLength: 3 }), { minLength: MAX_CLIENTS, maxLength: MAX_CLIENTS }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('wake' as const), blocker: client, pusher: client }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('pubsub' as const), sub: client, pub: client }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('kill' as const), one: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('idle' as const), ms: fc.integer(IDLE_MS) }) },
);

export const caseArb: fc.Arbitrary<Case> = fc.record({ pool: fc.constantFrom<PoolKind>('beating', 'quiet'), clients: fc.integer({ min: 1, max: MAX_CLIENTS }), steps: fc.array(step, { minLength: 1, maxLength: 8 }) });

// ── Plans: cases compiled against a model of each client's state ─────────────────────────────

/** One write (or none) and the number of frames it must produce on the client's socket. */
export interface Action {
  write: Buffer | null;
  frames: number;
  /** Sleep this long before writing. */
  pauseMs?: number;
  /** Destroy the socket right after writing and continue on a new one (a client vanishing). */
  vanish?: boolean;
  /** How to normalise the frames this action reads. */
  tag?: 'client-id' | 'hello';
  /** Reply time the server itself needs (blocking pops), added to the reply deadline. */
  blockMs?: number;
}

export type PlanStep =
  | { t: 'par'; actions: Action[][] }
  | { t: 'wake'; blocker: number; pusher: number; block: Action; push: Action }
  | { t: 'pubsub'; sub: number; pub: number; subscribe: Action; publish: Action; unsubscribe: Action }
  | { t: 'kill'; doomed: number[]; one: boolean }
  | { t: 'idle'; ms: number };

export interface Plan {
  pool: PoolKind;
  clients: number;
  steps: PlanStep[];
  /** Clients whose pinned state a CLIENT KILL destroyed: poolside must close them (B only). */
  doomed: number[];
}

interface ClientModel {
  gen: number;
  /** Database after the client's last successful SELECT outside MULTI. */
  db: number;
  resp3: boolean;
  watching: boolean;
  subscribed: boolean;
  /** poolside relays every frame of a connection that saw (UN)SUBSCRIBE, until the client leaves. */
  relay: boolean;
  named: boolean;
  doomed: boolean;
}

function fresh(gen: number): ClientModel {
  return { gen, db: 0, resp3: false, watching: false, subscribed: false, relay: false, named: false, doomed: false };
}

/** The state a kill cannot replay: poolside can only close a client that had it. */
function pinned(m: ClientModel): boolean {
  return m.resp3 || m.watching || m.subscribed || m.relay || m.named;
}

/**
 * Turns a case into the concrete writes for each client, dropping what `features` does not allow
 * and what a client's state would make ambiguous. `caseId` makes names unique across cases, so a
 * subscriber left from the previous case can never receive this one's messages.
 */
export function compile(c: Case, features: ReadonlySet<Feature>, caseId: number): Plan {
  const has = (f: Feature): boolean => features.has(f);
  const models: ClientModel[] = Array.from({ length: c.clients }, () => fresh(0));
  const ns = (i: number): string => `d${caseId}:c${i}.${models[i].gen}:`;
  const words = (i: number, cmd: Cmd): string[] => cmd.map((w) => (w.startsWith('@') ? `${ns(i)}${w.slice(1)}` : w === '%big' ? BIG : w));
  const one = (i: number, cmd: Cmd, extra: Partial<Action> = {}): Action => ({ write: encode(...words(i, cmd)), frames: 1, ...extra });
  const batch = (i: number, cmds: Cmd[], frames = cmds.length): Action => ({ write: Buffer.concat(cmds.map((cmd) => encode(...words(i, cmd)))), frames });
  const live = (i: number): boolean => i < c.clients && !models[i].doomed;
  const relayable = (m: ClientModel): boolean => m.db === 0 || m.relay || has('relay-after-select');
  const allowedCmd = (cmd: Cmd): boolean => (has('scripts') || cmd[0] !== 'EVAL') && (has('blocking') || cmd[0] !== 'BLPOP');

  const blockActions = (i: number, b: Block): Action[] => {
    const m = models[i];
    switch (b.t) {
      case 'cmds': {
        const cmds = b.cmds.filter(allowedCmd);
        if (cmds.length === 0 || !has('strings')) return [];
        return b.pipeline && has('pipeline') ? [batch(i, cmds)] : cmds.map((cmd) => one(i, cmd));
      }
      case 'tx': {
        if (!has('transactions') || (b.watch && !has('watch'))) return [];
        const body = b.body.filter(allowedCmd);
        const cmds: Cmd[] = [];
        if (b.watch) cmds.push(['WATCH', '@a']);
        if (b.watch && b.touch) cmds.push(['INCR', '@a']);
        cmds.push(['MULTI'], ...body);
        if (b.selectAt !== null && has('select-in-multi')) cmds.splice(cmds.length - body.length + Math.min(b.selectAt, body.length), 0, ['SELECT', String(b.selectAt)]);
        cmds.push([b.end]);
        m.watching = false;
        return b.pipeline && has('pipeline') ? [batch(i, cmds)] : cmds.map((cmd) => one(i, cmd));
      }
      case 'long-tx': {
        // A long pipeline behind a command that pins: the session holds the rest while it waits.
        if (!has('long-tx-pipeline')) return [];
        const body: Cmd[] = Array.from({ length: b.n }, () => ['INCR', '@b']);
        if (b.behind === 'MULTI') m.watching = false; // EXEC unwatches; a pipeline behind BLPOP does not
        return [b.behind === 'MULTI' ? batch(i, [['MULTI'], ...body, ['EXEC']]) : { ...batch(i, [['BLPOP', '@e', '0.05'], ...body]), blockMs: 50 }];
      }
      case 'watch-discard':
        // DISCARD without MULTI is an error and leaves the WATCH in place (`touch`: and fires it).
        if (!has('watch-discard')) return [];
        m.watching = true;
        return [one(i, ['WATCH', '@a']), one(i, ['DISCARD']), ...(b.touch ? [one(i, ['INCR', '@a'])] : [])];
      case 'select':
        if (!has('select')) return [];
        if (b.db < 16) m.db = b.db;
        return [one(i, ['SELECT', String(b.db)])];
      case 'setname':
        if (!has('client-name')) return [];
        m.named = true;
        return [one(i, ['CLIENT', 'SETNAME', b.name]), one(i, ['CLIENT', 'GETNAME'])];
      case 'hello3':
        if (!has('resp3')) return [];
        m.resp3 = true;
        return [one(i, ['HELLO', '3'], { tag: 'hello' })];
      case 'hello2':
        // Back to RESP2 (or a no-op). `resp3` stays set: poolside keeps the session pinned all the same.
        return has('resp3') ? [one(i, ['HELLO', '2'], { tag: 'hello' })] : [];
      case 'client-id':
        return has('client-id') ? [one(i, ['CLIENT', 'ID'], { tag: 'client-id' })] : [];
      case 'client-reply':
        // Self-contained: SKIP silences the next command, OFF everything up to ON's +OK.
        if (!has('client-reply')) return [];
        return b.mode === 'SKIP'
          ? [batch(i, [['CLIENT', 'REPLY', 'SKIP'], ['INCR', '@b'], ['GET', '@b']], 1)]
          : [batch(i, [['CLIENT', 'REPLY', 'OFF'], ['INCR', '@b'], ['CLIENT', 'REPLY', 'ON']], 1)];
      case 'blpop-timeout':
        return has('blocking') ? [one(i, ['BLPOP', '@e', '0.1'], { blockMs: 100 })] : [];
      case 'subscribe':
        if (!has('pubsub') || !relayable(m)) return [];
        m.subscribed = true;
        m.relay = true;
        return [one(i, ['SUBSCRIBE', '@ch'])];
      case 'unsubscribe':
        // Explicit channel: one reply whether or not subscribed; leaves subscribe mode when it was the last.
        if (!has('pubsub') || !relayable(m)) return [];
        m.subscribed = false;
        m.relay = true;
        return [one(i, ['UNSUBSCRIBE', '@ch'])];
      case 'pause':
        return has('idle-gap') ? [{ write: null, frames: 0, pauseMs: b.ms }] : [];
      case 'vanish': {
        if (!has('vanish')) return [];
        const action = { ...batch(i, b.cmds), frames: 0, vanish: true };
        models[i] = fresh(m.gen + 1);
        return [action];
      }
    }
  };

  const steps: PlanStep[] = [];
  for (const s of c.steps) {
    switch (s.t) {
      case 'par':
        steps.push({ t: 'par', actions: Array.from({ length: c.clients }, (_, i) => (live(i) ? s.blocks[i].flatMap((b) => blockActions(i, b)) : [])) });
        break;
      case 'wake': {
        if (!has('wake') || s.blocker === s.pusher || !live(s.blocker) || !live(s.pusher)) break;
        // RESP2 subscribe mode refuses BLPOP: nothing would block.
        if (models[s.blocker].subscribed && !models[s.blocker].resp3) break;
        const key = `${ns(s.blocker)}e`;
        steps.push({
          t: 'wake',
          blocker: s.blocker,
          pusher: s.pusher,
          block: { write: encode('BLPOP', key, '5'), frames: 1, blockMs: 5000 },
          push: { write: encode('LPUSH', key, 'woken'), frames: 1 },
        });
        break;
      }
      case 'pubsub': {
        if (!has('pubsub') || s.sub === s.pub || !live(s.sub) || !live(s.pub) || !relayable(models[s.sub])) break;
        const channel = `d${caseId}:ps${steps.length}`;
        models[s.sub].relay = true;
        steps.push({
          t: 'pubsub',
          sub: s.sub,
          pub: s.pub,
          subscribe: { write: encode('SUBSCRIBE', channel), frames: 1 },
          publish: { write: encode('PUBLISH', channel, 'news'), frames: 1 },
          unsubscribe: { write: encode('UNSUBSCRIBE', channel), frames: 1 },
        });
        break;
      }
      case 'kill': {
        if (!has('kill')) break;
        const doomed = models.flatMap((m, i) => (live(i) && pinned(m) ? [i] : []));
        // Killing one connection by id: which client it dooms is unknown, so only when none is pinned.
        if (doomed.length > 0 && (s.one || !has('kill-pinned'))) break;
        for (const i of doomed) models[i].doomed = true;
        steps.push({ t: 'kill', doomed, one: s.one });
        break;
      }
      case 'idle':
        if (has('idle-gap')) steps.push({ t: 'idle', ms: s.ms });
        break;
    }
  }
  const pool = c.pool === 'quiet' && !has('quiet-pool') ? 'beating' : c.pool;
  return { pool, clients: c.clients, steps, doomed: models.flatMap((m, i) => (m.doomed ? [i] : [])) };
}

/** A plan as the commands each client sends, for a failure message a person can read. */
export function describePlan(plan: Plan): string {
  const show = (a: Action): string => {
    const text = a.write === null ? '' : a.write.toString('latin1').replace(/b{1000,}/g, '%big').replace(/\*\d+\r\n/g, '| ').replace(/\$\d+\r\n([^\r]*)\r\n/g, '$1 ').trim();
    return `${a.pauseMs !== undefined ? `(pause ${a.pauseMs}ms) ` : ''}${text}${a.vanish === true ? ' <vanish>' : ''}`;
  };
  return `pool ${plan.pool}\n` + plan.steps
    .map((s, n) => {
      switch (s.t) {
        case 'par':
          return `${n} par\n${s.actions.map((as, i) => (as.length === 0 ? '' : `    c${i}: ${as.map(show).join(' ; ')}\n`)).join('')}`;
        case 'wake':
          return `${n} wake: c${s.blocker} ${show(s.block)} ; c${s.pusher} ${show(s.push)}\n`;
        case 'pubsub':
          return `${n} pubsub: c${s.sub} ${show(s.subscribe)} ; c${s.pub} ${show(s.publish)}\n`;
        case 'kill':
          return `${n} CLIENT KILL of ${s.one ? "poolside's oldest connection" : "all of poolside's connections"} (doomed: ${s.doomed.join(',') || 'none'})\n`;
        case 'idle':
          return `${n} idle ${s.ms}ms\n`;
      }
    })
    .join('');
}
