import type { PersistentStore } from './persistence.js';
import type { ConnectionState, ReconnectMode } from './enums.js';
import type { ResilientWebSocketError } from './errors.js';
import type { DroppedMessage, OverflowPolicy } from './message-queue.js';
import type { RetryPolicy } from './retry.js';

/** What the client needs of a WebSocket: the browser API (Node's `ws` and undici fit too). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  readonly bufferedAmount: number;
  binaryType: string;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  /** Node's `ws` only: used for heartbeats where available. */
  ping?: () => void;
  terminate?: () => void;
  on?: (event: string, listener: (...args: any[]) => void) => unknown;
}

/**
 * A WebSocket constructor. The third argument (`{ headers }`) is honoured by
 * Node's `ws` and ignored by browsers.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => WebSocketLike;

export interface StateChangeEvent {
  previousState: ConnectionState;
  currentState: ConnectionState;
}

export interface MessageEvent {
  /** Text as a string, binary as an ArrayBuffer. */
  data: string | ArrayBuffer;
  /** The server's seq (Stateful mode only). */
  seq?: number;
}

export interface ReconnectEvent {
  /** The attempt about to be made, from 1. */
  attempt: number;
  /** How long the client waits before it. */
  delayMs: number;
  /** Why the connection or the last attempt failed. */
  reason: ResilientWebSocketError;
}

export interface ReconnectedEvent {
  attempts: number;
  downtimeMs: number;
}

export interface SessionLostEvent {
  connectionId: string;
  /** Unacknowledged messages the next session gets again, with their original seqs. */
  resending: number;
}

export interface CloseEvent {
  code?: number;
  reason: string;
  byUs: boolean;
  error?: ResilientWebSocketError;
}

export interface TransportCallbacks {
  onStateChange?: (event: StateChangeEvent) => void;
  onMessage?: (event: MessageEvent) => void;
  onError?: (error: ResilientWebSocketError) => void;
  /** Each time a connection is up (after WELCOME in Stateful mode). */
  onConnected?: () => void;
  /** Before each reconnect attempt's wait. */
  onReconnect?: (event: ReconnectEvent) => void;
  onReconnected?: (event: ReconnectedEvent) => void;
  /** Stateful: the server lost the session; the client starts a new one (PROTOCOL.md §7). */
  onSessionLost?: (event: SessionLostEvent) => void;
  /** A buffered message dropped by the overflow policy or its TTL. */
  onMessageDropped?: (event: DroppedMessage) => void;
  /** A socket ended. */
  onClose?: (event: CloseEvent) => void;
}

export interface NegotiateRequest {
  /** The URL the client would connect to. */
  url: string;
  authToken?: string;
}

/** What a custom `negotiate` may return; anything missing keeps the current value. */
export interface NegotiateResult {
  url?: string;
  /** The token to use from here on (SignalR's name). */
  accessToken?: string | null;
  authToken?: string | null;
}

export interface WebSocketTransportOptions {
  /** Reconnect attempts before giving up; 0 = unlimited (default). */
  maxReconnectAttempts?: number;
  /** Default 1000 ms. */
  reconnectInitialDelayMs?: number;
  /** Default 30000 ms. */
  reconnectMaxDelayMs?: number;
  /** Default `Stateless` (`WebSocketConnectionHandler`: `Stateful`). */
  reconnectMode?: ReconnectMode;
  /** 0 = off; default 30000 ms. Needs a socket with `ping()` (Node's `ws`). */
  heartbeatIntervalMs?: number;
  /** Silence before the link is declared dead; default twice the interval. */
  heartbeatTimeoutMs?: number;
  /** Negotiate, open and (Stateful) WELCOME together; default 10000 ms. */
  connectionTimeoutMs?: number;
  /** How long a graceful close waits; default 5000 ms. */
  closeTimeoutMs?: number;
  /** Default 1000. */
  maxBufferedMessages?: number;
  /** Default true. */
  enableMessageBuffering?: boolean;
  /** What a full outbox does: default `'reject'`. */
  overflowPolicy?: OverflowPolicy;
  /** How long a message may wait in the outbox (not once sent in Stateful mode). */
  messageTtlMs?: number;
  /** How long a connection must stay up before the attempt counter starts again; default 5000 ms. */
  minUptimeMs?: number;
  /** A custom retry policy instead of full-jitter exponential backoff. */
  retryPolicy?: RetryPolicy;
  /** Stateless: the largest message the server accepts, if known. */
  maxOutboundMessageSize?: number;
  /** The largest message this client accepts (told to the server in negotiate); default 16 MiB. */
  maxMessageSize?: number;
  /** Follow a negotiate `url` to another host, port or down from wss; default false. */
  allowNegotiateRedirect?: boolean;
  /**
   * The query parameter that carries the auth token on the socket URL
   * (browsers cannot set headers on a WebSocket); default `'access_token'`.
   * `null`: the token goes in an `Authorization` header instead, which only
   * Node's `ws` can send.
   */
  authTokenQueryParam?: string | null;
  /**
   * Keep the outbox, the unacknowledged messages and the session across a
   * page reload or process restart: in IndexedDB in browsers (record
   * `storeKey`), in the file `storePath` in Node.js, or in `store`. A new
   * client with the same store resumes the session within its resume window
   * (PROTOCOL.md §4), or sends the unacknowledged messages to a new one with
   * their original seqs (§7). Default false.
   */
  persistent?: boolean;
  /** Node.js: the file `persistent: true` keeps the state in. */
  storePath?: string;
  /** Browsers: the IndexedDB record `persistent: true` uses; default `'resilient-ws:' + url`. */
  storeKey?: string;
  /** Any other place for the state (`load`/`save` of one JSON-able value). */
  store?: PersistentStore;
}

export interface ConnectionHandlerOptions extends WebSocketTransportOptions {
  /** Runs before every attempt; may change the URL and the token. */
  negotiate?: (request: NegotiateRequest) => Promise<NegotiateResult | void | undefined> | NegotiateResult | void | undefined;
  /** Called before every attempt; the token goes to negotiate as `Authorization: Bearer`. */
  getAuthToken?: () => Promise<string | null | undefined> | string | null | undefined;
  /** Headers for the negotiate request (and for the socket where the WebSocket API allows). */
  headers?: Record<string, string>;
  /** Subprotocols offered (Stateless mode; Stateful always offers `rws.reliable.v1`). */
  protocols?: string[];
}
