/**
 * Checks `--check-config` makes beyond the file itself: what starting would need from this host.
 * The owner and group of unix sockets are already resolved by load.ts (a reload checks them too).
 */
import fs from 'node:fs';
import path from 'node:path';
import { PROBED_PROTOCOLS } from './probe.js';
import type { Config } from './schema.js';

/** One line per problem; empty when starting could bind every unix listener. */
export function preflight(config: Config): string[] {
  const problems: string[] = [];
  for (const pool of config.pools) {
    for (const address of pool.listen) {
      if (address.kind !== 'unix') continue;
      const dir = path.dirname(address.path);
      const where = `pools.${pool.name}.listen unix:${address.path}`;
      let stat: fs.Stats;
      try {
        stat = fs.statSync(dir);
      } catch {
        problems.push(`${where}: the directory ${dir} does not exist (systemd: RuntimeDirectory=; Kubernetes: an emptyDir mount)`);
        continue;
      }
      if (!stat.isDirectory()) {
        problems.push(`${where}: ${dir} is not a directory`);
        continue;
      }
      try {
        fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
      } catch {
        problems.push(`${where}: the directory ${dir} is not writable by this user (uid ${process.getuid?.() ?? '?'})`);
      }
    }
  }
  return problems;
}

/**
 * What is allowed but probably not meant, one line each (printed by --check-config, logged at start;
 * never a reason to refuse the config): a framed or tcp pool with no configured heartbeat cannot
 * tell a frozen server from an idle one.
 */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  for (const pool of config.pools) {
    if (PROBED_PROTOCOLS.has(pool.protocol) && pool.heartbeat.probe === null) {
      warnings.push(
        `pools.${pool.name}.heartbeat: no heartbeat configured (heartbeat.send, heartbeat.expect): liveness is TCP keepalive and eviction on error only, so a frozen server (SIGSTOP, a deadlocked process) that keeps its sockets open will not be detected`,
      );
    }
  }
  return warnings;
}
