/**
 * A pool's Redis command policy: which commands its clients may send. The built-in default denies
 * administrative and cross-host commands (DEFAULT_DENY below); a pool's `commands: { allow, deny }`
 * adjusts it, by command or by subcommand. Compiled once per pool, when the pool is built: per
 * request the policy costs one Map lookup, plus a scan of the script body for EVAL, SCRIPT LOAD and
 * FUNCTION LOAD. docs/redis-commands.md ("Command policy") is the user-facing copy; keep them in step.
 *
 * poolside cannot see what a Lua script will call. The scan refuses a script with a string literal
 * that names a denied command ('MIGRATE', "flushall"), which stops the plain case; a name built at
 * run time ('MIG'..'RATE', ARGV[1]) or EVALSHA of a script loaded some other way gets through. The
 * real boundary is the ACL of the user poolside authenticates as.
 */
import { editDistance } from '../../config/validate.js';
import type { ArgView } from '../codec.js';
import { allSpecs, isContainer, tableEntry } from './commands.js';
import type { CommandSpec } from './commands.js';

/** Denied unless a pool allows them: they act on the whole server, on other apps' data, or on other hosts. */
export const DEFAULT_DENY: readonly string[] = [
  'CONFIG', 'ACL', 'MIGRATE', 'FLUSHALL', 'FLUSHDB', 'SWAPDB', 'SAVE', 'BGSAVE', 'BGREWRITEAOF', 'PFSELFTEST',
  'MONITOR', 'SCRIPT KILL', 'FUNCTION KILL', 'FUNCTION FLUSH', 'FUNCTION RESTORE', 'SLOWLOG RESET', 'LATENCY RESET',
];
/** Exceptions to DEFAULT_DENY that only describe the caller or the server's vocabulary. */
export const DEFAULT_ALLOW: readonly string[] = ['ACL WHOAMI', 'ACL CAT', 'ACL GENPASS', 'ACL HELP'];

/** What a pool's `commands:` says, names normalized by parsePolicyName: `CONFIG`, `CONFIG GET`. */
export interface PolicyLists {
  allow: readonly string[];
  deny: readonly string[];
}

/**
 * A name from `commands.allow` / `commands.deny` as poolside writes it (`CONFIG GET`), or a
 * message saying why it is not one. `CONFIG|GET` (Redis ACL style) and any case are accepted.
 */
export function parsePolicyName(text: string, list: 'allow' | 'deny'): { ok: true; value: string } | { ok: false; message: string } {
  const words = text.trim().toUpperCase().split(/[\s|]+/).filter(Boolean);
  if (words.length === 0 || words.length > 2) {
    return { ok: false, message: `expected a command or "COMMAND SUBCOMMAND", got ${JSON.stringify(text)}` };
  }
  const [name, sub] = words;
  const spec = tableEntry(name);
  if (spec === undefined) {
    const close = closest(name, [...new Set(allSpecs().map((s) => s.name.split(' ')[0]))]);
    return { ok: false, message: `unknown Redis command ${JSON.stringify(text)}${close === null ? '' : `; did you mean ${close}?`}` };
  }
  if (sub !== undefined && !isContainer(name)) return { ok: false, message: `${name} has no subcommands, got ${JSON.stringify(text)}` };
  const entry = sub === undefined ? spec : tableEntry(name, sub);
  if (entry === undefined) {
    const subs = allSpecs().filter((s) => s.name.startsWith(`${name} `)).map((s) => s.name.slice(name.length + 1));
    const close = closest(sub ?? '', subs);
    return { ok: false, message: `${name} has no subcommand ${sub}${close === null ? '' : `; did you mean ${name} ${close}?`}` };
  }
  if (list === 'allow' && entry.use === 'unsupported') {
    return { ok: false, message: `${entry.name} ${entry.note}, so no policy can allow it` };
  }
  return { ok: true, value: entry.name };
}

function closest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/** How one name fares: the most specific entry wins; at equal specificity the pool's lists beat the default, deny beats allow. */
function isDenied(name: string, lists: PolicyLists): boolean {
  const space = name.indexOf(' ');
  const candidates = space < 0 ? [name] : [name, name.slice(0, space)];
  for (const candidate of candidates) {
    if (lists.deny.includes(candidate)) return true;
    if (lists.allow.includes(candidate)) return false;
    if (DEFAULT_DENY.includes(candidate)) return true;
    if (DEFAULT_ALLOW.includes(candidate)) return false;
  }
  return false;
}

/** A command name a script may mention, as the policy sees it. */
interface ScriptWord {
  word: string;
  /** Denied outright, or a container some of whose subcommands are denied. */
  allowedSubs: readonly string[] | null;
  /** The reply when a script mentions it, one per script command (EVAL, SCRIPT LOAD, …). */
  refusals: Map<CommandSpec, CommandSpec>;
}

/** What the policy does with one spec: refuse it, or look into its script first. */
type Verdict = { kind: 'denied'; spec: CommandSpec } | { kind: 'script'; bodyAt: number };

/** EVAL/EVAL_RO carry the body as argument 1, SCRIPT LOAD as 2, FUNCTION LOAD as the last one. */
const SCRIPT_BODIES: readonly [string, string | undefined, number][] = [
  ['EVAL', undefined, 1],
  ['EVAL_RO', undefined, 1],
  ['SCRIPT', 'LOAD', 2],
  ['FUNCTION', 'LOAD', -1],
];

export class CommandPolicy {
  readonly #verdicts = new Map<CommandSpec, Verdict>();
  readonly #words: ScriptWord[] = [];
  readonly #minWord: number;
  readonly #maxWord: number;

