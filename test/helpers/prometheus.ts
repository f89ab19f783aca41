/**
 * Reading poolside's admin endpoint in tests: HTTP requests against it, a small parser of the
 * Prometheus text exposition (independent of prom-client, so a test checks the output against
 * the format rather than against the library that wrote it), and `promtool check metrics`.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { TcpAddress } from '../../src/config/schema.js';
import { requireBinary } from './servers.js';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on a fresh connection (no keep-alive, so nothing outlives the test). */
export function request(address: TcpAddress | number, path: string, method = 'GET'): Promise<HttpReply> {
  const port = typeof address === 'number' ? address : address.port;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 5s`)));
    req.on('error', reject);
    req.end();
  });
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  help: string;
  type: string;
}

export interface Exposition {
  samples: Sample[];
  /** By family name, from the # HELP and # TYPE lines. */
  families: Map<string, Family>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;

/** Parses text format 0.0.4; throws on a line it does not understand. */
export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const families = new Map<string, Family>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const rest = line.slice(7);
      const space = rest.indexOf(' ');
      const name = rest.slice(0, space);
      const family = families.get(name) ?? { help: '', type: '' };
      if (line.startsWith('# HELP ')) family.help = rest.slice(space + 1);
      else family.type = rest.slice(space + 1);
      families.set(name, family);
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = match[2] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < labelText.length) {
      const at = LABEL.lastIndex;
      const label = LABEL.exec(labelText);
      if (label === null) throw new Error(`bad labels at ${at} in: ${line}`);
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = match[3];
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN' && raw !== 'Nan') throw new Error(`bad value in: ${line}`);
    samples.push({ name: match[1], labels, value });
  }
  return { samples, families };
}

/** Samples named `name` whose labels include every one given. */
export function find(exposition: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of exactly one sample; throws when none or several match. */
export function valueOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = find(exposition, name, labels);
  if (found.length !== 1) throw new Error(`${found.length} samples match ${name}${JSON.stringify(labels)}`);
  return found[0].value;
}

/** GET /metrics, checked for status and content type, parsed. */
export async function scrape(address: TcpAddress): Promise<Exposition & { text: string }> {
  const reply = await request(address, '/metrics');
  if (reply.status !== 200) throw new Error(`GET /metrics answered ${reply.status}: ${reply.body}`);
  return { text: reply.body, ...parseExposition(reply.body) };
}

/** Runs `promtool check metrics` on `text` (on stdin); resolves with its exit code and output. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  const bin = requireBinary('promtool', 'prometheus');
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}
