/**
 * What the process signals mean, kept out of main.ts: SIGTERM and SIGINT drain (Proxy.drain:
 * shutdown.delay, then shutdown.timeout) and exit 0; a second one exits at once (1); SIGHUP
 * reloads the config file (Proxy.reloadFromFile, which logs the outcome).
 */
import type { ReloadOutcome } from './admin.js';
import type { Config } from './config/schema.js';
import type { DrainResult } from './proxy.js';
import type { Logger } from './util/log.js';

export interface SignalTarget {
  on(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', listener: () => void): unknown;
  exit(code: number): void;
}

/** The part of Proxy the signals drive. */
export interface SignalledProxy {
  readonly config: { readonly shutdown: Config['shutdown'] };
  readonly clients: number;
  drain(): Promise<DrainResult>;
  reloadFromFile(): Promise<ReloadOutcome>;
}

export function handleSignals(proxy: SignalledProxy, log: Logger, target: SignalTarget = process): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn('second signal: exiting now', { signal });
      target.exit(1);
      return;
    }
    stopping = true;
    const { delayMs, timeoutMs } = proxy.config.shutdown;
    log.info('shutting down: /readyz answers 503', { signal, delay_ms: delayMs, timeout_ms: timeoutMs, clients: proxy.clients });
    void proxy.drain().then(({ cutOff }) => {
      log.info('poolside stopped', { clients_cut_off: cutOff });
      target.exit(0);
    });
  };
  target.on('SIGTERM', () => stop('SIGTERM'));
  target.on('SIGINT', () => stop('SIGINT'));
  target.on('SIGHUP', () => {
    if (stopping) {
      log.warn('SIGHUP ignored: poolside is shutting down', { reason: 'reload_failed' });
      return;
    }
    void proxy.reloadFromFile();
  });
}
