/** What went wrong, as a stable string (the Rust client's `Error` variants in camelCase). */
export type ErrorKind =
  | 'notConnected'
  | 'bufferFull'
  | 'messageTooLarge'
  | 'negotiateRejected'
  | 'negotiate'
  | 'protocolNotSupported'
  | 'connectTimeout'
  | 'connectionLost'
  | 'closed'
  | 'sessionGone'
  | 'protocol'
  | 'peerRefusesReplay'
  | 'heartbeatTimeout'
  | 'noHeartbeat'
  | 'invalidConfig'
  | 'invalidUrl'
  | 'auth'
  | 'shutdown';

/** Every error the client reports or rejects with. */
export class ResilientWebSocketError extends Error {
  readonly kind: ErrorKind;
  /** HTTP status, for `negotiateRejected`. */
  readonly status?: number;
  /** WebSocket close code, for `closed`, `protocol` and `peerRefusesReplay`. */
  readonly closeCode?: number;

  constructor(kind: ErrorKind, message: string, extra: { status?: number; closeCode?: number } = {}) {
    super(message);
    this.name = 'ResilientWebSocketError';
    this.kind = kind;
    if (extra.status !== undefined) this.status = extra.status;
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
  }
}

export function wsError(kind: ErrorKind, message: string, extra: { status?: number; closeCode?: number } = {}): ResilientWebSocketError {
  return new ResilientWebSocketError(kind, message, extra);
}

/** Turns anything thrown into a `ResilientWebSocketError`. */
export function asWsError(e: unknown, kind: ErrorKind = 'connectionLost'): ResilientWebSocketError {
  if (e instanceof ResilientWebSocketError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ResilientWebSocketError(kind, message);
}
