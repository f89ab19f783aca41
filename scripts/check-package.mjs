// Proves a production install works: packs this (built) package, installs the tarball with
// `npm install --omit=dev` into an empty temp project, and checks that the `poolside` bin there
// runs --version and --check-config and starts listening, with no TypeScript, tsx or vitest
// installed. Needs the npm registry for the three runtime dependencies (npm's cache is used first).
// Exit 0 = good. `.ci/run` calls it as `npm run --silent check:package`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'poolside-package-'));
let child = null;

function fail(message) {
  process.stderr.write(`check:package: FAILED: ${message}\n`);
  cleanup();
  process.exit(1);
}

function cleanup() {
  if (child !== null && child.exitCode === null) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (result.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${result.status}\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

process.on('SIGINT', () => fail('interrupted'));

// npm pack runs the `prepare` script: the tarball holds a fresh build.
const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root }));
const tarball = join(work, packed[0].filename);
const files = packed[0].files.map((f) => f.path);
for (const need of ['dist/main.js', 'docs/configuration.md', 'config.example.yaml']) {
  if (!files.includes(need)) fail(`the package lacks ${need}`);
}
const stray = files.filter((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.ts'));
if (stray.length > 0) fail(`the package ships sources or tests: ${stray.slice(0, 5).join(', ')}`);

const app = join(work, 'app');
run('mkdir', ['-p', app]);
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'poolside-install-check', private: true }));
run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app });
for (const dev of ['typescript', 'tsx', 'vitest', '@types/node']) {
  if (existsSync(join(app, 'node_modules', dev))) fail(`the production install has ${dev}`);
}
const bin = join(app, 'node_modules', '.bin', 'poolside');
const version = run(bin, ['--version']).trim();
const example = join(app, 'node_modules', 'poolside', 'config.example.yaml');
run(bin, ['--check-config', example]);

// Start it for real: a config with a unix listener in the temp dir and no admin endpoint.
const sock = join(work, 'p.sock');
const config = join(work, 'poolside.yaml');
writeFileSync(config, `admin: false\npools:\n  cache:\n    protocol: redis\n    listen: "unix:${sock}"\n    servers: ["127.0.0.1:1"]\n`);
const started = process.hrtime.bigint();
child = spawn(bin, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
child.stderr.on('data', (chunk) => (log += chunk));
const deadline = Date.now() + 10_000;
for (;;) {
  const up = await new Promise((done) => {
    const s = net.connect(sock, () => (s.destroy(), done(true)));
    s.on('error', () => done(false));
  });
  if (up) break;
  if (child.exitCode !== null || Date.now() > deadline) fail(`the installed poolside did not listen:\n${log}`);
  await new Promise((r) => setTimeout(r, 10));
}
const ms = Number(process.hrtime.bigint() - started) / 1e6;
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
cleanup();
process.stdout.write(`check:package: OK: ${packed[0].filename} installs with --omit=dev (no TypeScript), ${version}, listening ${ms.toFixed(0)} ms after spawn\n`);
