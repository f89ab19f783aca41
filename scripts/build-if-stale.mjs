// Runs `npm run build` only when dist/ is older than a source file (or missing), so developer
// commands such as `npm run demo` start at once on a fresh build and never run stale code.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

function builtAt() {
  try {
    return statSync('dist/main.js').mtimeMs;
  } catch {
    return -1;
  }
}

const inputs = Math.max(newest('src'), ...['package.json', 'tsconfig.json', 'tsconfig.build.json'].map((f) => statSync(f).mtimeMs));
if (builtAt() < inputs) {
  process.stderr.write('dist/ is missing or older than src/: npm run build\n');
  const result = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
