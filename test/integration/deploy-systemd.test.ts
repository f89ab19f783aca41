/**
 * deploy/systemd/poolside.service, checked offline: `systemd-analyze verify` finds nothing to say
 * (unknown keys and bad values are warnings it prints with exit 0, so the output must be empty),
 * `systemd-analyze security --offline` rates it OK (exposure 2.0 or less), and the settings the
 * deployment relies on are there.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/servers.js';
import { runTool } from '../helpers/tools.js';

const UNIT = fileURLToPath(new URL('../../deploy/systemd/poolside.service', import.meta.url));

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * A copy of the unit that systemd-analyze can check on this machine: verify insists that the
 * ExecStart= binaries exist, so /usr/bin/node becomes the node running this test where they differ
 * (the script path after it is an argument, not checked).
 */
function checkableCopy(): string {
  const dir = tempDir('poolside-unit-');
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const copy = path.join(dir, 'poolside.service');
  fs.writeFileSync(copy, fs.readFileSync(UNIT, 'utf8').replaceAll('/usr/bin/node ', `${process.execPath} `));
  return copy;
}

/** `Key=value` lines of one section, in order (a key may repeat). */
function section(text: string, name: string): [string, string][] {
  const out: [string, string][] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) current = header[1];
    else if (current === name) {
      const eq = line.indexOf('=');
      out.push([line.slice(0, eq), line.slice(eq + 1)]);
    }
  }
  return out;
}

describe('deploy/systemd/poolside.service', () => {
  it('passes systemd-analyze verify without a single warning', async () => {
    const result = await runTool('systemd-analyze', 'systemd', ['verify', '--man=no', checkableCopy()]);
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });

  it('is rated OK by systemd-analyze security (exposure at most 2.0)', async () => {
    const result = await runTool('systemd-analyze', 'systemd', ['security', '--offline=true', '--threshold=20', '--no-pager', checkableCopy()]);
    expect(result.output).toMatch(/Overall exposure level for poolside\.service: (0\.\d|1\.\d|2\.0) /);
    expect(result.code, result.output).toBe(0);
  });

  it('has the readiness, reload, restart, user, socket directory and limits the docs promise', () => {
    const service = section(fs.readFileSync(UNIT, 'utf8'), 'Service');
    const get = (key: string): string[] => service.filter(([k]) => k === key).map(([, v]) => v);
    expect(get('Type')).toEqual(['notify']);
    expect(get('NotifyAccess')).toEqual(['all']);
    expect(get('ExecStart')).toEqual(['/usr/bin/node /opt/poolside/dist/main.js --config /etc/poolside/poolside.yaml']);
    expect(get('ExecReload')).toEqual(['/usr/bin/node /opt/poolside/dist/main.js --check-config /etc/poolside/poolside.yaml', '/bin/kill -HUP $MAINPID']);
    expect(get('KillSignal')).toEqual(['SIGTERM']);
    expect(get('Restart')).toEqual(['on-failure']);
    // poolside exits 2 for a configuration it refuses (src/main.ts): no restart loop on it.
    expect(get('RestartPreventExitStatus')).toEqual(['2']);
    expect(get('DynamicUser')).toEqual(['yes']);
    expect(get('RuntimeDirectory')).toEqual(['poolside']);
    expect(get('ProtectSystem')).toEqual(['strict']);
    expect(get('NoNewPrivileges')).toEqual(['yes']);
    expect(Number(get('LimitNOFILE')[0])).toBeGreaterThanOrEqual(65536);
    // V8 needs writable executable memory for its JIT.
    expect(get('MemoryDenyWriteExecute')).toEqual([]);
  });
});
