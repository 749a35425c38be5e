import { ConnectionState, ReconnectMode } from './enums.js';
import { ResilientWebSocketError, asWsError, wsError } from './errors.js';
import type { DroppedMessage, MessageData } from './message-queue.js';
import {
  CloseCode, SUBPROTOCOL, decodeFrame, encodeHello, encodePing, utf8Length,
} from './protocol.js';
import { Persister, decodeStored, defaultStore, encodeStored, readStored, type StoredState } from './persistence.js';
import { resolveOptions, type Resolved } from './options.js';
import { Outbox } from './outbox.js';
import { StatefulSession, dataLength } from './stateful-session.js';
import { bytesOf, closeSocket, toArrayBuffer, writeFrame, writeMessage, type Link } from './link.js';
import { createSocket, negotiate, resolveTarget } from './dial.js';
import { ReplayRefusals, RetryTimer, retryDelay, withinDeadline } from './reconnect.js';
import { startHeartbeat } from './heartbeat.js';
import type { ConnectionHandlerOptions, TransportCallbacks, WebSocketConstructor } from './types.js';

export { resolveOptions } from './options.js';

function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function toBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
}

/**
 * The design's core transport: a WebSocket that reconnects with
 * full-jitter backoff, buffers while disconnected, and in `Stateful` mode
 * speaks `rws.reliable.v1` for exactly-once, in-order delivery.
 */
export class ResilientWebSocketTransport {
  private readonly urlProvider: () => Promise<string> | string;
  private readonly cb: TransportCallbacks;
  private readonly Ctor: WebSocketConstructor;
  readonly options: Resolved;
  private currentState = ConnectionState.Disconnected;
  private readonly outbox: Outbox;
  /** Stable for this client's life (PROTOCOL.md §1); with `persistent`, across reloads. */
  get clientId(): string {
    return this.id;
  }
  private id = randomHex(16);
  private readonly persist: Persister | undefined;

  // Connection management.
  private link: Link | undefined;
  private wanted = false;
  private attemptNo = 0;
  private lostAt = 0;
  private connectWaiters: { resolve: () => void; reject: (e: ResilientWebSocketError) => void }[] = [];
  private disconnectWaiters: (() => void)[] = [];
  private readonly retry = new RetryTimer();
  private looping = false;
  private saidNoHeartbeat = false;

  // Stateful mode.
  private readonly s: StatefulSession;
  private readonly refusals = new ReplayRefusals();

