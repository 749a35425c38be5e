import { ResilientWebSocketError } from './errors.js';

/** A message payload: text goes out as a text message, bytes as a binary one. */
export type MessageData = string | ArrayBuffer | ArrayBufferView;

/**
 * What a full queue does with one more message (the Rust client's
 * `OverflowPolicy`): refuse it (default), drop the oldest message of the
 * lowest priority, drop the incoming one, or (in the transport) make
 * `send()` wait for room up to `waitMs`. Every drop is reported.
 */
export type OverflowPolicy = 'reject' | 'dropOldest' | 'dropNewest' | { waitMs: number };

/** Why a message left the queue without being sent. */
export enum DropReason {
  Overflow = 'overflow',
  Expired = 'expired',
  RetriesExhausted = 'retriesExhausted',
}

export interface DroppedMessage {
  id: number;
  data: MessageData;
  reason: DropReason;
}

export interface QueuedMessage {
  id: number;
  data: MessageData;
  priority: number;
  attempts: number;
  /** `Date.now()`-style milliseconds. */
  enqueuedAt: number;
}

export interface MessageQueueOptions {
  /** The most messages waiting (not counting ones dequeued and in flight). Default 1000. */
  maxSize?: number;
  /** After this many failed attempts `markFailed` drops the message. Default 3. */
  maxRetries?: number;
  /**
   * Whether the queue survives the process or page. A queue itself lives in
   * memory; the transport's `persistent: true` saves it (with `snapshot()`)
   * to IndexedDB or a file and takes it back on the next start.
   */
  persistent?: boolean;
  /** Default `'reject'`. */
  overflow?: OverflowPolicy;
  /** How long a message may wait before `drainExpired` drops it; none by default. */
  ttlMs?: number;
  /** Told of every message dropped by overflow, expiry or retries. */
  onDropped?: (dropped: DroppedMessage) => void;
}

/** Thrown by `enqueue` on a full queue whose policy does not drop. */
export class QueueFullError extends ResilientWebSocketError {
  readonly maxSize: number;
  /** Set when the policy is `{ waitMs }`: the caller may wait this long for room. */
  readonly waitMs?: number;
  readonly data: MessageData;
  constructor(maxSize: number, data: MessageData, waitMs?: number) {
    super('bufferFull', waitMs === undefined
      ? `queue full (${maxSize} messages): message rejected`
      : `queue full (${maxSize} messages): wait up to ${waitMs} ms for space`);
    this.maxSize = maxSize;
    this.data = data;
    if (waitMs !== undefined) this.waitMs = waitMs;
  }
}

/** An array with an O(1) front: taking from the front moves a head index. */
class Deque {
  private items: QueuedMessage[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  at(i: number): QueuedMessage | undefined {
    return this.items[this.head + i];
  }

  set(i: number, m: QueuedMessage): void {
    this.items[this.head + i] = m;
  }

  push(m: QueuedMessage): void {
    this.items.push(m);
  }

  shift(): QueuedMessage | undefined {
    if (this.head >= this.items.length) return undefined;
    const m = this.items[this.head]!;
    (this.items as (QueuedMessage | undefined)[])[this.head] = undefined;
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return m;
  }

  /** Inserts before position `i` (0..length). */
  insert(i: number, m: QueuedMessage): void {
    if (i === 0 && this.head > 0) {
      this.head--;
      this.items[this.head] = m;
    } else {
      this.items.splice(this.head + i, 0, m);
    }
  }

  removeAt(i: number): QueuedMessage {
    if (i === 0) return this.shift()!;
    return this.items.splice(this.head + i, 1)[0]!;
  }

  /** Removes the first `n`. */
  removeFront(n: number): QueuedMessage[] {
    const out = this.items.slice(this.head, this.head + n);
    for (let i = 0; i < n; i++) this.shift();
    return out;
  }

  toArray(): QueuedMessage[] {
    return this.items.slice(this.head);
  }

  /** The first position whose id is >= id (ids ascend along a lane). */
  insertionPoint(id: number): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[this.head + mid]!.id < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  findById(id: number): number {
    const pos = this.insertionPoint(id);
    return this.at(pos)?.id === id ? pos : -1;
  }
}

interface Lane {
  priority: number;
  messages: Deque;
}

/**
 * The design's store-and-forward queue: higher priority first, FIFO within a
 * priority, ids from 1 strictly increasing, a bounded size with an explicit
 * overflow policy that never drops silently.
 *
 * `dequeue()` hands a message out and keeps it "in flight" until `remove(id)`
 * (sent) or `markFailed(id)` (put back at the front of its priority, with one
 * more attempt), so the design's loop works as written.
 */
export class MessageQueue {
  readonly maxSize: number;
  readonly maxRetries: number;
  readonly overflow: OverflowPolicy;
  readonly ttlMs: number | undefined;
  private readonly onDropped: ((d: DroppedMessage) => void) | undefined;
  /** Sorted by priority, highest first. */
  private lanes: Lane[] = [];
  private count = 0;
  private nextId = 1;
  private lastEnqueuedAt = -Infinity;
  private readonly inFlight = new Map<number, QueuedMessage>();

