import type { MessageData } from './message-queue.js';
import { ReliableState, encodeAck, utf8Length, type Frame, type SessionInfo } from './protocol.js';
import type { Persister, StoredState } from './persistence.js';
import type { Outbox } from './outbox.js';
import { writeFrame, type Link } from './link.js';
import { SendWindow, type Outgoing } from './window.js';
import type { MessageEvent } from './types.js';

/** What the session needs from the transport that owns it. */
export interface SessionHost {
  /** The socket in use, if any (the transport replaces it on every attempt). */
  link(): Link | undefined;
  readonly outbox: Outbox;
  /** With `persistent: true`. */
  persist(): Persister | undefined;
  /** Hands a message to the application (`onMessage`). */
  deliver(event: MessageEvent): void;
}

/**
 * The `rws.reliable.v1` session (Stateful mode) across its sockets: what
 * negotiate gave, the seqs both ways (PROTOCOL.md §5), the send window and
 * its replay, the acks both ways. The transport owns the sockets and their
 * lifecycle (negotiate, HELLO/WELCOME, reconnects); this is what survives
 * them.
 *
 * With `persistent`, the server sees only what is saved: a DATA whose seq
 * is not in the store yet waits for the write (a restart would otherwise
 * give that seq to another message), and an ACK covers only what the store
 * counts as delivered (the server frees what is acked, and a restarted
 * client resumes from the stored count); `onSaved` sends what a finished
 * write made safe.
 */
export class StatefulSession {
  /** From negotiate; undefined until then, and after the server lost it (§7). */
  info: SessionInfo | undefined;
  /** When the last socket of this session was lost: past the resume window, negotiate afresh. */
  lostAt: number | undefined;
  readonly rs = new ReliableState();
  readonly window = new SendWindow();
  /** With `persistent`: the highest seq and server seq the store holds (see onSaved). */
  storedSeq = 0;
  storedDelivered = 0;
  private ackSent = 0;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly host: SessionHost) {}

  /** The session is gone on the server: the next one starts its seqs to us from 1 (ours keep theirs, §7). */
  forget(): void {
    this.info = undefined;
    this.rs.sessionGone();
    this.ackSent = 0;
    this.storedDelivered = 0;
  }

  /** The session's part of what `persistent: true` saves. */
  stored(): Pick<StoredState, 'session' | 'delivered' | 'nextSeq' | 'window'> {
    const s = this.info;
    return {
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
    };
  }

  /** Takes back a saved session: its ids, seqs and unacknowledged messages. */
  restore(st: StoredState): void {
    if (st.session) {
      this.info = { ...st.session };
      this.rs.delivered = st.delivered;
    }
    this.window.nextSeq = st.nextSeq;
    this.rs.highestWritten = st.nextSeq - 1;
    this.window.restore(st.window);
  }

  /** A write of the store finished: sends what it made safe (see the class comment). */
  onSaved(st: StoredState): void {
    this.storedSeq = Math.max(this.storedSeq, st.nextSeq - 1);
    this.storedDelivered = st.session ? st.delivered : 0;
    const link = this.host.link();
    if (!link || link.phase !== 'up' || link.dead) return;
    this.window.forEach((m) => {
      if (m.seq > this.storedSeq) return false;
      if (m.seq > (link.writtenSeq ?? 0)) this.writeData(link, m);
    });
    if (this.storedDelivered > this.ackSent && this.rs.delivered >= this.storedDelivered) this.sendAck(link);
  }

  /** A new socket is up: replay every unacknowledged message (§4), then go on with new ones. */
  replay(link: Link): void {
    this.window.forEach((m) => this.writeData(link, m));
    this.pump();
  }

  /** A DATA frame from the server (its size already checked); throws a protocol error on a seq that breaks §5. */
  onData(link: Link, frame: Extract<Frame, { type: 'data' }>): void {
    const s = this.info!;
    const verdict = this.rs.onData(frame.seq);
    if (verdict === 'deliver') {
      this.host.deliver({ data: 'text' in frame ? frame.text : frame.binary, seq: frame.seq });
      void this.host.persist()?.save();
    }
    // The application may have closed or replaced the socket from onMessage.
    if (this.host.link() !== link || link.dead) return;
    if (this.rs.ackNow(s.ackThreshold)) this.sendAck(link);
    else if (this.ackTimer === undefined) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = undefined;
        const current = this.host.link();
        if (current && current.phase === 'up' && this.rs.ackPending()) this.sendAck(current);
      }, s.ackIntervalMs);
    }
  }

  /** Frees every window message up to `seq` (cumulative; a lower ack is ignored). */
  onAck(seq: number): void {
    if (!this.window.ack(seq)) return;
    void this.host.persist()?.save();
    this.pump();
    if (this.window.count === 0 && this.host.outbox.queue.isEmpty()) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** Resolves once the server acknowledged everything (window and outbox empty), or after `timeoutMs`. */
  waitDrained(timeoutMs: number): Promise<void> {
    if (this.window.count === 0 && this.host.outbox.queue.isEmpty()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.drainWaiters.push(done);
    });
  }

  windowHasRoom(size: number): boolean {
    // Before the first negotiate (with `persistent`, restored messages): 1 MiB.
    const s = this.info;
    return this.window.hasRoom(size, s ? s.maxUnackedBytes : 1024 * 1024);
  }

  /** Numbers a message and puts it in the window; writes it when connected. */
  pushWindow(data: MessageData): void {
    const m = this.window.push(data);
    const link = this.host.link();
    if (link && link.phase === 'up') this.writeData(link, m);
  }

  /** Moves outbox messages into the window while it has room. */
  pump(): void {
    const queue = this.host.outbox.queue;
    queue.drainExpired();
    for (;;) {
      const next = queue.peek();
      if (!next || !this.windowHasRoom(dataLength(next.data))) break;
      const m = queue.dequeue()!;
      queue.remove(m.id);
      this.pushWindow(m.data);
    }
    this.host.outbox.notifySpace();
  }

  private writeData(link: Link, m: Outgoing): void {
    const persist = this.host.persist();
    if (persist && m.seq > this.storedSeq) {
      // Not in the store yet: written once it is (onSaved).
      void persist.save();
      return;
    }
    link.writtenSeq = Math.max(link.writtenSeq ?? 0, m.seq);
    this.rs.noteWritten(m.seq);
    writeFrame(link, m.frame);
  }

  /** Acknowledges what was delivered (with `persistent`, what the store holds). */
  sendAck(link: Link): void {
    this.stopAckTimer();
    let seq = this.rs.takeAck();
    const persist = this.host.persist();
    if (persist) {
      seq = Math.min(seq, this.storedDelivered);
      if (seq <= this.ackSent && this.info) {
        // Nothing stored to ack yet; the write in progress acks it (onSaved).
        void persist.save();
        return;
      }
    }
    this.ackSent = seq;
    writeFrame(link, encodeAck(seq));
  }

  stopAckTimer(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }
}

export function dataLength(data: MessageData): number {
  return typeof data === 'string' ? utf8Length(data) : data.byteLength;
}
