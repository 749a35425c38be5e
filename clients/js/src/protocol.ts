/**
 * The `rws.reliable.v1` wire protocol (docs/PROTOCOL.md): frames, varints,
 * the negotiate exchange and the receiving side's sequence rules (§5), as
 * plain code without sockets so it is unit-tested alone.
 */
import { ResilientWebSocketError, wsError } from './errors.js';

export const SUBPROTOCOL = 'rws.reliable.v1';

export const FrameType = {
  Hello: 0x01,
  Welcome: 0x02,
  DataText: 0x03,
  DataBinary: 0x04,
  Ack: 0x05,
  /** Client -> server keep-alive (PROTOCOL.md §5a), only where negotiate offered `ping_frames`. */
  Ping: 0x06,
  /** Server -> client, the PING's nonce. */
  Pong: 0x07,
} as const;

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Abnormal: 1006,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  SessionGone: 4001,
  Replaced: 4002,
} as const;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** LEB128 of a non-negative safe integer. */
export function encodeVarint(value: number, out: number[] = []): number[] {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a varint: ${value}`);
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** Reads a varint at `offset`: `[value, next offset]`; throws a protocol error when malformed. */
export function decodeVarint(bytes: Uint8Array, offset: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = bytes[offset + i];
    if (b === undefined) throw malformed('truncated varint');
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw malformed('varint beyond 2^53');
      return [value, offset + i + 1];
    }
    scale *= 0x80;
  }
  throw malformed('varint over 10 bytes');
}

function malformed(what: string): ResilientWebSocketError {
  return wsError('protocol', `malformed frame: ${what}`, { closeCode: CloseCode.ProtocolError });
}

export function encodeHello(connectionId: string, reconnectToken: string, lastReceived: number, firstSeq: number): Uint8Array {
  const id = encoder.encode(connectionId);
  const tok = encoder.encode(reconnectToken);
  if (id.length > 255 || tok.length > 255) throw wsError('protocol', 'connection id or reconnect token over 255 bytes');
  const out: number[] = [FrameType.Hello, id.length, ...id, tok.length, ...tok];
  encodeVarint(lastReceived, out);
  encodeVarint(firstSeq, out);
  return Uint8Array.from(out);
}

export function encodeAck(seq: number): Uint8Array {
  return Uint8Array.from(encodeVarint(seq, [FrameType.Ack]));
}

/** A PING frame (§5a); the nonce comes back in the PONG. */
export function encodePing(nonce: number): Uint8Array {
  return Uint8Array.from(encodeVarint(nonce, [FrameType.Ping]));
}

/**
 * A DATA frame straight from the message (the hot path): text is encoded
 * into the frame itself, no intermediate copy. `header` is where the
 * payload starts. `utf8Bytes` is the text's UTF-8 length when known.
 */
export function encodeDataFrame(seq: number, data: string | Uint8Array, utf8Bytes?: number): { frame: Uint8Array; header: number } {
  const text = typeof data === 'string';
  let header = 2;
  for (let v = seq; v >= 0x80; v = Math.floor(v / 0x80)) header++;
  const len = text ? (utf8Bytes ?? utf8Length(data)) : data.length;
  const frame = new Uint8Array(header + len);
  frame[0] = text ? FrameType.DataText : FrameType.DataBinary;
  let v = seq;
  let at = 1;
  while (v >= 0x80) {
    frame[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  frame[at] = v;
  if (text) encoder.encodeInto(data, frame.subarray(header));
  else frame.set(data, header);
  return { frame, header };
}

/** A DATA frame; `payload` is the text's UTF-8 or the bytes. */
export function encodeData(seq: number, payload: Uint8Array, text: boolean): Uint8Array {
  const header = encodeVarint(seq, [text ? FrameType.DataText : FrameType.DataBinary]);
  const out = new Uint8Array(header.length + payload.length);
  out.set(header, 0);
  out.set(payload, header.length);
  return out;
}

export type Frame =
  | { type: 'welcome'; resumed: boolean; lastReceived: number }
  | { type: 'data'; seq: number; text: string }
  | { type: 'data'; seq: number; binary: ArrayBuffer }
  | { type: 'ack'; seq: number }
  | { type: 'ping'; nonce: number }
  | { type: 'pong'; nonce: number }
  | { type: 'hello'; connectionId: string; reconnectToken: string; lastReceived: number; firstSeq: number };

/** Parses one binary message; throws a protocol error (close 1002) when malformed. */
export function decodeFrame(bytes: Uint8Array): Frame {
  const type = bytes[0];
  switch (type) {
    case FrameType.Welcome: {
      const flags = bytes[1];
      if (flags === undefined) throw malformed('truncated WELCOME');
      const [lastReceived] = decodeVarint(bytes, 2);
      return { type: 'welcome', resumed: (flags & 1) === 1, lastReceived };
    }
    case FrameType.DataText: {
      const [seq, at] = decodeVarint(bytes, 1);
      let text: string;
      try {
        text = strictDecoder.decode(bytes.subarray(at));
      } catch {
        throw malformed('invalid UTF-8 in a text DATA');
      }
      return { type: 'data', seq, text };
    }
    case FrameType.DataBinary: {
      const [seq, at] = decodeVarint(bytes, 1);
      const body = bytes.subarray(at);
      const binary = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer;
      return { type: 'data', seq, binary };
    }
    case FrameType.Ack: {
      const [seq] = decodeVarint(bytes, 1);
      return { type: 'ack', seq };
    }
    case FrameType.Ping:
    case FrameType.Pong: {
      const [nonce] = decodeVarint(bytes, 1);
      return { type: type === FrameType.Ping ? 'ping' : 'pong', nonce };
    }
    case FrameType.Hello: {
      let at = 1;
      const idLen = bytes[at++];
      if (idLen === undefined || at + idLen > bytes.length) throw malformed('truncated HELLO');
      const connectionId = strictDecoder.decode(bytes.subarray(at, at + idLen));
      at += idLen;
      const tokLen = bytes[at++];
      if (tokLen === undefined || at + tokLen > bytes.length) throw malformed('truncated HELLO');
      const reconnectToken = strictDecoder.decode(bytes.subarray(at, at + tokLen));
      at += tokLen;
      const [lastReceived, next] = decodeVarint(bytes, at);
      const [firstSeq] = decodeVarint(bytes, next);
      return { type: 'hello', connectionId, reconnectToken, lastReceived, firstSeq };
    }
    default:
      throw malformed(type === undefined ? 'empty message' : `unknown frame type 0x${type.toString(16)}`);
  }
}

/** The socket URL's negotiate endpoint: `ws://h/ws` -> `http://h/ws/negotiate` (query kept off). */
export function negotiateUrl(socketUrl: string): string {
  const u = new URL(socketUrl);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  else if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw wsError('invalidUrl', `${u.protocol} is not a WebSocket URL scheme`);
  }
  u.pathname = u.pathname.replace(/\/+$/, '') + '/negotiate';
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** The session negotiate gives (PROTOCOL.md §1). */
export interface SessionInfo {
  connectionId: string;
  reconnectToken: string;
  socketUrl: string;
  resumeWindowMs: number;
  maxMessageSize: number;
  maxUnackedBytes: number;
  ackIntervalMs: number;
  ackThreshold: number;
  /** The server answers PING frames (negotiate's `ping_frames`, §5a); absent means false. */
  pingFrames: boolean;
}

/** Checks and reads a negotiate response body. */
export function parseNegotiateResponse(body: unknown, requestedUrl: string, allowRedirect: boolean): SessionInfo {
  const bad = (m: string) => wsError('negotiate', `negotiate response: ${m}`);
  if (typeof body !== 'object' || body === null) throw bad('not a JSON object');
  const b = body as Record<string, unknown>;
  if (b.protocol !== SUBPROTOCOL) throw wsError('protocolNotSupported', `negotiate answered protocol ${JSON.stringify(b.protocol)}, not ${SUBPROTOCOL}`);
  if (b.version !== 1) throw wsError('protocolNotSupported', `negotiate answered version ${JSON.stringify(b.version)}`);
  const str = (k: string) => {
    const v = b[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > 255) throw bad(`${k} missing or invalid`);
    return v;
  };
  const num = (k: string, min: number) => {
    const v = b[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`${k} missing or invalid`);
    return v;
  };
  let socketUrl = requestedUrl;
  if (b.url !== undefined && b.url !== null) {
    if (typeof b.url !== 'string') throw bad('url is not a string');
    if (!allowRedirect) checkSameOrigin(requestedUrl, b.url);
    socketUrl = b.url;
  }
  return {
    connectionId: str('connection_id'),
    reconnectToken: str('reconnect_token'),
    socketUrl,
    resumeWindowMs: num('resume_window_ms', 0),
    maxMessageSize: num('max_message_size', 1),
    maxUnackedBytes: num('max_unacked_bytes', 1),
    ackIntervalMs: num('ack_interval_ms', 0),
    ackThreshold: num('ack_threshold', 1),
    pingFrames: b.ping_frames === true,
  };
}

function checkSameOrigin(from: string, to: string): void {
  const refuse = (why: string) => wsError('negotiate',
    `the negotiate response moves the socket ${why}; not followed (set allowNegotiateRedirect to allow it)`);
  const parse = (s: string) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return undefined;
    }
    const secure = u.protocol === 'wss:' || u.protocol === 'https:';
    if (!secure && u.protocol !== 'ws:' && u.protocol !== 'http:') return undefined;
    return { secure, host: u.hostname.toLowerCase(), port: u.port ? Number(u.port) : secure ? 443 : 80 };
  };
  const a = parse(from);
  const b = parse(to);
  if (!a || !b) throw refuse('to a URL that is not ws:// or wss://');
  if (a.secure && !b.secure) throw refuse('from wss to ws');
  if (a.host !== b.host) throw refuse('to another host');
  const upgradeDefaultPorts = !a.secure && b.secure && a.port === 80 && b.port === 443;
  if (a.port !== b.port && !upgradeDefaultPorts) throw refuse('to another port');
}

