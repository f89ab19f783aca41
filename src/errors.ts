/**
 * Why a request failed, as the client and the metrics see it. A closed set: each reason is a
 * label value of `poolside_request_failures_total{reason}` and the second word of the native
 * error the client receives (`-ERR poolside POOL_TIMEOUT …`).
 */
export const FAILURE_REASONS = [
  'POOL_TIMEOUT',
  'QUEUE_FULL',
  'NO_HEALTHY_SERVER',
  'SERVER_ERROR',
  'REQUEST_TIMEOUT',
  'PROTOCOL_ERROR',
  'UNSUPPORTED_COMMAND',
  'DENIED_COMMAND',
  'CROSS_SERVER',
  'DRAINING',
  'TOO_MANY_CLIENTS',
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/** A request that poolside answers itself, with an error in the client's protocol. */
export class RequestFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'RequestFailure';
  }
}

export function failureIndex(reason: FailureReason): number {
  return FAILURE_REASONS.indexOf(reason);
}
