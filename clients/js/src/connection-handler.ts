import { ReconnectMode } from './enums.js';
import { wsError } from './errors.js';
import { ResilientWebSocket } from './resilient-websocket.js';
import type { ConnectionHandlerOptions, TransportCallbacks, WebSocketConstructor } from './types.js';

/** Options of `WebSocketConnectionHandler`: the transport's, plus the WebSocket constructor to use. */
export interface WebSocketConnectionHandlerOptions extends ConnectionHandlerOptions {
  /** Defaults to the global `WebSocket` (browsers, Node.js 22+). */
  WebSocket?: WebSocketConstructor;
}

/** `http(s)://h/p` -> `ws(s)://h/p`; a ws(s) URL is kept. */
export function socketUrlOf(baseUrl: string): string {
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw wsError('invalidUrl', `not a URL: ${JSON.stringify(baseUrl)}`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw wsError('invalidUrl', `${u.protocol} is not an http(s) or ws(s) URL`);
  return u.toString();
}

/**
 * Connection initialization, negotiation and authentication (the design's
 * `WebSocketConnectionHandler`): the socket URL is `baseUrl` with its scheme
 * made ws/wss; `getAuthToken` is called before every attempt and its token
 * goes to negotiate as `Authorization: Bearer` and on the socket URL as the
 * `authTokenQueryParam` query parameter. `reconnectMode` defaults to
 * `Stateful` here: negotiate is the reliable protocol's.
 */
export class WebSocketConnectionHandler extends ResilientWebSocket {
  constructor(baseUrl: string, callbacks: TransportCallbacks = {}, options: WebSocketConnectionHandlerOptions = {}) {
    super(socketUrlOf(baseUrl), callbacks, { reconnectMode: ReconnectMode.Stateful, ...options });
  }
}
