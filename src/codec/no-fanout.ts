import type { Codec } from './registry.js';

/**
 * For a codec whose requests have no `spread` (framed, tcp): the session never splits or merges
 * them, so reaching these is poolside's own bug, reported as an internal error.
 */
export const NO_FANOUT: Pick<Codec, 'splitRequest' | 'mergeReplies'> = {
  splitRequest: (spec) => {
    throw new Error(`${spec.name || 'a request'} of this protocol is never split`);
  },
  mergeReplies: (spec) => {
    throw new Error(`${spec.name || 'a request'} of this protocol is never merged`);
  },
};
