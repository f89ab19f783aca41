#!/usr/bin/env node
/**
 * The command line: the only file that touches process.* (arguments, exit codes, signals).
 * What the arguments mean is cli-args.ts's business (usage there).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseCommandLine, usage } from './cli-args.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { fdBudget, parseOpenFilesLimit } from './fd-budget.js';
import type { FdBudget } from './fd-budget.js';
import { configWarnings, preflight } from './config/preflight.js';
import { handleSignals } from './lifecycle.js';
import { formatAddress } from './listener.js';
import { Proxy } from './proxy.js';
import { notifyReady } from './sd-notify.js';
import { jsonLogger } from './util/log.js';
import type { Logger } from './util/log.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The configuration reference, where this copy of poolside is (the package ships docs/). */
const docsPath = (): string => fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

function load(file: string): Config | null {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`poolside: ${err.message}\n`);
      return null;
    }
    process.stderr.write(`poolside: cannot read config ${file}: ${(err as Error).message}\n`);
    return null;
  }
}

/** This process's descriptor budget (fd-budget.ts); null where /proc cannot say (not Linux) or unlimited. */
function readFdBudget(config: Config): FdBudget | null {
  let limit: number | null;
  let open: number;
  try {
    limit = parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'));
    // readdir holds one descriptor of its own while it lists.
    open = readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
  return limit === null ? null : fdBudget(config, limit, open);
}

function reportFdBudget(config: Config, budget: FdBudget | null, log: Logger): void {
  if (budget === null) return;
  const fields = { open_files_limit: budget.limit, reserved: budget.reserve, max_clients: budget.capacity };
  log.info('open-file limit', fields);
  if (budget.capacity === 0) {
    log.error('the open-file limit leaves no room for clients: every client will be refused; raise it (ulimit -n, systemd LimitNOFILE=)', { ...fields, reason: 'fd_limit' });
    return;
  }
  for (const pool of config.pools) {
    if (pool.clients.max > budget.capacity) {
      log.warn(`clients.max of pool ${pool.name} is above what the open-file limit allows: clients past ${budget.capacity} are refused (TOO_MANY_CLIENTS); raise the limit (ulimit -n, systemd LimitNOFILE=) or lower clients.max`, {
        ...fields,
        pool: pool.name,
        clients_max: pool.clients.max,
        reason: 'fd_limit',
      });
    }
  }
}

async function run(file: string): Promise<void> {
  const config = load(file);
  if (config === null) {
    process.exitCode = 2;
    return;
  }
  const log = jsonLogger(config.log.level, process.stderr);
  const budget = readFdBudget(config);
  reportFdBudget(config, budget, log);
  for (const warning of configWarnings(config)) log.warn(warning, { reason: 'config_warning' });
  let proxy: Proxy;
  try {
    proxy = await Proxy.start(config, { log, maxClients: budget?.capacity });
  } catch (err) {
    log.error('poolside could not start', { error: (err as Error).message });
    process.exitCode = 1;
    return;
  }
  // Before 'poolside started': whoever waits for that line may signal at once.
  handleSignals(proxy, log);
  const servers = config.pools.flatMap((p) => p.servers.map((s) => `${p.name}:${s.name}`));
  log.info('poolside started', {
    version: version(),
    config: config.file,
    pools: config.pools.length,
    listeners: proxy.listeners.map((l) => formatAddress(l.bound)).join(' '),
    servers: servers.join(' '),
  });
  await notifyReady(log, { env: process.env, pid: process.pid });
}

const args = parseCommandLine(process.argv.slice(2));
switch (args.mode) {
  case 'help':
    process.stdout.write(`${usage(docsPath())}\n`);
    break;
  case 'version':
    process.stdout.write(`poolside ${version()}\n`);
    break;
  case 'usage_error':
    process.stderr.write(`poolside: ${args.message}\n${usage(docsPath())}\n`);
    process.exitCode = 2;
    break;
  case 'check': {
    const config = load(args.file);
    const problems = config === null ? [] : preflight(config);
    for (const problem of problems) process.stderr.write(`poolside: ${problem}\n`);
    for (const warning of config === null ? [] : configWarnings(config)) process.stderr.write(`poolside: warning: ${warning}\n`);
    if (config === null || problems.length > 0) process.exitCode = 2;
    else process.stdout.write(`${config.file}: OK (${config.pools.length} pool${config.pools.length === 1 ? '' : 's'})\n`);
    break;
  }
  case 'run':
    await run(args.file);
    break;
}
