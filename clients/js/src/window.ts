import type { MessageData } from './message-queue.js';
import { encodeDataFrame, utf8Decode } from './protocol.js';
import { decodeStored, encodeStored, type StoredMessage } from './persistence.js';

/** One unacknowledged message of the Stateful window. */
export interface Outgoing {
  seq: number;
  /** The DATA frame, encoded once and written again as is on a replay. */
  frame: Uint8Array;
  /** Where the payload starts in `frame`. */
  header: number;
  text: boolean;
}

const payloadOf = (m: Outgoing): Uint8Array => m.frame.subarray(m.header);

/**
 * Stateful: the messages given a seq and not yet acknowledged by the
 * server, in seq order; what a new socket replays (PROTOCOL.md §4) and
 * what the §7 fallback sends to a new session with the same seqs. Acked
 * messages leave from the head (an index, so an ack is not O(window)).
 */
export class SendWindow {
  private messages: Outgoing[] = [];
  private head = 0;
  /** The payload bytes in the window, against the server's maxUnackedBytes. */
  private bytes = 0;
  /** The seq the next message gets. */
  nextSeq = 1;
  /** The highest seq the server acknowledged. */
  acked = 0;

  get count(): number {
    return this.messages.length - this.head;
  }

  firstUnackedSeq(): number {
    return this.head < this.messages.length ? this.messages[this.head]!.seq : this.nextSeq;
  }

  /** One message of `size` fits: always when the window is empty, so no message is too big to ever go. */
  hasRoom(size: number, maxUnackedBytes: number): boolean {
    return this.count === 0 || this.bytes + size <= maxUnackedBytes;
  }

  /** Numbers a message and puts it at the tail. */
  push(data: MessageData): Outgoing {
    return this.add(this.nextSeq++, data);
  }

  private add(seq: number, data: MessageData): Outgoing {
    const text = typeof data === 'string';
    const { frame, header } = encodeDataFrame(seq, typeof data === 'string' ? data : (data as Uint8Array));
    const m: Outgoing = { seq, frame, header, text };
    this.messages.push(m);
    this.bytes += frame.length - header;
    return m;
  }

  /** Calls `f` on each message in seq order until it returns false. */
  forEach(f: (m: Outgoing) => boolean | void): void {
    for (let i = this.head; i < this.messages.length; i++) {
      if (f(this.messages[i]!) === false) return;
    }
  }

  /** Frees every message up to `seq` (cumulative; a lower ack is ignored); true when one was freed. */
  ack(seq: number): boolean {
    let freed = false;
    while (this.head < this.messages.length && this.messages[this.head]!.seq <= seq) {
      const m = this.messages[this.head]!;
      this.bytes -= m.frame.length - m.header;
      this.head++;
      freed = true;
    }
    if (seq > this.acked) this.acked = seq;
    if (freed && this.head > 1024 && this.head * 2 > this.messages.length) {
      // Drop the freed head once it is most of the array.
      this.messages = this.messages.slice(this.head);
      this.head = 0;
    }
    return freed;
  }

  /** The messages as `persistent: true` saves them. */
  stored(): StoredMessage[] {
    return this.messages.slice(this.head).map((m) =>
      encodeStored(m.text ? utf8Decode(payloadOf(m)) : payloadOf(m).slice(), { seq: m.seq }));
  }

  /** Takes back saved messages with their seqs (after a reload). */
  restore(saved: StoredMessage[]): void {
    for (const m of saved) this.add(m.seq ?? 0, decodeStored(m));
  }
}