/** What to do with a DATA frame. */
export type Verdict = 'deliver' | 'duplicate';

/**
 * The receiving side's sequence rules (§5) and the session's bookkeeping,
 * as the Rust client's `ReliableState`.
 */
export class ReliableState {
  /** The highest server seq delivered to the application. */
  delivered = 0;
  /** The highest client seq written to any socket of this session. */
  highestWritten = 0;
  private lastOnSocket = 0;
  private unacked = 0;

  /** A new socket: the per-socket rules start again. */
  newSocket(): void {
    this.lastOnSocket = 0;
    this.unacked = 0;
  }

  /** The session is gone: the next one numbers its messages to us from 1 again. */
  sessionGone(): void {
    this.delivered = 0;
  }

  /** Applies §5 to a DATA frame's seq; throws a protocol error (1002) on a gap or a backwards seq. */
  onData(seq: number): Verdict {
    if (seq <= this.lastOnSocket) throw violation('data sequence went backwards');
    this.lastOnSocket = seq;
    if (seq <= this.delivered) {
      this.unacked++;
      return 'duplicate';
    }
    if (seq === this.delivered + 1) {
      this.unacked++;
      this.delivered = seq;
      return 'deliver';
    }
    throw violation('gap in data sequence');
  }

  /** Checks an ACK from the peer. */
  onAck(seq: number): void {
    if (seq > this.highestWritten) throw violation('ack for a message never sent');
  }

