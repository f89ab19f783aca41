/**
 * docs/memcached-commands.md is the user-facing copy of the memcached command table
 * (src/codec/memcached/commands.ts): every command on the page is classified as the page says, with
 * the spread it says, and every command in the table is on the page.
 */
import fs from 'node:fs';
import { expect, it } from 'vitest';
import { commandTable } from '../../src/codec/memcached/commands.js';
import type { McCommand } from '../../src/codec/memcached/commands.js';

/** How the page names what poolside does with a command. */
function how(command: McCommand): string {
  if (command.spec.use === 'unsupported') return 'refused';
  if (command.spec.use === 'quit') return 'quit';
  if (command.kind === 'mn') return 'answered by poolside';
  return command.spec.use;
}

it('docs/memcached-commands.md lists every command with the table\'s treatment and spread', () => {
  const doc = fs.readFileSync(new URL('../../docs/memcached-commands.md', import.meta.url), 'utf8');
  const documented = new Map<string, { how: string; spread: string }>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 5 || cells[1] === 'how' || cells[1].startsWith('-')) continue;
    for (const [, name] of cells[3].matchAll(/`([a-z_]+)`/g)) documented.set(name, { how: cells[1], spread: cells[2] });
  }
  const table = new Map<string, { how: string; spread: string }>();
  for (const [name, command] of commandTable()) table.set(name, { how: how(command), spread: command.spread });
  expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(table));
});
