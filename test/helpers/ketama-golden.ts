/** The golden ketama placements recorded from a real nutcracker by test/fixtures/make-ketama-golden.ts. */
import { readFileSync } from 'node:fs';
import type { KetamaHash } from '../../src/config/schema.js';

export interface GoldenPool {
  name: string;
  hash: KetamaHash;
  hashTag: string | null;
  autoEject: boolean;
  /** `line` is the server entry exactly as nutcracker was given it. */
  servers: { line: string; host: string; port: number; weight: number; name: string | null; live: boolean }[];
  keys: [string, number][];
  binaryKeys: [string, number][];
}

export interface GoldenFile {
  pools: GoldenPool[];
}

export function loadGolden(): GoldenFile {
  return JSON.parse(readFileSync(new URL('../fixtures/ketama-golden.json', import.meta.url), 'utf8')) as GoldenFile;
}