  noteWritten(seq: number): void {
    if (seq > this.highestWritten) this.highestWritten = seq;
  }

  /** Whether an ack must go out now (the threshold is reached). */
  ackNow(threshold: number): boolean {
    return this.unacked >= Math.max(threshold, 1);
  }

  ackPending(): boolean {
    return this.unacked > 0;
  }

  /** An ACK is being sent: returns its seq. */
  takeAck(): number {
    this.unacked = 0;
    return this.delivered;
  }
}

function violation(message: string): ResilientWebSocketError {
  return wsError('protocol', message, { closeCode: CloseCode.ProtocolError });
}

/** The advice in a 1012 close reason, capped at 10 minutes each (§6). */
export function shutdownAdviceDelay(reason: string, random: () => number = Math.random): number | undefined {
  try {
    const advice = JSON.parse(reason) as { reconnect_after_ms?: unknown; spread_ms?: unknown };
    const after = advice.reconnect_after_ms;
    const spread = advice.spread_ms ?? 0;
    if (typeof after !== 'number' || typeof spread !== 'number' || after < 0 || spread < 0) return undefined;
    const cap = 600_000;
    return Math.min(after, cap) + Math.floor(random() * (Math.min(spread, cap) + 1));
  } catch {
    return undefined;
  }
}

/** UTF-8 byte length of a string without encoding it twice for ASCII-only text. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

export function utf8Decode(b: Uint8Array): string {
  return strictDecoder.decode(b);
}

export function utf8Encode(s: string): Uint8Array {
  return encoder.encode(s);
}
