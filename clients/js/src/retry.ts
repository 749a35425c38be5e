import { ResilientWebSocketError } from './errors.js';

/** What a retry policy is asked before each reconnect attempt. */
export interface RetryContext {
  /** The attempt about to be made, from 1. */
  attempt: number;
  /** Milliseconds since the connection was lost. */
  elapsedMs: number;
  /** Why the last attempt or connection failed. */
  error: ResilientWebSocketError;
}

/** Returns the delay before the next attempt in ms, or `undefined` to give up. */
export type RetryPolicy = (ctx: RetryContext) => number | undefined;

/**
 * Errors after which retrying cannot help: refused credentials (HTTP 401/403,
 * close 1008), a bad URL or configuration, a server that does not speak the
 * protocol, a peer that refuses our replay for good.
 */
export function isTerminal(error: ResilientWebSocketError): boolean {
  if (error.kind === 'negotiateRejected' && (error.status === 401 || error.status === 403)) return true;
  if (error.kind === 'closed' && error.closeCode === 1008) return true;
  return error.kind === 'invalidUrl' || error.kind === 'invalidConfig'
    || error.kind === 'protocolNotSupported' || error.kind === 'peerRefusesReplay'
    || error.kind === 'auth';
}

/** The ceiling of attempt `n`'s delay: `initial * 2^n`, capped at `max`. */
export function backoffCeiling(initialMs: number, maxMs: number, attempt: number): number {
  return Math.min(initialMs * 2 ** Math.min(attempt, 31), maxMs);
}

/**
 * The Rust client's `ExponentialBackoff`: full jitter, a delay drawn
 * uniformly from `[initial, min(initial * 2^attempt, max)]`; `undefined`
 * (give up) on a terminal error or past `maxAttempts` (0 = unlimited).
 */
export function exponentialBackoff(initialMs: number, maxMs: number, maxAttempts: number,
  random: () => number = Math.random): RetryPolicy {
  return (ctx) => {
    if (isTerminal(ctx.error)) return undefined;
    if (maxAttempts !== 0 && ctx.attempt > maxAttempts) return undefined;
    const low = Math.min(initialMs, maxMs);
    const high = Math.max(backoffCeiling(initialMs, maxMs, ctx.attempt), low);
    return low + random() * (high - low);
  };
}
