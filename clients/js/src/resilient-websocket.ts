import type { ConnectionState } from './enums.js';
import type { MessageData } from './message-queue.js';
import { ResilientWebSocketTransport } from './transport.js';
import type { ConnectionHandlerOptions, TransportCallbacks, WebSocketConstructor } from './types.js';

/** Options of `ResilientWebSocket`: the transport's and the handler's, plus the WebSocket constructor. */
export interface ResilientWebSocketOptions extends ConnectionHandlerOptions {
  /** Defaults to the global `WebSocket` (browsers, Node.js 22+); on Node.js 20 pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
}

/** The design's high-level API over `ResilientWebSocketTransport`. */
export class ResilientWebSocket {
  readonly transport: ResilientWebSocketTransport;

  /** Whether this environment has a global `WebSocket`. */
  static isSupported(): boolean {
    return typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function';
  }

  constructor(url: string | (() => Promise<string> | string), callbacks: TransportCallbacks = {}, options: ResilientWebSocketOptions = {}) {
    const { WebSocket: ctor, ...rest } = options;
    this.transport = new ResilientWebSocketTransport(url, callbacks, ctor, rest);
  }

  get state(): ConnectionState {
    return this.transport.state;
  }

  connect(): Promise<void> {
    return this.transport.connect();
  }

  send(data: MessageData, priority = 0): Promise<void> {
    return this.transport.send(data, priority);
  }

  disconnect(): Promise<void> {
    return this.transport.disconnect();
  }
}
