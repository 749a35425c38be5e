import { ReconnectMode } from './enums.js';
import { wsError } from './errors.js';
import { exponentialBackoff, type RetryPolicy } from './retry.js';
import type { ConnectionHandlerOptions } from './types.js';

/** The options with every default filled in: what the transport reads. */
export type Resolved = Required<Omit<ConnectionHandlerOptions,
  'negotiate' | 'getAuthToken' | 'retryPolicy' | 'messageTtlMs' | 'maxOutboundMessageSize' | 'heartbeatTimeoutMs' | 'authTokenQueryParam'
  | 'store' | 'storePath' | 'storeKey'>>
  & Pick<ConnectionHandlerOptions, 'negotiate' | 'getAuthToken' | 'messageTtlMs' | 'maxOutboundMessageSize' | 'store' | 'storePath' | 'storeKey'>
  & { heartbeatTimeoutMs: number; retryPolicy: RetryPolicy; authTokenQueryParam: string | null };

/** The design's option defaults (and the Rust client's for what it added). */
export function resolveOptions(o: ConnectionHandlerOptions = {}): Resolved {
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? 30_000;
  const r: Resolved = {
    maxReconnectAttempts: o.maxReconnectAttempts ?? 0,
    reconnectInitialDelayMs: o.reconnectInitialDelayMs ?? 1000,
    reconnectMaxDelayMs: o.reconnectMaxDelayMs ?? 30_000,
    reconnectMode: o.reconnectMode ?? ReconnectMode.Stateless,
    heartbeatIntervalMs,
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? heartbeatIntervalMs * 2,
    connectionTimeoutMs: o.connectionTimeoutMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 5000,
    maxBufferedMessages: o.maxBufferedMessages ?? 1000,
    enableMessageBuffering: o.enableMessageBuffering ?? true,
    overflowPolicy: o.overflowPolicy ?? 'reject',
    minUptimeMs: o.minUptimeMs ?? 5000,
    maxMessageSize: o.maxMessageSize ?? 16 * 1024 * 1024,
    allowNegotiateRedirect: o.allowNegotiateRedirect ?? false,
    authTokenQueryParam: o.authTokenQueryParam === undefined ? 'access_token' : o.authTokenQueryParam,
    persistent: o.persistent ?? false,
    headers: o.headers ?? {},
    protocols: o.protocols ?? [],
    retryPolicy: o.retryPolicy ?? exponentialBackoff(
      o.reconnectInitialDelayMs ?? 1000, o.reconnectMaxDelayMs ?? 30_000, o.maxReconnectAttempts ?? 0),
    negotiate: o.negotiate,
    getAuthToken: o.getAuthToken,
    messageTtlMs: o.messageTtlMs,
    maxOutboundMessageSize: o.maxOutboundMessageSize,
    store: o.store,
    storePath: o.storePath,
    storeKey: o.storeKey,
  };
  const bad = (m: string) => { throw wsError('invalidConfig', m); };
  if (!(r.connectionTimeoutMs > 0)) bad('connectionTimeoutMs must be greater than zero');
  if (!(r.closeTimeoutMs > 0)) bad('closeTimeoutMs must be greater than zero');
  if (r.reconnectInitialDelayMs > r.reconnectMaxDelayMs) bad('reconnectInitialDelayMs must not exceed reconnectMaxDelayMs');
  if (r.heartbeatIntervalMs < 0 || !(r.heartbeatTimeoutMs >= 0)) bad('heartbeat durations must not be negative');
  if (r.enableMessageBuffering && r.maxBufferedMessages < 1) bad('maxBufferedMessages must be greater than zero when buffering is on');
  if (r.persistent && !r.store && r.storePath === undefined && !(globalThis as { indexedDB?: unknown }).indexedDB) {
    bad('persistent: true needs storePath (Node.js), IndexedDB (browsers) or a store');
  }
  if (r.maxMessageSize < 1) bad('maxMessageSize must be greater than zero');
  if (r.authTokenQueryParam !== null && !/^[A-Za-z0-9._~-]+$/.test(r.authTokenQueryParam)) {
    bad('authTokenQueryParam must be non-empty and URL-safe');
  }
  if (!Object.values(ReconnectMode).includes(r.reconnectMode)) bad(`unknown reconnectMode ${String(r.reconnectMode)}`);
  return r;
}
