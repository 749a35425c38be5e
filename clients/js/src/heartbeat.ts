import { wsError, type ResilientWebSocketError } from './errors.js';
import type { Link } from './link.js';

/**
 * Times a link: a WebSocket ping where the socket can send one (Node's
 * `ws`), else `pingFrame` (the protocol's PING frame, when the server
 * offers them: a browser, Node's global WebSocket; PROTOCOL.md §5a).
 * Every `min(interval, timeout)` the link is counted dead (`onDead`) when
 * nothing arrived for `timeoutMs` (any frame counts: `link.lastInbound`).
 * The timers are the link's, cleared when it ends.
 *
 * Returns false when the link cannot be timed (no ping, no PING frames):
 * a half-open link is then noticed only when the socket reports it, which
 * the caller says (`noHeartbeat`). A zero interval turns heartbeats off.
 */
export function startHeartbeat(
  link: Link, intervalMs: number, timeoutMs: number,
  pingFrame: (() => void) | undefined, onDead: (error: ResilientWebSocketError) => void,
): boolean {
  const ws = link.ws;
  if (intervalMs <= 0) return true;
  let ping: () => void;
  if (typeof ws.ping === 'function') ping = () => ws.ping!();
  else if (pingFrame) ping = pingFrame;
  else return false;
  const timeout = timeoutMs || intervalMs * 2;
  const tick = () => {
    if (link.dead) return;
    if (Date.now() - link.lastInbound > timeout) {
      onDead(wsError('heartbeatTimeout', `nothing received for ${timeout} ms`));
      return;
    }
    try {
      ping();
    } catch {
      // the close event follows
    }
    link.timers.push(setTimeout(tick, Math.min(intervalMs, timeout)));
  };
  link.timers.push(setTimeout(tick, Math.min(intervalMs, timeout)));
  return true;
}
