/** The connection's state, as in the design (and the Rust client's `ConnectionState`). */
export enum ConnectionState {
  Disconnected = 'Disconnected',
  Connecting = 'Connecting',
  Connected = 'Connected',
  Reconnecting = 'Reconnecting',
  Disconnecting = 'Disconnecting',
}

/** What the client does when a connection is lost. */
export enum ReconnectMode {
  /** A lost connection ends in `Disconnected` with the error. */
  None = 'None',
  /**
   * Reconnect to a fresh connection; messages still buffered go out after the
   * reconnect (at-most-once for a message already written to a socket that
   * died). Works against any WebSocket server.
   */
  Stateless = 'Stateless',
  /**
   * Resume the same session with the `rws.reliable.v1` protocol (a
   * resilient-ws server): exactly once, in order, both directions.
   */
  Stateful = 'Stateful',
}
