export { ConnectionState, ReconnectMode } from './enums.js';
export { ResilientWebSocketError, type ErrorKind } from './errors.js';
export {
  MessageQueue, QueueFullError, DropReason,
  type MessageQueueOptions, type QueuedMessage, type DroppedMessage, type MessageData, type OverflowPolicy,
} from './message-queue.js';
export { exponentialBackoff, backoffCeiling, isTerminal, type RetryPolicy, type RetryContext } from './retry.js';
export {
  SUBPROTOCOL, FrameType, CloseCode, ReliableState, encodeVarint, decodeVarint, encodeHello, encodeAck, encodePing,
  encodeData, decodeFrame, negotiateUrl, parseNegotiateResponse, shutdownAdviceDelay,
  type Frame, type Verdict, type SessionInfo,
} from './protocol.js';
export { ResilientWebSocketTransport, resolveOptions } from './transport.js';
export { WebSocketConnectionHandler, socketUrlOf, type WebSocketConnectionHandlerOptions } from './connection-handler.js';
export { ResilientWebSocket, type ResilientWebSocketOptions } from './resilient-websocket.js';
export type {
  WebSocketLike, WebSocketConstructor, StateChangeEvent, MessageEvent, ReconnectEvent, ReconnectedEvent,
  SessionLostEvent, CloseEvent, TransportCallbacks, NegotiateRequest, NegotiateResult,
  WebSocketTransportOptions, ConnectionHandlerOptions,
} from './types.js';
export {
  fileStore, indexedDbStore, type PersistentStore, type StoredState, type StoredMessage,
} from './persistence.js';
