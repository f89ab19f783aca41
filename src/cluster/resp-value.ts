/**
 * A whole RESP2/RESP3 reply read into values, for the few replies poolside reads itself
 * (CLUSTER SHARDS, CLUSTER SLOTS, CLUSTER INFO). Not on the request path: the proxy forwards
 * replies as bytes and never parses them this way.
 */

export type RespValue = string | number | null | RespError | RespValue[];

export class RespError {
  constructor(readonly message: string) {}
}

/** Parses one complete reply; throws on anything malformed or truncated. */
export function parseResp(bytes: Buffer): RespValue {
  const reader = { bytes, at: 0 };
  const value = readValue(reader);
  if (reader.at !== bytes.length) throw new Error(`trailing bytes after a reply (${bytes.length - reader.at})`);
  return value;
}

interface Reader {
  bytes: Buffer;
  at: number;
}

function line(reader: Reader): string {
  const end = reader.bytes.indexOf('\r\n', reader.at, 'latin1');
  if (end < 0) throw new Error('truncated reply');
  const text = reader.bytes.toString('utf8', reader.at, end);
  reader.at = end + 2;
  return text;
}

function readValue(reader: Reader): RespValue {
  if (reader.at >= reader.bytes.length) throw new Error('truncated reply');
  const type = String.fromCharCode(reader.bytes[reader.at++]);
  const head = line(reader);
  switch (type) {
    case '+':
      return head;
    case '-':
    case '!':
      return new RespError(type === '!' ? blob(reader, Number(head)) : head);
    case ':':
    case ',':
      return Number(head);
    case '#':
      return head === 't' ? 1 : 0;
    case '_':
      return null;
    case '$':
    case '=':
    case '(':
      if (type === '(') return head;
      return Number(head) < 0 ? null : blob(reader, Number(head));
    case '*':
    case '~':
    case '>': {
      const count = Number(head);
      if (count < 0) return null;
      const items: RespValue[] = [];
      for (let i = 0; i < count; i++) items.push(readValue(reader));
      return items;
    }
    case '%':
    case '|': {
      // A map reads as RESP2 sends it: key, value, key, value.
      const count = Number(head);
      const items: RespValue[] = [];
      for (let i = 0; i < count * 2; i++) items.push(readValue(reader));
      if (type === '|') return readValue(reader); // attributes precede the reply they annotate
      return items;
    }
    default:
      throw new Error(`unknown RESP type byte ${JSON.stringify(type)}`);
  }
}

function blob(reader: Reader, length: number): string {
  if (!Number.isInteger(length) || reader.at + length + 2 > reader.bytes.length) throw new Error('truncated reply');
  const text = reader.bytes.toString('utf8', reader.at, reader.at + length);
  reader.at += length + 2;
  return text;
}

/** A flat key, value, … list (RESP2 map) read as a Map; non-string keys are skipped. */
export function pairs(value: RespValue): Map<string, RespValue> {
  const map = new Map<string, RespValue>();
  if (!Array.isArray(value)) return map;
  for (let i = 0; i + 1 < value.length; i += 2) {
    const key = value[i];
    if (typeof key === 'string') map.set(key, value[i + 1]);
  }
  return map;
}