  constructor(pool: string, lists: PolicyLists) {
    const denied = (spec: CommandSpec, why: string): CommandSpec => ({ name: spec.name, use: 'denied', keys: spec.keys, idempotent: false, note: why });
    const byPolicy = `is denied by the command policy of pool ${pool}`;
    const names = new Map<string, { denied: boolean; allowedSubs: string[]; anySubDenied: boolean }>();
    for (const spec of allSpecs()) {
      if (spec.use === 'unsupported') continue;
      const deny = isDenied(spec.name, lists);
      if (deny) this.#verdicts.set(spec, { kind: 'denied', spec: denied(spec, byPolicy) });
      const [name, sub] = spec.name.split(' ');
      const entry = names.get(name) ?? { denied: false, allowedSubs: [], anySubDenied: false };
      if (sub === undefined) entry.denied = deny;
      else if (deny) entry.anySubDenied = true;
      else entry.allowedSubs.push(sub);
      names.set(name, entry);
    }
    for (const [word, entry] of names) {
      if (!entry.denied && !entry.anySubDenied) continue;
      // Denied outright only when nothing under the name is allowed: ACL is denied, ACL WHOAMI is not.
      const outright = entry.denied && entry.allowedSubs.length === 0;
      this.#words.push({ word, allowedSubs: outright ? null : entry.allowedSubs, refusals: new Map() });
    }
    for (const [name, sub, bodyAt] of SCRIPT_BODIES) {
      const spec = tableEntry(name, sub);
      if (spec === undefined) throw new Error(`${name} ${sub ?? ''} is missing from the command tables`);
      for (const w of this.#words) w.refusals.set(spec, denied(spec, `${byPolicy}: its script names ${w.word}, which the policy denies`));
      if (!this.#verdicts.has(spec) && this.#words.length > 0) this.#verdicts.set(spec, { kind: 'script', bodyAt });
    }
    this.#minWord = Math.min(...this.#words.map((w) => w.word.length));
    this.#maxWord = Math.max(...this.#words.map((w) => w.word.length));
  }

  /** `spec` itself, or the refusal the policy gives it. Allocates nothing. */
  apply(spec: CommandSpec, bytes: Buffer, args: ArgView): CommandSpec {
    const verdict = this.#verdicts.get(spec);
    if (verdict === undefined) return spec;
    if (verdict.kind === 'denied') return verdict.spec;
    const at = verdict.bodyAt < 0 ? args.count + verdict.bodyAt : verdict.bodyAt;
    if (at < 1 || at >= args.count) return spec;
    const word = this.#scan(bytes, args.starts[at], args.ends[at]);
    return word === null ? spec : (word.refusals.get(spec) ?? spec);
  }

  /**
   * The first denied command a script names in a string literal ('…' or "…"), or null. A
   * container with some subcommands allowed ('FUNCTION', 'LOAD') passes only when the literal after
   * it is one of those. One pass over the body: backslash escapes are skipped, `--` comments are
   * skipped (an apostrophe in one must not shift every literal after it), and a literal ends at a
   * newline as in Lua, so one stray quote cannot hide the rest of the script.
   */
  #scan(bytes: Buffer, start: number, end: number): ScriptWord | null {
    let pending: ScriptWord | null = null;
    for (let i = start; i < end; i++) {
      const c = bytes[i];
      if (c === 0x2d /* - */ && i + 1 < end && bytes[i + 1] === 0x2d) {
        i = skipComment(bytes, i + 2, end);
        continue;
      }
      if (c !== 0x22 && c !== 0x27) continue;
      let j = i + 1;
      while (j < end && bytes[j] !== c && bytes[j] !== 0x0a) j += bytes[j] === 0x5c ? 2 : 1;
      const from = i + 1;
      const to = Math.min(j, end);
      i = j;
      if (pending !== null) {
        if (!includesUpper(bytes, from, to, pending.allowedSubs)) return pending;
        pending = null;
        continue;
      }
      const length = to - from;
      if (length < this.#minWord || length > this.#maxWord) continue;
      for (const w of this.#words) {
        if (!equalsUpper(bytes, from, to, w.word)) continue;
        if (w.allowedSubs === null) return w;
        pending = w;
        break;
      }
    }
    return pending;
  }
}

/** Where a Lua comment that starts at `i` (after its `--`) ends: `--[[ … ]]` or the end of the line. */
function skipComment(bytes: Buffer, i: number, end: number): number {
  if (i + 1 < end && bytes[i] === 0x5b && bytes[i + 1] === 0x5b) {
    for (let j = i + 2; j + 1 < end; j++) if (bytes[j] === 0x5d && bytes[j + 1] === 0x5d) return j + 1;
    return end;
  }
  while (i < end && bytes[i] !== 0x0a) i++;
  return i;
}

function includesUpper(bytes: Buffer, start: number, end: number, words: readonly string[] | null): boolean {
  if (words === null) return false;
  for (const word of words) if (equalsUpper(bytes, start, end, word)) return true;
  return false;
}

/** Whether bytes[start, end) is `upper` in any ASCII case. */
function equalsUpper(bytes: Buffer, start: number, end: number, upper: string): boolean {
  if (end - start !== upper.length) return false;
  for (let i = 0; i < upper.length; i++) {
    let c = bytes[start + i];
    if (c >= 0x61 && c <= 0x7a) c -= 0x20;
    if (c !== upper.charCodeAt(i)) return false;
  }
  return true;
}
