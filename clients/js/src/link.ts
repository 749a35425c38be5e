import type { ResilientWebSocketError } from './errors.js';
import type { MessageData } from './message-queue.js';
import { CloseCode } from './protocol.js';
import type { WebSocketLike } from './types.js';

/** The readyState of an open socket (WebSocket.OPEN; WebSocketLike carries no constants). */
export const OPEN = 1;

/** One socket and what belongs to it. */
export interface Link {
  ws: WebSocketLike;
  phase: 'opening' | 'hello' | 'up';
  dead: boolean;
  connectedAt: number;
  lastInbound: number;
  timers: ReturnType<typeof setTimeout>[];
  settle?: { resolve: () => void; reject: (e: ResilientWebSocketError) => void };
  closingByUs?: boolean;
  /** The highest seq written on this socket. */
  writtenSeq?: number;
  /** Node's ws socket is corked until the end of this turn (see cork). */
  corked?: boolean;
}

/** Writes a frame; a failed write is left to the close event that follows. */
export function writeFrame(link: Link, bytes: Uint8Array): void {
  if (link.dead || link.ws.readyState !== OPEN) return;
  cork(link);
  try {
    link.ws.send(bytes);
  } catch {
    // The close event follows; Stateful keeps the message in its window.
  }
}

/**
 * Node's `ws` only: holds the frames written in this turn of the event
 * loop and gives them to the OS in one write. Without it each small frame
 * is its own system call (they were 44% of the Stateful client's CPU in
 * the bench). Browsers batch on their own and have no such socket.
 */
function cork(link: Link): void {
  if (link.corked) return;
  const sock = (link.ws as { _socket?: { cork?: () => void; uncork?: () => void } })._socket;
  if (typeof sock?.cork !== 'function' || typeof sock.uncork !== 'function') return;
  link.corked = true;
  sock.cork();
  queueMicrotask(() => {
    link.corked = false;
    sock.uncork!();
  });
}

/** Stateless: writes one message; false when the socket cannot take it. */
export function writeMessage(link: Link, data: MessageData): boolean {
  if (link.dead || link.ws.readyState !== OPEN) return false;
  try {
    link.ws.send(data as string | Uint8Array);
    return true;
  } catch {
    return false;
  }
}

/**
 * Closes a socket we are done with, in the background: with `code` when
 * the peer should learn why, else at once.
 */
export function closeSocket(ws: WebSocketLike, code: number | undefined, message: string | undefined): void {
  try {
    // Never 1000 here: it would end the session on the server.
    if (code !== undefined && code !== CloseCode.Normal) {
      try {
        ws.close(code, message?.slice(0, 120) ?? '');
      } catch {
        ws.close(4000, '');
      }
      const t = setTimeout(() => ws.terminate?.(), 1000);
      (t as { unref?: () => void }).unref?.();
    } else if (ws.terminate) ws.terminate();
    else ws.close(4000, '');
  } catch {
    // nothing more to do
  }
}

/** What a socket received, as bytes: a view of the socket's own bytes where it can be (decodeFrame copies what it keeps). */
export function bytesOf(data: unknown): Uint8Array {
  return data instanceof ArrayBuffer ? new Uint8Array(data)
    : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(toArrayBuffer(data));
}

export function toArrayBuffer(data: unknown): ArrayBuffer {
  if (data instanceof ArrayBuffer) return data;
  if (ArrayBuffer.isView(data)) {
    return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  }
  if (Array.isArray(data)) {
    // ws with binaryType 'nodebuffer' fragments: join them.
    const parts = data as Uint8Array[];
    const total = parts.reduce((n, p) => n + p.byteLength, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out.buffer;
  }
  return new ArrayBuffer(0);
}