  constructor(options: MessageQueueOptions = {}) {
    const maxSize = options.maxSize ?? 1000;
    const maxRetries = options.maxRetries ?? 3;
    if (!Number.isInteger(maxSize) || maxSize < 1) {
      throw new ResilientWebSocketError('invalidConfig', 'maxSize must be at least 1');
    }
    if (!Number.isInteger(maxRetries) || maxRetries < 0) {
      throw new ResilientWebSocketError('invalidConfig', 'maxRetries must be a non-negative integer');
    }
    if (options.ttlMs !== undefined && !(options.ttlMs > 0)) {
      throw new ResilientWebSocketError('invalidConfig', 'ttlMs must be greater than zero (leave it out for no expiry)');
    }
    const overflow = options.overflow ?? 'reject';
    if (typeof overflow === 'object' && !(overflow.waitMs >= 0)) {
      throw new ResilientWebSocketError('invalidConfig', 'overflow.waitMs must be a non-negative number');
    }
    this.maxSize = maxSize;
    this.maxRetries = maxRetries;
    this.overflow = overflow;
    this.ttlMs = options.ttlMs;
    this.onDropped = options.onDropped;
  }

  /** The waiting messages in the order `dequeue()` hands them out (for a persistent client's store). */
  snapshot(): QueuedMessage[] {
    return this.lanes.flatMap((lane) => lane.messages.toArray());
  }

  /** Messages waiting (in flight ones not counted). */
  size(): number {
    return this.count;
  }

  isEmpty(): boolean {
    return this.count === 0;
  }

  isFull(): boolean {
    return this.count >= this.maxSize;
  }

  /** Messages handed out by `dequeue` and not yet removed or failed. */
  inFlightCount(): number {
    return this.inFlight.size;
  }

  /**
   * Adds a message; returns its id. A full queue follows the overflow
   * policy: `'reject'` and `{ waitMs }` throw a `QueueFullError` (nothing
   * changes, no id is used); the drop policies report what they drop to
   * `onDropped` (the incoming message under its new id for `'dropNewest'`,
   * or when its priority is below every queued one).
   */
  enqueue(data: MessageData, priority = 0, now: number = Date.now()): number {
    checkPriority(priority);
    if (this.isFull()) {
      const policy = this.overflow;
      if (policy === 'reject') throw new QueueFullError(this.maxSize, data);
      if (typeof policy === 'object') throw new QueueFullError(this.maxSize, data, policy.waitMs);
      if (policy === 'dropNewest') return this.dropIncoming(data);
      // dropOldest: the oldest message of the lowest priority, unless the
      // incoming one is lower still.
      const lowest = this.lanes[this.lanes.length - 1]!;
      if (priority < lowest.priority) return this.dropIncoming(data);
      const victim = this.popFront(this.lanes.length - 1)!;
      this.report({ id: victim.id, data: victim.data, reason: DropReason.Overflow });
    }
    const id = this.nextId++;
    const enqueuedAt = Math.max(now, this.lastEnqueuedAt);
    this.lastEnqueuedAt = enqueuedAt;
    this.laneFor(priority).messages.push({ id, data, priority, attempts: 0, enqueuedAt });
    this.count++;
    return id;
  }

  /** Takes the next message (highest priority, oldest first); it stays in flight. */
  dequeue(): QueuedMessage | undefined {
    if (this.count === 0) return undefined;
    const m = this.popFront(0)!;
    this.inFlight.set(m.id, m);
    return m;
  }

  /** Up to `max` messages in dequeue order, all in flight. */
  dequeueBatch(max: number): QueuedMessage[] {
    const out: QueuedMessage[] = [];
    while (out.length < max && this.count > 0) out.push(this.dequeue()!);
    return out;
  }

  /** The next message without taking it. */
  peek(): QueuedMessage | undefined {
    return this.lanes[0]?.messages.at(0);
  }

  /** Removes a waiting or in-flight message (sent, or no longer wanted). */
  remove(id: number): QueuedMessage | undefined {
    const flying = this.inFlight.get(id);
    if (flying) {
      this.inFlight.delete(id);
      return flying;
    }
    for (let i = 0; i < this.lanes.length; i++) {
      const lane = this.lanes[i]!;
      const pos = lane.messages.findById(id);
      if (pos >= 0) {
        const m = lane.messages.removeAt(pos);
        if (lane.messages.length === 0) this.lanes.splice(i, 1);
        this.count--;
        return m;
      }
    }
    return undefined;
  }

