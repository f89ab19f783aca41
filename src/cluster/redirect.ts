/**
 * The error replies by which a cluster node says a command did not run there: `-MOVED slot
 * host:port` (the slot is another node's), `-ASK slot host:port` (this one command, after ASKING,
 * on the node importing the slot), `-TRYAGAIN …` (a multi-key command on a slot being migrated,
 * its keys split between the two nodes) and `-CLUSTERDOWN …` (the cluster cannot serve now).
 * None ran the command, so any of them may be re-sent, idempotent or not.
 */

export type Redirection =
  | { kind: 'moved' | 'ask'; slot: number; host: string; port: number }
  | { kind: 'tryagain' | 'clusterdown' };

/** Redis's own reply to a multi-key command whose keys are in different hash slots. */
export const CROSSSLOT_REPLY = Buffer.from("-CROSSSLOT Keys in request don't hash to the same slot\r\n");

/** Sent right before a command that got ASK, on the same connection of the importing node. */
export const ASKING_REQUEST = Buffer.from('*1\r\n$6\r\nASKING\r\n');

const DASH = 0x2d;

function startsWith(bytes: Buffer, text: string): boolean {
  if (bytes.length < text.length + 1 || bytes[0] !== DASH) return false;
  for (let i = 0; i < text.length; i++) if (bytes[i + 1] !== text.charCodeAt(i)) return false;
  return true;
}

/** The redirection a reply is, or null (any other reply: nothing is allocated for those). */
export function readRedirection(bytes: Buffer): Redirection | null {
  if (bytes.length < 8 || bytes[0] !== DASH) return null;
  if (startsWith(bytes, 'TRYAGAIN')) return { kind: 'tryagain' };
  if (startsWith(bytes, 'CLUSTERDOWN')) return { kind: 'clusterdown' };
  const moved = startsWith(bytes, 'MOVED ');
  if (!moved && !startsWith(bytes, 'ASK ')) return null;
  const end = bytes.indexOf(0x0d);
  const words = bytes.toString('latin1', 1, end < 0 ? bytes.length : end).split(' ');
  if (words.length < 3) return null;
  const slot = Number(words[1]);
  const address = words[2];
  const colon = address.lastIndexOf(':');
  if (!Number.isInteger(slot) || colon < 0) return null;
  // `[::1]:7000`, or `:7000` when the node does not know its own IP (the address we asked then).
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return null;
  return { kind: moved ? 'moved' : 'ask', slot, host, port };
}
