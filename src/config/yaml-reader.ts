/**
 * A reader over one `yaml` Document that keeps, for every value, the YAML path it sits at and the
 * node it came from, so each problem names its file, line, column and path. It walks node by node
 * rather than via toJS(), which would throw positions away. Problems are collected, never thrown:
 * a bad value is reported and replaced by a fallback so the walk goes on and finds the rest.
 * Unknown keys are reported with the closest known key. What the keys mean is load.ts's business.
 */

import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node as YamlNode, YAMLMap } from 'yaml';
import { describe, parseDuration, parseSize, redactCredentials, suggest } from './validate.js';
import type { Parser } from './validate.js';

export interface ConfigProblem {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** YAML path such as `pools.cache.servers[1].address`; empty for YAML syntax errors. */
  path: string;
  message: string;
}

/** `config.yaml:7:9 pools.cache.servers[1].address: expected host:port, got "10.0.0.5"` */
export function formatProblem(p: ConfigProblem): string {
  const where = `${p.file}:${p.line}:${p.column}`;
  // Every message quotes through describe(), which redacts; this catches any that quotes otherwise.
  const message = redactCredentials(p.message);
  return p.path === '' ? `${where} ${message}` : `${where} ${p.path}: ${message}`;
}

/** `offset` is a character offset into the text; lines and columns come out 1-based. */
export function problemAt(
  file: string,
  lines: LineCounter,
  offset: number,
  path: string,
  message: string,
): ConfigProblem {
  const { line, col } = lines.linePos(offset);
  return { file, line, column: col, path, message };
}

/** A value in the document, its YAML path, and the key node it hangs from (where "is required" points). */
export interface Slot {
  node: YamlNode;
  path: string;
  key: YamlNode | null;
}

export const offsetOf = (node: YamlNode | null | undefined): number => node?.range?.[0] ?? 0;

/** One pass over one document: where its problems go, and which nodes already have one. */
export class YamlReader {
  readonly problems: ConfigProblem[] = [];
  /** Nodes already reported: cross-field checks skip them rather than compare against a fallback. */
  readonly #reported = new Set<YamlNode>();

  constructor(
    readonly file: string,
    readonly doc: Document,
    readonly lines: LineCounter,
  ) {}

  at(offset: number, path: string, message: string): void {
    this.problems.push(problemAt(this.file, this.lines, offset, path, message));
  }

  report(slot: Slot, message: string): void {
    this.#reported.add(slot.node);
    this.at(offsetOf(slot.node), slot.path, message);
  }

  /**
   * A cross-field rule: reports `message` at the first present slot when `holds` is false, unless
   * one of the slots was already reported (its value is then a fallback and comparing it misleads).
   */
  check(holds: boolean, slots: (Slot | undefined)[], message: string): void {
    if (holds || slots.some((slot) => slot !== undefined && this.#reported.has(slot.node))) return;
    const at = slots.find((slot) => slot !== undefined);
    if (at !== undefined) this.report(at, message);
  }

  /** A child slot, or undefined when the value is absent or null (both mean "use the default"). */
  child(node: unknown, path: string, key: YamlNode | null): Slot | undefined {
    let value = node;
    if (isAlias(value)) {
      const target = value.resolve(this.doc);
      if (target === undefined) {
        this.at(offsetOf(value), path, `alias *${value.source} has no anchor`);
        return undefined;
      }
      value = target;
    }
    if (!isScalar(value) && !isMap(value) && !isSeq(value)) return undefined;
    if (isScalar(value) && value.value === null) return undefined;
    return { node: value, path, key };
  }

  /** A scalar's JS value; mappings and lists come back as {} and [] so messages can describe them. */
  plain(slot: Slot): unknown {
    if (isScalar(slot.node)) return slot.node.value;
    return isSeq(slot.node) ? [] : {};
  }

  /** Runs a validate.ts parser on the slot and reports its message; the fallback keeps the walk going. */
  parse<T>(slot: Slot | undefined, fallback: T, parser: Parser<T>): T {
    if (slot === undefined) return fallback;
    const result = parser(this.plain(slot), isScalar(slot.node) ? slot.node.source : undefined);
    if (result.ok) return result.value;
    this.report(slot, result.message);
    return fallback;
  }

  /** `zero`: whether 0 is meaningful here ("0 disables") or a mistake. */
  duration(slot: Slot | undefined, fallback: number, zero: 'allowed' | 'rejected'): number {
    const ms = this.parse(slot, fallback, parseDuration);
    if (slot !== undefined && ms === 0 && zero === 'rejected') this.report(slot, 'must be greater than 0');
    return ms;
  }

  size(slot: Slot | undefined, fallback: number): number {
    const bytes = this.parse(slot, fallback, parseSize);
    if (slot !== undefined && bytes === 0) this.report(slot, 'must be greater than 0');
    return bytes;
  }

  /** The mapping at `slot` with its keys checked, or undefined (reported) if it is not a mapping. */
  section(slot: Slot, keys: readonly string[]): Section | undefined {
    if (isMap(slot.node)) return new Section(this, slot, slot.node, keys);
    this.report(slot, `expected a mapping with keys ${keys.join(', ')}, got ${describe(this.plain(slot))}`);
    return undefined;
  }

  /** The items of a list; a single scalar counts as a list of one when `single` allows it. */
  list(slot: Slot, what: string, single: boolean): Slot[] {
    if (isSeq(slot.node)) {
      if (slot.node.items.length === 0) this.report(slot, `needs at least one ${what}`);
      const items: Slot[] = [];
      slot.node.items.forEach((item, i) => {
        const path = `${slot.path}[${i}]`;
        const child = this.child(item, path, null);
        if (child !== undefined) items.push(child);
        else this.at(offsetOf(isScalar(item) ? item : slot.node), path, `expected ${what}, got nothing`);
      });
      return items;
    }
    if (single && isScalar(slot.node)) return [slot];
    this.report(slot, `expected a list of ${what}s, got ${describe(this.plain(slot))}`);
    return [];
  }
}

const join = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);

/** A mapping whose keys have been checked against the known ones; unknown keys are reported. */
export class Section {
  readonly #reader: YamlReader;
  readonly #slot: Slot;
  readonly #values = new Map<string, Slot | undefined>();

  constructor(reader: YamlReader, slot: Slot, map: YAMLMap, keys: readonly string[]) {
    this.#reader = reader;
    this.#slot = slot;
    for (const { key: keyNode, value } of map.items) {
      if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
        reader.at(offsetOf(slot.node), slot.path, 'keys must be plain strings');
        continue;
      }
      const key = String(keyNode.value);
      const path = join(slot.path, key);
      if (keys.includes(key)) {
        this.#values.set(key, reader.child(value, path, keyNode));
      } else {
        const close = suggest(key, keys);
        reader.at(offsetOf(keyNode), path, close === null ? 'unknown key' : `unknown key; did you mean ${close}?`);
      }
    }
  }

  get(key: string): Slot | undefined {
    return this.#values.get(key);
  }

  /** Like get, but a missing value is reported at the key this mapping hangs from. */
  require(key: string, what: string): Slot | undefined {
    const slot = this.#values.get(key);
    if (slot === undefined) {
      this.#reader.at(offsetOf(this.#slot.key ?? this.#slot.node), join(this.#slot.path, key), `is required (${what})`);
    }
    return slot;
  }

  /** A nested mapping, or undefined when absent (the caller uses defaults) or not a mapping (reported). */
  section(key: string, keys: readonly string[]): Section | undefined {
    const slot = this.get(key);
    return slot === undefined ? undefined : this.#reader.section(slot, keys);
  }
}