  /**
   * A send failed: the message goes back to its place at the front of its
   * priority (by id, so a failed batch keeps its order) with one more
   * attempt, or, when its attempts reach `maxRetries`, it is dropped
   * (`retriesExhausted`, reported to `onDropped`). Takes the id or the
   * message (also a copy from `peek`, which updates the queued one).
   * Returns whether the message is queued again.
   */
  markFailed(idOrMessage: number | QueuedMessage): boolean {
    const id = typeof idOrMessage === 'number' ? idOrMessage : idOrMessage.id;
    let message = this.inFlight.get(id);
    this.inFlight.delete(id);
    let queued: { lane: Lane; pos: number; index: number } | undefined;
    for (let i = 0; i < this.lanes.length && !queued; i++) {
      const lane = this.lanes[i]!;
      const pos = lane.messages.findById(id);
      if (pos >= 0) queued = { lane, pos, index: i };
    }
    if (!message && queued) message = queued.lane.messages.at(queued.pos);
    if (!message && typeof idOrMessage === 'object') message = idOrMessage;
    if (!message) return false;
    const attempts = message.attempts + 1;
    if (attempts >= this.maxRetries) {
      if (queued) {
        queued.lane.messages.removeAt(queued.pos);
        if (queued.lane.messages.length === 0) this.lanes.splice(queued.index, 1);
        this.count--;
      }
      this.report({ id, data: message.data, reason: DropReason.RetriesExhausted });
      return false;
    }
    const updated: QueuedMessage = { ...message, attempts };
    if (queued) {
      queued.lane.messages.set(queued.pos, updated);
      return true;
    }
    const lane = this.laneFor(updated.priority);
    const pos = lane.messages.insertionPoint(id);
    // Keep enqueuedAt sorted along the lane so expiry stops at the first live one.
    const before = pos > 0 ? lane.messages.at(pos - 1) : undefined;
    const after = lane.messages.at(pos);
    if (before) updated.enqueuedAt = Math.max(updated.enqueuedAt, before.enqueuedAt);
    if (after) updated.enqueuedAt = Math.min(updated.enqueuedAt, after.enqueuedAt);
    lane.messages.insert(pos, updated);
    this.count++;
    return true;
  }

  /** Drops (and reports) every waiting message older than the TTL; returns them. */
  drainExpired(now: number = Date.now()): DroppedMessage[] {
    const ttl = this.ttlMs;
    if (ttl === undefined) return [];
    const expired: DroppedMessage[] = [];
    for (const lane of this.lanes) {
      let n = 0;
      while (n < lane.messages.length && now - lane.messages.at(n)!.enqueuedAt >= ttl) n++;
      for (const m of lane.messages.removeFront(n)) {
        expired.push({ id: m.id, data: m.data, reason: DropReason.Expired });
      }
    }
    this.lanes = this.lanes.filter((l) => l.messages.length > 0);
    this.count -= expired.length;
    for (const d of expired) this.report(d);
    return expired;
  }

  /** When the next message expires, if a TTL is set and anything waits. */
  nextExpiry(): number | undefined {
    if (this.ttlMs === undefined) return undefined;
    let min: number | undefined;
    for (const lane of this.lanes) {
      const t = lane.messages.at(0)!.enqueuedAt + this.ttlMs;
      if (min === undefined || t < min) min = t;
    }
    return min;
  }

  /** Takes every waiting message out, in dequeue order (not in flight). */
  clear(): QueuedMessage[] {
    const all = this.toArray();
    this.lanes = [];
    this.count = 0;
    return all;
  }

  /** The waiting messages in dequeue order. */
  toArray(): QueuedMessage[] {
    return this.lanes.flatMap((l) => l.messages.toArray());
  }

  private dropIncoming(data: MessageData): number {
    const id = this.nextId++;
    this.report({ id, data, reason: DropReason.Overflow });
    return id;
  }

  private report(d: DroppedMessage): void {
    if (this.onDropped) {
      try {
        this.onDropped(d);
      } catch {
        // A throwing callback must not corrupt the queue.
      }
    }
  }

  private laneFor(priority: number): Lane {
    let lo = 0;
    let hi = this.lanes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.lanes[mid]!.priority > priority) lo = mid + 1;
      else hi = mid;
    }
    const found = this.lanes[lo];
    if (found && found.priority === priority) return found;
    const lane: Lane = { priority, messages: new Deque() };
    this.lanes.splice(lo, 0, lane);
    return lane;
  }

  private popFront(index: number): QueuedMessage | undefined {
    const lane = this.lanes[index];
    if (!lane) return undefined;
    const m = lane.messages.shift();
    if (lane.messages.length === 0) this.lanes.splice(index, 1);
    if (m) this.count--;
    return m;
  }
}

function checkPriority(p: number): void {
  if (!Number.isInteger(p) || p < 0 || p > 255) {
    throw new ResilientWebSocketError('invalidConfig', 'priority must be an integer from 0 to 255');
  }
}