  constructor(
    urlProvider: (() => Promise<string> | string) | string,
    callbacks: TransportCallbacks = {},
    WebSocketCtor?: WebSocketConstructor,
    options: ConnectionHandlerOptions = {},
  ) {
    this.urlProvider = typeof urlProvider === 'string' ? () => urlProvider : urlProvider;
    this.cb = callbacks;
    const ctor = WebSocketCtor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ctor) throw wsError('invalidConfig', 'no WebSocket constructor: pass one (e.g. the ws package\'s) on Node.js before 22');
    this.Ctor = ctor;
    this.options = resolveOptions(options);
    this.outbox = new Outbox(this.options, (d: DroppedMessage) => this.emit('onMessageDropped', d));
    this.s = new StatefulSession({
      link: () => this.link,
      outbox: this.outbox,
      persist: () => this.persist,
      deliver: (event) => this.emit('onMessage', event),
    });
    if (this.options.persistent) {
      const key = this.options.storeKey ?? `resilient-ws:${typeof urlProvider === 'string' ? urlProvider : ''}`;
      const store = defaultStore({ ...this.options, storeKey: key });
      this.persist = new Persister(store, () => this.snapshot(),
        (e) => this.emit('onError', asWsError(e, 'invalidConfig')), (st) => this.s.onSaved(st));
      this.persist.loaded = this.persist.load().then((v) => this.restore(readStored(v)));
    }
  }

  /** What `persistent: true` saves. */
  private snapshot(): StoredState {
    return {
      version: 1,
      clientId: this.id,
      ...this.s.stored(),
      outbox: this.outbox.queue.snapshot().map((m) =>
        encodeStored(typeof m.data === 'string' ? m.data : toBytes(m.data), { priority: m.priority })),
    };
  }

  /** Takes back a saved state: the same client id, session, seqs and messages. */
  private restore(st: StoredState | undefined): void {
    if (!st) return;
    this.id = st.clientId;
    this.s.storedSeq = st.nextSeq - 1;
    this.s.storedDelivered = st.session ? st.delivered : 0;
    if (this.stateful) {
      this.s.restore(st);
    } else {
      // Stateless keeps no seqs: what was unacknowledged is simply sent again.
      for (const m of st.window) this.outbox.queue.enqueue(decodeStored(m), 0);
    }
    for (const m of st.outbox) this.outbox.queue.enqueue(decodeStored(m), m.priority ?? 0);
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  private get stateful(): boolean {
    return this.options.reconnectMode === ReconnectMode.Stateful;
  }

  /** The largest message `send()` accepts, when known (Stateful: the server's from negotiate). */
  get peerMaxMessageSize(): number | undefined {
    return (this.stateful ? this.s.info?.maxMessageSize : undefined) ?? this.options.maxOutboundMessageSize;
  }

  /** Messages waiting to be sent (Stateful: not yet given a seq). */
  get bufferedCount(): number {
    return this.outbox.queue.size();
  }

  /** Stateful: messages sent and not yet acknowledged. */
  get unackedCount(): number {
    return this.s.window.count;
  }

  /** Connects; resolves once connected (after WELCOME in Stateful mode). The first attempt is not retried. */
  connect(): Promise<void> {
    if (this.currentState === ConnectionState.Connected) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.currentState === ConnectionState.Disconnected) {
      this.wanted = true;
      this.refusals.reset();
      this.setState(ConnectionState.Connecting);
      void this.initialConnect();
    }
    return p;
  }

  /**
   * Sends a message (higher `priority` first among buffered ones). Resolves
   * once the client took it: written, or buffered for after the reconnect.
   * Rejects with `messageTooLarge` over the server's limit, `bufferFull`
   * when the outbox is full (after waiting with the `{ waitMs }` policy),
   * `notConnected` when buffering is off or a close is in progress.
   */
  async send(data: MessageData, priority = 0): Promise<void> {
    if (this.persist) await this.persist.loaded;
    const size = dataLength(data);
    const max = this.peerMaxMessageSize;
    if (max !== undefined && size > max) {
      throw wsError('messageTooLarge', `message of ${size} bytes is over the server's limit of ${max}`);
    }
    const owned: MessageData = typeof data === 'string' ? data : toBytes(data);
    for (;;) {
      const admitted = this.tryAdmit(owned, priority);
      if (admitted === true) {
        // Taken only once it is stored: a reload after this keeps it.
        if (this.persist) await this.persist.save();
        return;
      }
      const policy = this.options.overflowPolicy;
      if (typeof policy !== 'object') throw admitted;
      await this.outbox.waitForSpace(policy.waitMs, admitted);
    }
  }

  private tryAdmit(data: MessageData, priority: number): true | ResilientWebSocketError {
    const state = this.currentState;
    if (state === ConnectionState.Disconnecting) return wsError('notConnected', 'the connection is closing');
    if (this.stateful) {
      if (this.refusals.forGood) return wsError('notConnected', 'the server refused this client\'s messages for good');
      if (this.outbox.queue.isEmpty() && this.s.windowHasRoom(dataLength(data))) {
        this.s.pushWindow(data);
        return true;
      }
      return this.outbox.enqueue(data, priority);
    }
    const link = this.link;
    if (state === ConnectionState.Connected && link && link.phase === 'up' && this.outbox.queue.isEmpty()) {
      if (writeMessage(link, data)) return true;
    }
    if (state !== ConnectionState.Connected && !this.options.enableMessageBuffering) {
      return wsError('notConnected', 'not connected and message buffering is off');
    }
    return this.outbox.enqueue(data, priority);
  }

  /**
   * Closes gracefully: Stateful mode waits (up to `closeTimeoutMs`) until the
   * server acknowledged everything sent, sends its pending ACK, then a Close
   * 1000 (which ends the session on the server); the peer's Close is awaited
   * up to `closeTimeoutMs`. Resolves when `Disconnected`.
   */
  async disconnect(): Promise<void> {
    await this.disconnectSocket();
    // With `persistent`: resolved once the store holds the final state.
    if (this.persist) await this.persist.save();
  }

  private async disconnectSocket(): Promise<void> {
    this.wanted = false;
    if (this.currentState === ConnectionState.Disconnected) return;
    const done = new Promise<void>((resolve) => this.disconnectWaiters.push(resolve));
    const link = this.link;
    if (!link || link.phase !== 'up') {
      // Waiting for a retry or mid-attempt: stop trying.
      this.retry.wake();
      if (link) this.abandon(link, undefined);
      else if (!this.looping) this.goIdle(undefined);
      return done;
    }
    this.setState(ConnectionState.Disconnecting);
    if (this.stateful) {
      await this.s.waitDrained(this.options.closeTimeoutMs);
      if (this.link === link && this.s.rs.ackPending()) this.s.sendAck(link);
    } else {
      this.flushOutbox(link);
    }
    if (this.link !== link || link.dead) return done;
    const closing = link;
    closing.closingByUs = true;
    try {
      closing.ws.close(CloseCode.Normal, '');
    } catch {
      // already closing
    }
    closing.timers.push(setTimeout(() => {
      if (!closing.dead) this.abandon(closing, undefined, true);
    }, this.options.closeTimeoutMs));
    return done;
  }

  // ---------------------------------------------------------------- lifecycle

  private setState(next: ConnectionState): void {
    const previous = this.currentState;
    if (previous === next) return;
    this.currentState = next;
    this.emit('onStateChange', { previousState: previous, currentState: next });
  }

  private emit<K extends keyof TransportCallbacks>(name: K, ...args: Parameters<NonNullable<TransportCallbacks[K]>>): void {
    const f = this.cb[name] as ((...a: unknown[]) => void) | undefined;
    if (!f) return;
    try {
      f(...args);
    } catch (e) {
      // A throwing callback must not break the client; report it once.
      if (name !== 'onError') this.emit('onError', asWsError(e, 'shutdown'));
    }
  }

  private async initialConnect(): Promise<void> {
    if (this.persist) await this.persist.loaded;
    let retriedGone = false;
    for (;;) {
      try {
        await this.attempt();
        return;
      } catch (e) {
        const error = asWsError(e);
        if (!this.wanted) {
          // disconnect() was called while connecting.
          this.goIdle(wsError('notConnected', 'disconnect() was called while connecting'));
          return;
        }
        this.emit('onError', error);
        if (error.kind === 'sessionGone' && !retriedGone) {
          retriedGone = true;
          this.giveUpSession();
          continue;
        }
        this.goIdle(error);
        return;
      }
    }
  }

  /** After a connected socket was lost: back off and try again until connected, told to stop, or the policy gives up. */
  private async reconnectLoop(first: ResilientWebSocketError): Promise<void> {
    this.looping = true;
    let error = first;
    try {
      while (this.wanted) {
        if (error.kind === 'sessionGone') this.giveUpSession();
        const attempt = ++this.attemptNo;
        const delay = retryDelay(this.options.retryPolicy, { attempt, elapsedMs: Date.now() - this.lostAt, error });
        if (delay === undefined || this.refusals.forGood) {
          this.goIdle(error);
          return;
        }
        this.setState(ConnectionState.Reconnecting);
        this.emit('onReconnect', { attempt, delayMs: delay, reason: error });
        await this.retry.sleep(delay);
        if (!this.wanted) break;
        try {
          await this.attempt();
          this.emit('onReconnected', { attempts: attempt, downtimeMs: Date.now() - this.lostAt });
          return;
        } catch (e) {
          error = asWsError(e);
          this.emit('onError', error);
        }
      }
      this.goIdle(undefined);
    } finally {
      this.looping = false;
    }
  }

  private goIdle(error: ResilientWebSocketError | undefined): void {
    this.wanted = false;
    this.s.stopAckTimer();
    for (const w of this.connectWaiters.splice(0)) w.reject(error ?? wsError('notConnected', 'disconnected'));
    this.setState(ConnectionState.Disconnected);
    for (const w of this.disconnectWaiters.splice(0)) w();
  }

  /** The session cannot be resumed: tell the application and negotiate afresh next time (§7). */
  private giveUpSession(): void {
    this.s.lostAt = undefined;
    const old = this.s.info;
    if (!old) return;
    this.s.forget();
    void this.persist?.save();
    this.emit('onSessionLost', { connectionId: old.connectionId, resending: this.unackedCount });
  }

  /** One connection attempt; resolves once connected. */
  private async attempt(): Promise<void> {
    try {
      await withinDeadline(this.options.connectionTimeoutMs, (signal) => this.attemptInner(signal));
    } catch (e) {
      const link = this.link;
      if (link && link.phase !== 'up') this.abandon(link, undefined, false, true);
      throw e;
    }
  }

  private async attemptInner(signal: AbortSignal): Promise<void> {
    const { url, token } = await resolveTarget(await this.urlProvider(), this.options);
    if (signal.aborted || !this.wanted) throw wsError('notConnected', 'connect abandoned');
    let socketUrl = url;
    let protocols: string[] = this.options.protocols;
    if (this.stateful) {
      const s = this.s.info;
      if (s && this.s.lostAt !== undefined && Date.now() - this.s.lostAt > s.resumeWindowMs) {
        // Resuming cannot work any more: negotiate afresh through the URL provider.
        this.giveUpSession();
      }
      if (!this.s.info) {
        this.s.info = await negotiate(url, token, signal, this.clientId, this.options);
        void this.persist?.save();
      }
      if (signal.aborted || !this.wanted) throw wsError('notConnected', 'connect abandoned');
      socketUrl = this.s.info.socketUrl;
      protocols = [SUBPROTOCOL];
    }
    await this.open(socketUrl, token, protocols);
  }

  private open(url: string, token: string | undefined, protocols: string[]): Promise<void> {
    const ws = createSocket(this.Ctor, url, token, protocols, this.options);
    const link: Link = { ws, phase: 'opening', dead: false, connectedAt: 0, lastInbound: Date.now(), timers: [] };
    this.link = link;
    this.s.rs.newSocket();
    const done = new Promise<void>((resolve, reject) => {
      link.settle = { resolve, reject };
    });
    ws.onopen = () => this.onOpen(link);
    ws.onmessage = (ev: { data: unknown }) => this.onSocketMessage(link, ev.data);
    ws.onclose = (ev: { code?: number; reason?: string }) => this.onSocketClose(link, ev.code, ev.reason ?? '');
    ws.onerror = () => { /* a close event follows */ };
    if (typeof ws.on === 'function') {
      const alive = () => { link.lastInbound = Date.now(); };
      ws.on('pong', alive);
      ws.on('ping', alive);
    }
    return done;
  }

  private onOpen(link: Link): void {
    if (link.dead) return;
    link.lastInbound = Date.now();
    if (!this.stateful) {
      this.linkUp(link);
      return;
    }
    if (link.ws.protocol !== SUBPROTOCOL) {
      this.fail(link, wsError('protocolNotSupported', `the server did not select ${SUBPROTOCOL}`), CloseCode.Normal);
      return;
    }
    const s = this.s.info!;
    const firstSeq = this.s.window.firstUnackedSeq();
    link.phase = 'hello';
    writeFrame(link, encodeHello(s.connectionId, s.reconnectToken, this.s.rs.delivered, firstSeq));
  }

  /** The socket is usable: Connected. */
  private linkUp(link: Link): void {
    link.phase = 'up';
    link.connectedAt = Date.now();
    this.s.lostAt = undefined;
    this.startHeartbeat(link);
    const settle = link.settle;
    link.settle = undefined;
    if (this.stateful) {
      this.s.replay(link);
    } else {
      this.flushOutbox(link);
    }
    this.setState(ConnectionState.Connected);
    for (const w of this.connectWaiters.splice(0)) w.resolve();
    this.emit('onConnected');
    settle?.resolve();
  }

  private onSocketMessage(link: Link, data: unknown): void {
    if (link.dead) return;
    link.lastInbound = Date.now();
    if (!this.stateful) {
      if (link.phase !== 'up') return;
      this.emit('onMessage', { data: typeof data === 'string' ? data : toArrayBuffer(data) });
      return;
    }
    if (typeof data === 'string') {
      this.fail(link, wsError('protocol', 'a text message on a rws.reliable.v1 socket', { closeCode: CloseCode.ProtocolError }));
      return;
    }
    let frame;
    try {
      frame = decodeFrame(bytesOf(data));
    } catch (e) {
      this.fail(link, asWsError(e, 'protocol'));
      return;
    }
    try {
      if (link.phase === 'hello') {
        if (frame.type !== 'welcome') throw wsError('protocol', `expected WELCOME, got ${frame.type}`, { closeCode: CloseCode.ProtocolError });
        this.onWelcome(link, frame.lastReceived);
        return;
      }
      if (link.phase !== 'up') return;
      switch (frame.type) {
        case 'data': {
          const len = 'text' in frame ? utf8Length(frame.text) : frame.binary.byteLength;
          if (len > this.options.maxMessageSize) {
            this.fail(link, wsError('protocol', `a message of ${len} bytes is over maxMessageSize`, { closeCode: CloseCode.MessageTooBig }));
            return;
          }
          this.s.onData(link, frame);
          return;
        }
        case 'ack':
          this.s.rs.onAck(frame.seq);
          this.s.onAck(frame.seq);
          return;
        case 'pong':
          // Our PING's answer: its arrival already counted (lastInbound).
          return;
        default:
          throw wsError('protocol', `unexpected ${frame.type} frame`, { closeCode: CloseCode.ProtocolError });
      }
    } catch (e) {
      this.fail(link, asWsError(e, 'protocol'));
    }
  }

  private onWelcome(link: Link, lastReceived: number): void {
    if (lastReceived > this.s.rs.highestWritten && lastReceived >= this.s.window.firstUnackedSeq()) {
      throw wsError('protocol', 'WELCOME acknowledges a message never sent', { closeCode: CloseCode.ProtocolError });
    }
    this.s.onAck(lastReceived);
    this.linkUp(link);
  }

  private flushOutbox(link: Link): void {
    const queue = this.outbox.queue;
    queue.drainExpired();
    for (;;) {
      const m = queue.dequeue();
      if (!m) break;
      if (writeMessage(link, m.data)) queue.remove(m.id);
      else {
        queue.markFailed(m.id);
        break;
      }
    }
    this.outbox.notifySpace();
    void this.persist?.save();
  }

  // ---------------------------------------------------------------- heartbeat

  /** See heartbeat.ts; PING frames only where the server offers them (§5a). */
  private startHeartbeat(link: Link): void {
    const pingFrame = this.stateful && this.s.info?.pingFrames ? () => writeFrame(link, encodePing(Date.now())) : undefined;
    const timed = startHeartbeat(link, this.options.heartbeatIntervalMs, this.options.heartbeatTimeoutMs, pingFrame,
      (error) => this.fail(link, error, undefined));
    if (timed || this.saidNoHeartbeat) return;
    this.saidNoHeartbeat = true;
    this.emit('onError', wsError('noHeartbeat', this.stateful
      ? 'this socket cannot send pings and the server offers no PING frames: a half-open link is noticed only when the socket reports it'
      : 'this socket cannot send pings (Stateless mode has no PING frames): a half-open link is noticed only when the socket reports it'));
  }

  // ---------------------------------------------------------------- endings

  /** We end a socket for a reason of our own (protocol error, timeout). */
  private fail(link: Link, error: ResilientWebSocketError, code: number | undefined = error.closeCode): void {
    if (link.dead) return;
    if (this.stateful && link.phase === 'up' && this.s.rs.ackPending()) this.s.sendAck(link);
    this.abandon(link, error, false, false, code);
  }

  /** Forgets a socket now (closing it in the background) and handles its end. */
  private abandon(link: Link, error: ResilientWebSocketError | undefined, byUs = true, quiet = false, code?: number): void {
    if (link.dead) return;
    link.dead = true;
    for (const t of link.timers) clearTimeout(t);
    const ws = link.ws;
    ws.onopen = ws.onmessage = ws.onerror = null;
    ws.onclose = null;
    closeSocket(ws, code, error?.message);
    if (quiet) {
      if (this.link === link) this.link = undefined;
      return;
    }
    this.linkEnded(link, { code, reason: '', byUs, error });
  }

  private onSocketClose(link: Link, code: number | undefined, reason: string): void {
    if (link.dead) return;
    link.dead = true;
    for (const t of link.timers) clearTimeout(t);
    const byUs = link.closingByUs === true;
    let error: ResilientWebSocketError | undefined;
    if (byUs || ((code === CloseCode.Normal || code === 1005) && link.phase === 'up')) error = undefined;
    else if (code === CloseCode.SessionGone && this.s.info) error = wsError('sessionGone', 'the server no longer has this session (4001)', { closeCode: code });
    else if (code === undefined || code === CloseCode.Abnormal || code === 1005) error = wsError('connectionLost', 'the connection was lost', code !== undefined ? { closeCode: code } : {});
    else error = wsError('closed', `closed by the server with ${code}${reason ? `: ${reason}` : ''}`, { closeCode: code });
    this.linkEnded(link, { code, reason, byUs, error });
  }

  private linkEnded(link: Link, end: { code: number | undefined; reason: string; byUs: boolean; error: ResilientWebSocketError | undefined }): void {
    if (this.link === link) this.link = undefined;
    this.s.stopAckTimer();
    let error = end.error;
    const wasUp = link.phase === 'up';
    this.emit('onClose', {
      ...(end.code !== undefined ? { code: end.code } : {}),
      reason: end.reason, byUs: end.byUs, ...(error ? { error } : {}),
    });
    const refused = this.refusals.onClose(end.code, end.byUs, this.stateful, this.s.window.acked);
    if (refused) error = refused;
    if (this.s.info && this.s.lostAt === undefined) this.s.lostAt = Date.now();
    if (!this.wanted && this.s.info && end.byUs) {
      // Our Close 1000 ended the session on the server: a later connect starts fresh.
      this.s.forget();
      this.s.lostAt = undefined;
      void this.persist?.save();
    }
    const settle = link.settle;
    link.settle = undefined;
    if (settle) {
      // Still an attempt: its caller decides what comes next.
      settle.reject(error ?? wsError('connectionLost', 'the socket closed before it was usable'));
      return;
    }
    if (!wasUp) return;
    if (Date.now() - link.connectedAt >= this.options.minUptimeMs) this.attemptNo = 0;
    if (!this.wanted || !error || this.options.reconnectMode === ReconnectMode.None) {
      if (error) this.emit('onError', error);
      this.goIdle(error);
      return;
    }
    this.emit('onError', error);
    this.lostAt = Date.now();
    this.setState(ConnectionState.Reconnecting);
    void this.reconnectLoop(error);
  }
}
