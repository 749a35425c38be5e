import { ConnectionState, ReconnectMode } from './enums.js';
import { ResilientWebSocketError, asWsError, wsError } from './errors.js';
import type { DroppedMessage, MessageData } from './message-queue.js';
import {
  CloseCode, ReliableState, SUBPROTOCOL, decodeFrame, encodeAck, encodeHello, encodePing, shutdownAdviceDelay, utf8Length,
  type SessionInfo,
} from './protocol.js';
import { Persister, decodeStored, defaultStore, encodeStored, readStored, type StoredState } from './persistence.js';
import { resolveOptions, type Resolved } from './options.js';
import { Outbox } from './outbox.js';
import { SendWindow, type Outgoing } from './window.js';
import { bytesOf, closeSocket, toArrayBuffer, writeFrame, writeMessage, type Link } from './link.js';
import { createSocket, negotiate } from './dial.js';
import { startHeartbeat } from './heartbeat.js';
import type { ConnectionHandlerOptions, TransportCallbacks, WebSocketConstructor } from './types.js';

export { resolveOptions } from './options.js';

/** Same code on this many sockets in a row, no ack advancing: the peer refuses our replay for good (§6). */
const MAX_REFUSED_REPLAYS = 3;

function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function toBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
}

function dataLength(data: MessageData): number {
  return typeof data === 'string' ? utf8Length(data) : data.byteLength;
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
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private wakeRetry: (() => void) | undefined;
  private looping = false;
  private saidNoHeartbeat = false;
  /** With `persistent`: the highest seq and server seq the store holds (see onSaved). */
  private storedSeq = 0;
  private storedDelivered = 0;
  private ackSent = 0;

  // Stateful mode.
  private session: SessionInfo | undefined;
  private sessionLostAt: number | undefined;
  private readonly rs = new ReliableState();
  private readonly window = new SendWindow();
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private refusals: { code: number; count: number; acked: number } | undefined;
  private refusedForGood = false;
  private drainWaiters: (() => void)[] = [];

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
    if (this.options.persistent) {
      const key = this.options.storeKey ?? `resilient-ws:${typeof urlProvider === 'string' ? urlProvider : ''}`;
      const store = defaultStore({ ...this.options, storeKey: key });
      this.persist = new Persister(store, () => this.snapshot(),
        (e) => this.emit('onError', asWsError(e, 'invalidConfig')), (st) => this.onSaved(st));
      this.persist.loaded = this.persist.load().then((v) => this.restore(readStored(v)));
    }
  }

  /** What `persistent: true` saves. */
  private snapshot(): StoredState {
    const s = this.session;
    return {
      version: 1,
      clientId: this.id,
      ...(s ? {
        session: {
          connectionId: s.connectionId, reconnectToken: s.reconnectToken, socketUrl: s.socketUrl,
          resumeWindowMs: s.resumeWindowMs, maxMessageSize: s.maxMessageSize, maxUnackedBytes: s.maxUnackedBytes,
          ackIntervalMs: s.ackIntervalMs, ackThreshold: s.ackThreshold, pingFrames: s.pingFrames,
        },
      } : {}),
      delivered: this.rs.delivered,
      nextSeq: this.window.nextSeq,
      window: this.window.stored(),
      outbox: this.outbox.queue.snapshot().map((m) =>
        encodeStored(typeof m.data === 'string' ? m.data : toBytes(m.data), { priority: m.priority })),
    };
  }

  /**
   * With `persistent`, the server sees only what is saved: a DATA whose seq
   * is not in the store yet waits for the write (a restart would otherwise
   * give that seq to another message), and an ACK covers only what the
   * store counts as delivered (the server frees what is acked, and a
   * restarted client resumes from the stored count). Called when a write
   * finished: sends what it made safe.
   */
  private onSaved(st: StoredState): void {
    this.storedSeq = Math.max(this.storedSeq, st.nextSeq - 1);
    this.storedDelivered = st.session ? st.delivered : 0;
    const link = this.link;
    if (!link || link.phase !== 'up' || link.dead) return;
    this.window.forEach((m) => {
      if (m.seq > this.storedSeq) return false;
      if (m.seq > (link.writtenSeq ?? 0)) this.writeData(link, m);
    });
    if (this.storedDelivered > this.ackSent && this.rs.delivered >= this.storedDelivered) this.sendAck(link);
  }

  /** Takes back a saved state: the same client id, session, seqs and messages. */
  private restore(st: StoredState | undefined): void {
    if (!st) return;
    this.id = st.clientId;
    this.storedSeq = st.nextSeq - 1;
    this.storedDelivered = st.session ? st.delivered : 0;
    if (this.stateful) {
      if (st.session) {
        this.session = { ...st.session };
        this.rs.delivered = st.delivered;
      }
      this.window.nextSeq = st.nextSeq;
      this.rs.highestWritten = st.nextSeq - 1;
      this.window.restore(st.window);
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
    return (this.stateful ? this.session?.maxMessageSize : undefined) ?? this.options.maxOutboundMessageSize;
  }

  /** Messages waiting to be sent (Stateful: not yet given a seq). */
  get bufferedCount(): number {
    return this.outbox.queue.size();
  }

  /** Stateful: messages sent and not yet acknowledged. */
  get unackedCount(): number {
    return this.window.count;
  }

  /** Connects; resolves once connected (after WELCOME in Stateful mode). The first attempt is not retried. */
  connect(): Promise<void> {
    if (this.currentState === ConnectionState.Connected) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.currentState === ConnectionState.Disconnected) {
      this.wanted = true;
      this.refusedForGood = false;
      this.refusals = undefined;
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
      if (this.refusedForGood) return wsError('notConnected', 'the server refused this client\'s messages for good');
      if (this.outbox.queue.isEmpty() && this.windowHasRoom(dataLength(data))) {
        this.pushWindow(data);
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
      if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.wakeRetry?.();
      if (link) this.abandon(link, undefined);
      else if (!this.looping) this.goIdle(undefined);
      return done;
    }
    this.setState(ConnectionState.Disconnecting);
    if (this.stateful) {
      await this.waitDrained(this.options.closeTimeoutMs);
      if (this.link === link && this.rs.ackPending()) this.sendAck(link);
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

  private waitDrained(timeoutMs: number): Promise<void> {
    if (this.unackedCount === 0 && this.outbox.queue.isEmpty()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.drainWaiters.push(done);
    });
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
        let delay = this.options.retryPolicy({ attempt, elapsedMs: Date.now() - this.lostAt, error });
        if (delay === undefined || this.refusedForGood) {
          this.goIdle(error);
          return;
        }
        if (error.kind === 'closed' && error.closeCode === CloseCode.ServiceRestart) {
          delay = shutdownAdviceDelay(error.message.replace(/^[^{]*/, '')) ?? delay;
        }
        this.setState(ConnectionState.Reconnecting);
        this.emit('onReconnect', { attempt, delayMs: delay, reason: error });
        await new Promise<void>((resolve) => {
          this.wakeRetry = resolve;
          this.retryTimer = setTimeout(resolve, delay);
        });
        this.retryTimer = undefined;
        this.wakeRetry = undefined;
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
    this.stopAckTimer();
    for (const w of this.connectWaiters.splice(0)) w.reject(error ?? wsError('notConnected', 'disconnected'));
    this.setState(ConnectionState.Disconnected);
    for (const w of this.disconnectWaiters.splice(0)) w();
  }

  /** The session cannot be resumed: tell the application and negotiate afresh next time (§7). */
  private giveUpSession(): void {
    this.sessionLostAt = undefined;
    const old = this.session;
    if (!old) return;
    this.session = undefined;
    this.rs.sessionGone();
    this.ackSent = 0;
    this.storedDelivered = 0;
    void this.persist?.save();
    this.emit('onSessionLost', { connectionId: old.connectionId, resending: this.unackedCount });
  }

  /** One connection attempt; resolves once connected. */
  private async attempt(): Promise<void> {
    const timeoutMs = this.options.connectionTimeoutMs;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abort.abort();
        reject(wsError('connectTimeout', `no connection within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      await Promise.race([this.attemptInner(abort.signal), timeout]);
    } catch (e) {
      abort.abort();
      const link = this.link;
      if (link && link.phase !== 'up') this.abandon(link, undefined, false, true);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async attemptInner(signal: AbortSignal): Promise<void> {
    let url = await this.urlProvider();
    let token: string | undefined;
    if (this.options.getAuthToken) {
      try {
        token = (await this.options.getAuthToken()) ?? undefined;
      } catch (e) {
        throw wsError('auth', `getAuthToken failed: ${asWsError(e).message}`);
      }
    }
    if (this.options.negotiate) {
      let r;
      try {
        r = await this.options.negotiate({ url, ...(token !== undefined ? { authToken: token } : {}) });
      } catch (e) {
        throw asWsError(e, 'negotiate');
      }
      if (r && typeof r.url === 'string') url = r.url;
      if (r && 'accessToken' in r) token = r.accessToken ?? undefined;
      else if (r && 'authToken' in r) token = r.authToken ?? undefined;
    }
    if (signal.aborted || !this.wanted) throw wsError('notConnected', 'connect abandoned');
    let socketUrl = url;
    let protocols: string[] = this.options.protocols;
    if (this.stateful) {
      const s = this.session;
      if (s && this.sessionLostAt !== undefined && Date.now() - this.sessionLostAt > s.resumeWindowMs) {
        // Resuming cannot work any more: negotiate afresh through the URL provider.
        this.giveUpSession();
      }
      if (!this.session) {
        this.session = await negotiate(url, token, signal, this.clientId, this.options);
        void this.persist?.save();
      }
      if (signal.aborted || !this.wanted) throw wsError('notConnected', 'connect abandoned');
      socketUrl = this.session.socketUrl;
      protocols = [SUBPROTOCOL];
    }
    await this.open(socketUrl, token, protocols);
  }

  private open(url: string, token: string | undefined, protocols: string[]): Promise<void> {
    const ws = createSocket(this.Ctor, url, token, protocols, this.options);
    const link: Link = { ws, phase: 'opening', dead: false, connectedAt: 0, lastInbound: Date.now(), timers: [] };
    this.link = link;
    this.rs.newSocket();
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
    const s = this.session!;
    const firstSeq = this.window.firstUnackedSeq();
    link.phase = 'hello';
    this.write(link, encodeHello(s.connectionId, s.reconnectToken, this.rs.delivered, firstSeq));
  }

  /** The socket is usable: Connected. */
  private linkUp(link: Link): void {
    link.phase = 'up';
    link.connectedAt = Date.now();
    this.sessionLostAt = undefined;
    this.startHeartbeat(link);
    const settle = link.settle;
    link.settle = undefined;
    if (this.stateful) {
      // Replay every unacknowledged message (§4), then go on with new ones.
      this.window.forEach((m) => this.writeData(link, m));
      this.pump();
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
          const s = this.session!;
          const len = 'text' in frame ? utf8Length(frame.text) : frame.binary.byteLength;
          if (len > this.options.maxMessageSize) {
            this.fail(link, wsError('protocol', `a message of ${len} bytes is over maxMessageSize`, { closeCode: CloseCode.MessageTooBig }));
            return;
          }
          const verdict = this.rs.onData(frame.seq);
          if (verdict === 'deliver') {
            this.emit('onMessage', { data: 'text' in frame ? frame.text : frame.binary, seq: frame.seq });
            void this.persist?.save();
          }
          if (this.link !== link || link.dead) return;
          if (this.rs.ackNow(s.ackThreshold)) this.sendAck(link);
          else if (this.ackTimer === undefined) {
            this.ackTimer = setTimeout(() => {
              this.ackTimer = undefined;
              if (this.link && this.link.phase === 'up' && this.rs.ackPending()) this.sendAck(this.link);
            }, s.ackIntervalMs);
          }
          return;
        }
        case 'ack':
          this.rs.onAck(frame.seq);
          this.onAck(frame.seq);
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
    if (lastReceived > this.rs.highestWritten && lastReceived >= this.window.firstUnackedSeq()) {
      throw wsError('protocol', 'WELCOME acknowledges a message never sent', { closeCode: CloseCode.ProtocolError });
    }
    this.onAck(lastReceived);
    this.linkUp(link);
  }

  /** Frees every window message up to `seq` (cumulative; a lower ack is ignored). */
  private onAck(seq: number): void {
    if (!this.window.ack(seq)) return;
    void this.persist?.save();
    this.pump();
    if (this.unackedCount === 0 && this.outbox.queue.isEmpty()) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  private windowHasRoom(size: number): boolean {
    // Before the first negotiate (with `persistent`, restored messages): 1 MiB.
    const s = this.session;
    return this.window.hasRoom(size, s ? s.maxUnackedBytes : 1024 * 1024);
  }

  /** Numbers a message and puts it in the window; writes it when connected. */
  private pushWindow(data: MessageData): void {
    const m = this.window.push(data);
    const link = this.link;
    if (link && link.phase === 'up') this.writeData(link, m);
  }

  /** Moves outbox messages into the window while it has room (Stateful). */
  private pump(): void {
    const queue = this.outbox.queue;
    queue.drainExpired();
    for (;;) {
      const next = queue.peek();
      if (!next || !this.windowHasRoom(dataLength(next.data))) break;
      const m = queue.dequeue()!;
      queue.remove(m.id);
      this.pushWindow(m.data);
    }
    this.outbox.notifySpace();
  }

  private writeData(link: Link, m: Outgoing): void {
    if (this.persist && m.seq > this.storedSeq) {
      // Not in the store yet: written once it is (onSaved).
      void this.persist.save();
      return;
    }
    link.writtenSeq = Math.max(link.writtenSeq ?? 0, m.seq);
    this.rs.noteWritten(m.seq);
    this.write(link, m.frame);
  }

  private sendAck(link: Link): void {
    this.stopAckTimer();
    let seq = this.rs.takeAck();
    if (this.persist) {
      seq = Math.min(seq, this.storedDelivered);
      if (seq <= this.ackSent && this.session) {
        // Nothing stored to ack yet; the write in progress acks it (onSaved).
        void this.persist.save();
        return;
      }
    }
    this.ackSent = seq;
    this.write(link, encodeAck(seq));
  }

  private stopAckTimer(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  private write(link: Link, bytes: Uint8Array): void {
    writeFrame(link, bytes);
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
    const pingFrame = this.stateful && this.session?.pingFrames ? () => this.write(link, encodePing(Date.now())) : undefined;
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
    if (this.stateful && link.phase === 'up' && this.rs.ackPending()) this.sendAck(link);
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
    else if (code === CloseCode.SessionGone && this.session) error = wsError('sessionGone', 'the server no longer has this session (4001)', { closeCode: code });
    else if (code === undefined || code === CloseCode.Abnormal || code === 1005) error = wsError('connectionLost', 'the connection was lost', code !== undefined ? { closeCode: code } : {});
    else error = wsError('closed', `closed by the server with ${code}${reason ? `: ${reason}` : ''}`, { closeCode: code });
    this.linkEnded(link, { code, reason, byUs, error });
  }

  private linkEnded(link: Link, end: { code: number | undefined; reason: string; byUs: boolean; error: ResilientWebSocketError | undefined }): void {
    if (this.link === link) this.link = undefined;
    this.stopAckTimer();
    let error = end.error;
    const wasUp = link.phase === 'up';
    this.emit('onClose', {
      ...(end.code !== undefined ? { code: end.code } : {}),
      reason: end.reason, byUs: end.byUs, ...(error ? { error } : {}),
    });
    const refused = this.countRefusal(end.code, end.byUs);
    if (refused) error = refused;
    if (this.session && this.sessionLostAt === undefined) this.sessionLostAt = Date.now();
    if (!this.wanted && this.session && end.byUs) {
      // Our Close 1000 ended the session on the server: a later connect starts fresh.
      this.session = undefined;
      this.rs.sessionGone();
      this.ackSent = 0;
      this.storedDelivered = 0;
      this.sessionLostAt = undefined;
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

  /** Counts sockets the server closed with 1009/1002 (it refused what we sent); see MAX_REFUSED_REPLAYS. */
  private countRefusal(code: number | undefined, byUs: boolean): ResilientWebSocketError | undefined {
    if (!this.stateful || byUs || (code !== CloseCode.MessageTooBig && code !== CloseCode.ProtocolError)) {
      this.refusals = undefined;
      return undefined;
    }
    const r = this.refusals;
    const count = r && r.code === code && r.acked === this.window.acked ? r.count + 1 : 1;
    this.refusals = { code, count, acked: this.window.acked };
    if (count < MAX_REFUSED_REPLAYS) return undefined;
    this.refusals = undefined;
    this.refusedForGood = true;
    return wsError('peerRefusesReplay', `the server refused our messages with ${code} on ${count} sockets in a row`, { closeCode: code });
  }
}
