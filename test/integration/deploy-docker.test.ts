/**
 * deploy/docker/Dockerfile without a Docker engine: its structure is checked against the rules
 * the image promises (multi-stage, production dependencies and compiled JS only, non-root,
 * HEALTHCHECK on /healthz with node alone), its build context (.dockerignore) holds what it
 * copies, the code it runs imports production dependencies only, and its HEALTHCHECK command,
 * run as Docker would run it, tells a live poolside from a dead one.
 */
import { spawn } from 'node:child_process';
import { builtinModules } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { quietLog } from '../helpers/proxy.js';
import { freePort } from '../helpers/servers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = path.join(ROOT, 'deploy/docker/Dockerfile');

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface Instruction {
  keyword: string;
  args: string;
  /** Index of the stage (FROM) it belongs to. */
  stage: number;
  line: number;
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending === '') startLine = i + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const space = full.indexOf(' ');
    const keyword = full.slice(0, space).toUpperCase();
    if (keyword === 'FROM') stage++;
    out.push({ keyword, args: full.slice(space + 1).trim(), stage, line: startLine });
  });
  return out;
}

const instructions = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
const lastStage = Math.max(...instructions.map((i) => i.stage));
const final = instructions.filter((i) => i.stage === lastStage);
const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};

/** The exec-form array of an instruction (`CMD ["node", …]`); throws on the shell form. */
function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  return JSON.parse(json) as string[];
}

describe('deploy/docker/Dockerfile', () => {
  it('builds in one stage and runs in another, from a pinned slim Node 20 image', () => {
    const froms = instructions.filter((i) => i.keyword === 'FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from.args).toMatch(/^\S+ AS [a-z]+$/);
    const image = instructions.find((i) => i.keyword === 'ARG' && i.args.startsWith('NODE_IMAGE='));
    expect(image?.args).toMatch(/^NODE_IMAGE=node:20[\w.-]*-slim$/);
    expect(instructions.filter((i) => i.keyword === 'ADD')).toEqual([]);
    // The build stage builds with the dev dependencies; the script it runs exists.
    const build = instructions.filter((i) => i.stage === 0);
    expect(build.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args) && !i.args.includes('--omit=dev'))).toBe(true);
    expect(build.some((i) => i.keyword === 'RUN' && i.args === 'npm run build')).toBe(true);
    expect(packageJson.scripts.build).toBeDefined();
  });

  it('runs compiled JavaScript with the production dependencies only', () => {
    const runs = final.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    expect(runs.some((r) => /\bnpm ci --omit=dev --ignore-scripts\b/.test(r))).toBe(true);
    const copies = final.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    // From the build stage: dist alone. From the context: the manifests and the default config.
    expect(copies.filter((c) => c.startsWith('--from=')).map((c) => c.split(/\s+/).slice(1, -1))).toEqual([['/src/dist']]);
    for (const copy of copies.filter((c) => !c.startsWith('--from='))) {
      for (const source of copy.split(/\s+/).slice(0, -1)) expect(source).toMatch(/^(package\.json|package-lock\.json|deploy\/docker\/[\w.-]+\.yaml)$/);
    }
    const entrypoint = execForm(final.find((i) => i.keyword === 'ENTRYPOINT')!.args);
    const workdir = final.find((i) => i.keyword === 'WORKDIR')!.args;
    expect(entrypoint).toEqual(['node', `${workdir}/dist/main.js`]);
    expect(execForm(final.find((i) => i.keyword === 'CMD')!.args)).toEqual(['--config', '/etc/poolside/poolside.yaml']);
  });

  it('runs as a user that is not root, set after the last RUN', () => {
    const users = final.filter((i) => i.keyword === 'USER');
    expect(users).toHaveLength(1);
    expect(users[0].args).not.toMatch(/^(root|0)(:|$)/);
    const lastRun = Math.max(...final.filter((i) => i.keyword === 'RUN').map((i) => i.line));
    expect(users[0].line).toBeGreaterThan(lastRun);
  });

  it('has a HEALTHCHECK on /healthz that needs node alone', () => {
    const health = final.filter((i) => i.keyword === 'HEALTHCHECK');
    expect(health).toHaveLength(1);
    expect(health[0].args).toMatch(/--interval=\d+s --timeout=\d+s/);
    const command = execForm(health[0].args.slice(health[0].args.indexOf('CMD')));
    expect(command[0]).toBe('node');
    expect(command.join(' ')).toContain('http://127.0.0.1:9121/healthz');
    expect(command.join(' ')).not.toMatch(/\b(curl|wget)\b/);
  });

  it('has a build context (.dockerignore) with what it copies and nothing else', () => {
    const patterns = fs
      .readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    // Everything is excluded, then the few paths the Dockerfile copies are let back in.
    expect(patterns[0]).toBe('*');
    const allowed = patterns.slice(1).map((p) => {
      expect(p.startsWith('!')).toBe(true);
      return p.slice(1).replace(/\/$/, '');
    });
    const sources = instructions
      .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1))
      .map((s) => s.replace(/^\.\//, '').replace(/\/$/, ''));
    for (const source of sources) {
      expect(fs.existsSync(path.join(ROOT, source)), source).toBe(true);
      expect(allowed, source).toContain(source);
    }
    expect(allowed.sort()).toEqual([...new Set(sources)].sort());
  });

  it('runs code that imports nothing beyond Node.js and the production dependencies', () => {
    const imports = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (file.endsWith('.ts')) {
          for (const m of fs.readFileSync(file, 'utf8').matchAll(/^import (?!type )[^'"]*['"]([^'"]+)['"]/gm)) imports.add(m[1]);
        }
      }
    };
    walk(path.join(ROOT, 'src'));
    const packages = [...imports].filter((spec) => !spec.startsWith('.') && !spec.startsWith('node:') && !builtinModules.includes(spec));
    const names = packages.map((spec) => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]));
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => packageJson.dependencies[n] === undefined)).toEqual([]);
  });

  it('ships a configuration that poolside accepts', () => {
    const config = loadConfig(path.join(ROOT, 'deploy/docker/poolside.yaml'));
    expect(config.admin?.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9121 });
  });

  it('has a HEALTHCHECK command that exits 0 against a live poolside and 1 when none answers', async () => {
    const health = final.find((i) => i.keyword === 'HEALTHCHECK')!;
    const command = execForm(health.args.slice(health.args.indexOf('CMD')));
    const port = await freePort();
    const run = (): Promise<number | null> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, command.slice(1).map((a) => a.replace('127.0.0.1:9121', `127.0.0.1:${port}`)), { stdio: 'ignore' });
        child.on('error', reject);
        child.on('exit', (code) => resolve(code));
      });
    expect(await run()).toBe(1);

    const config = parseConfig(
      YAML.stringify({ admin: { listen: `127.0.0.1:${port}` }, pools: { cache: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [`127.0.0.1:${await freePort()}`] } } }),
      'test.yaml',
      {},
    );
    cleanup.add(await Proxy.start(config, { log: quietLog() }), (p) => p.close());
    expect(await run()).toBe(0);
  });
});
