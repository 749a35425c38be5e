import { asWsError, type ResilientWebSocketError } from './errors.js';
import { MessageQueue, QueueFullError, type DroppedMessage, type MessageData } from './message-queue.js';
import type { Resolved } from './options.js';

/**
 * What `send()` took and could not write yet: Stateless, while
 * disconnected; Stateful, while the window is full (not yet given a seq).
 * Beyond the queue it keeps the two things the queue cannot do alone:
 * dropping expired messages when they expire (`messageTtlMs`), not only
 * when the queue is next touched, and waking the `send()` calls waiting
 * for room (the `{ waitMs }` overflow policy).
 */
export class Outbox {
  readonly queue: MessageQueue;
  private expiryTimer: ReturnType<typeof setTimeout> | undefined;
  private spaceWaiters: (() => void)[] = [];

  constructor(options: Resolved, onDropped: (d: DroppedMessage) => void) {
    this.queue = new MessageQueue({
      maxSize: Math.max(options.maxBufferedMessages, 1),
      maxRetries: Number.MAX_SAFE_INTEGER,
      overflow: options.overflowPolicy,
      ...(options.messageTtlMs !== undefined ? { ttlMs: options.messageTtlMs } : {}),
      onDropped,
    });
  }

  /** Queues a message; the queue's error (`bufferFull`) when it is full. */
  enqueue(data: MessageData, priority: number): true | ResilientWebSocketError {
    try {
      this.queue.enqueue(data, priority);
      this.scheduleExpiry();
      return true;
    } catch (e) {
      if (e instanceof QueueFullError) return e;
      return asWsError(e, 'invalidConfig');
    }
  }

  /** With `messageTtlMs`: drops (and reports) expired messages when they expire. */
  private scheduleExpiry(): void {
    if (this.expiryTimer !== undefined) return;
    const at = this.queue.nextExpiry();
    if (at === undefined) return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.queue.drainExpired();
      this.notifySpace();
      this.scheduleExpiry();
    }, Math.max(0, at - Date.now()));
  }

  /** Resolves when the queue may have room again; rejects with `error` after `waitMs`. */
  waitForSpace(waitMs: number, error: ResilientWebSocketError): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.spaceWaiters = this.spaceWaiters.filter((w) => w !== wake);
        reject(error);
      }, waitMs);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.spaceWaiters.push(wake);
    });
  }

  /** Something left the queue: wakes the waiting `send()` calls (they try again). */
  notifySpace(): void {
    if (this.spaceWaiters.length === 0 || this.queue.isFull()) return;
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }
}
