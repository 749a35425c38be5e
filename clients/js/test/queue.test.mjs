// Unit tests of the JS MessageQueue, mirroring src/queue/message_queue.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageQueue, QueueFullError, DropReason } from '../dist/index.js';

const texts = (q) => q.toArray().map((m) => m.data);
const drain = (q) => {
  const out = [];
  for (let m = q.dequeue(); m; m = q.dequeue()) out.push(m.data);
  return out;
};
function withDrops(options) {
  const dropped = [];
  const q = new MessageQueue({ ...options, onDropped: (d) => dropped.push(d) });
  return [q, dropped];
}

test('dequeues higher priority first and FIFO within a priority', () => {
  const q = new MessageQueue();
  for (const [t, p] of [['low1', 1], ['high1', 200], ['mid1', 5], ['low2', 1], ['high2', 200], ['mid2', 5], ['zero', 0], ['top', 255]]) q.enqueue(t, p);
  const expected = ['top', 'high1', 'high2', 'mid1', 'mid2', 'low1', 'low2', 'zero'];
  assert.deepEqual(texts(q), expected, 'toArray is in dequeue order');
  assert.equal(q.peek().data, 'top');
  assert.deepEqual(drain(q), expected);
  assert.ok(q.isEmpty());
  assert.equal(q.dequeue(), undefined);
  assert.equal(q.peek(), undefined);
});

test('ids start at one and strictly increase across priorities and drains', () => {
  const q = new MessageQueue();
  const a = q.enqueue('a', 3);
  const b = q.enqueue('b', 0);
  q.dequeue();
  q.clear();
  const c = q.enqueue('c', 3);
  assert.deepEqual([a, b, c], [1, 2, 3]);
});

test('a full queue with reject throws QueueFullError and leaves the queue unchanged', () => {
  const q = new MessageQueue({ maxSize: 2 });
  q.enqueue('a', 0);
  q.enqueue('b', 9);
  assert.ok(q.isFull());
  const before = q.toArray();
  assert.throws(() => q.enqueue('c', 5), (e) => e instanceof QueueFullError && e.kind === 'bufferFull' && e.maxSize === 2 && e.data === 'c');
  assert.deepEqual(q.toArray(), before);
  assert.equal(q.size(), 2);
  q.dequeue();
  assert.equal(q.enqueue('d', 0), 3, 'the refused message used no id');
});

test('dropOldest evicts the oldest message of the lowest priority and reports its id', () => {
  const [q, dropped] = withDrops({ maxSize: 4, overflow: 'dropOldest' });
  q.enqueue('high-old', 9);
  const lowOld = q.enqueue('low-old', 1);
  q.enqueue('low-new', 1);
  q.enqueue('mid', 5);
  assert.equal(q.enqueue('incoming', 1), 5);
  assert.deepEqual(dropped, [{ id: lowOld, data: 'low-old', reason: DropReason.Overflow }]);
  assert.equal(q.size(), 4);
  assert.deepEqual(texts(q), ['high-old', 'mid', 'low-new', 'incoming']);
});

test('dropOldest drops the incoming message when its priority is the lowest', () => {
  const [q, dropped] = withDrops({ maxSize: 2, overflow: 'dropOldest' });
  q.enqueue('a', 5);
  q.enqueue('b', 5);
  const id = q.enqueue('lower', 4);
  assert.deepEqual(dropped, [{ id, data: 'lower', reason: DropReason.Overflow }]);
  assert.deepEqual(texts(q), ['a', 'b']);
});

test('dropNewest reports the incoming message under its new id', () => {
  const [q, dropped] = withDrops({ maxSize: 2, overflow: 'dropNewest' });
  q.enqueue('a', 0);
  q.enqueue('b', 0);
  assert.equal(q.enqueue('c', 200), 3);
  assert.deepEqual(dropped, [{ id: 3, data: 'c', reason: DropReason.Overflow }]);
  assert.deepEqual(texts(q), ['a', 'b']);
  q.dequeue();
  assert.equal(q.enqueue('d', 0), 4);
});

test('the wait policy throws QueueFullError with the wait time and the payload', () => {
  const q = new MessageQueue({ maxSize: 1, overflow: { waitMs: 250 } });
  q.enqueue('a', 0);
  const bytes = new Uint8Array([1, 2]);
  assert.throws(() => q.enqueue(bytes, 0), (e) => e instanceof QueueFullError && e.waitMs === 250 && e.data === bytes);
  assert.deepEqual(texts(q), ['a']);
  q.dequeue();
  q.enqueue(bytes, 0);
  assert.equal(q.size(), 1);
});

test('remove takes out exactly the message with that id, waiting or in flight', () => {
  const q = new MessageQueue();
  q.enqueue('a', 1);
  const b = q.enqueue('b', 1);
  q.enqueue('c', 1);
  const d = q.enqueue('d', 7);
  assert.equal(q.remove(b).data, 'b');
  assert.equal(q.remove(b), undefined, 'already removed');
  assert.equal(q.remove(99), undefined);
  assert.equal(q.remove(d).priority, 7);
  assert.equal(q.size(), 2);
  assert.deepEqual(texts(q), ['a', 'c']);
  const m = q.dequeue();
  assert.equal(q.inFlightCount(), 1);
  assert.equal(q.remove(m.id).data, 'a', 'the design loop: dequeue, send, remove');
  assert.equal(q.inFlightCount(), 0);
  assert.deepEqual(drain(q), ['c']);
});

test('markFailed puts the message back at the front of its priority with one more attempt', () => {
  const q = new MessageQueue();
  q.enqueue('high', 9);
  const first = q.enqueue('first', 1);
  q.enqueue('second', 1);
  assert.equal(q.dequeue().data, 'high');
  const msg = q.dequeue();
  assert.deepEqual([msg.id, msg.attempts], [first, 0]);
  q.enqueue('third', 1);
  assert.equal(q.markFailed(msg.id), true);
  assert.equal(q.size(), 3);
  assert.deepEqual([q.peek().id, q.peek().attempts], [first, 1]);
  assert.deepEqual(texts(q), ['first', 'second', 'third']);
});

test('markFailed restores the original order of a failed batch given back in any order', () => {
  const q = new MessageQueue();
  for (const t of ['a', 'b', 'c', 'd']) q.enqueue(t, 0);
  const batch = q.dequeueBatch(3);
  q.enqueue('e', 0);
  const [b] = batch.splice(1, 1);
  q.markFailed(b);
  for (const m of batch) q.markFailed(m);
  assert.deepEqual(texts(q), ['a', 'b', 'c', 'd', 'e']);
});

test('markFailed dead-letters the message when its attempts reach maxRetries', () => {
  const [q, dropped] = withDrops({ maxRetries: 3 });
  const id = q.enqueue('doomed', 4);
  q.enqueue('other', 4);
  for (let attempt = 1; attempt < 3; attempt++) {
    const msg = q.dequeue();
    assert.equal(msg.id, id);
    assert.equal(q.markFailed(msg.id), true, `attempt ${attempt} is retried`);
  }
  const msg = q.dequeue();
  assert.equal(msg.attempts, 2);
  assert.equal(q.markFailed(msg.id), false);
  assert.deepEqual(dropped, [{ id, data: 'doomed', reason: DropReason.RetriesExhausted }]);
  assert.deepEqual(texts(q), ['other']);
  assert.equal(q.size(), 1);
});

test('markFailed on a peeked message updates the queued one instead of duplicating it', () => {
  const [q, dropped] = withDrops({ maxRetries: 2 });
  const id = q.enqueue('a', 0);
  assert.equal(q.markFailed({ ...q.peek() }), true);
  assert.equal(q.size(), 1);
  assert.equal(q.peek().attempts, 1);
  assert.equal(q.markFailed(q.peek()), false);
  assert.equal(dropped[0].reason, DropReason.RetriesExhausted);
  assert.equal(dropped[0].id, id);
  assert.ok(q.isEmpty(), 'the dead letter leaves the queue');
});

test('drainExpired drops messages queued for the TTL and reports their ids in dequeue order', () => {
  const [q, dropped] = withDrops({ ttlMs: 60_000 });
  const t0 = 1_000_000;
  const a = q.enqueue('a', 0, t0);
  const b = q.enqueue('b', 9, t0);
  assert.deepEqual(q.drainExpired(t0 + 59_999), [], 'not yet expired');
  assert.equal(q.nextExpiry(), t0 + 60_000);
  const expired = q.drainExpired(t0 + 60_000);
  assert.deepEqual(expired, [
    { id: b, data: 'b', reason: DropReason.Expired },
    { id: a, data: 'a', reason: DropReason.Expired },
  ]);
  assert.deepEqual(dropped, expired);
  assert.ok(q.isEmpty());
  assert.equal(q.nextExpiry(), undefined);
});

test('drainExpired keeps messages enqueued after the cutoff', () => {
  const q = new MessageQueue({ ttlMs: 10_000 });
  const t0 = 5_000_000;
  const young = t0 + 5000;
  const ids = [['old-low', 0, t0], ['old-high', 7, t0], ['young-low', 0, young], ['young-mid', 3, young]]
    .map(([t, p, at]) => q.enqueue(t, p, at));
  assert.equal(q.nextExpiry(), t0 + 10_000);
  const expired = q.drainExpired(t0 + 10_000);
  assert.deepEqual(expired.map((d) => d.id), [ids[1], ids[0]]);
  assert.equal(q.size(), 2);
  assert.equal(q.nextExpiry(), young + 10_000);
  assert.deepEqual(drain(q), ['young-mid', 'young-low']);
});

test('enqueue never stamps a message earlier than the previous one', () => {
  const q = new MessageQueue();
  const t0 = 10_000;
  q.enqueue('a', 0, t0);
  q.enqueue('b', 0, t0 - 1000);
  assert.deepEqual(q.toArray().map((m) => m.enqueuedAt), [t0, t0]);
});

test('drainExpired without a TTL drops nothing', () => {
  const q = new MessageQueue();
  q.enqueue('a', 0);
  assert.deepEqual(q.drainExpired(Date.now() + 365 * 24 * 3600 * 1000), []);
  assert.equal(q.nextExpiry(), undefined);
  assert.equal(q.size(), 1);
});

test('dequeueBatch respects priority order and max; clear returns everything in dequeue order', () => {
  const q = new MessageQueue();
  for (const [t, p] of [['l1', 1], ['h1', 8], ['l2', 1], ['h2', 8], ['m1', 4]]) q.enqueue(t, p);
  assert.deepEqual(q.dequeueBatch(3).map((m) => m.data), ['h1', 'h2', 'm1']);
  assert.deepEqual(q.dequeueBatch(0), []);
  assert.deepEqual(q.clear().map((m) => m.data), ['l1', 'l2']);
  assert.ok(q.isEmpty());
});

test('zero maxSize, a bad TTL or priority are invalid config (persistent is the transport\'s store: see persistent.test)', () => {
  for (const options of [{ maxSize: 0 }, { ttlMs: 0 }]) {
    assert.throws(() => new MessageQueue(options), (e) => e.kind === 'invalidConfig', JSON.stringify(options));
  }
  const q = new MessageQueue();
  for (const p of [-1, 256, 1.5]) assert.throws(() => q.enqueue('x', p), (e) => e.kind === 'invalidConfig');
});

test('defaults match the documented values', () => {
  const q = new MessageQueue();
  assert.equal(q.maxSize, 1000);
  assert.equal(q.maxRetries, 3);
  assert.equal(q.overflow, 'reject');
  assert.equal(q.ttlMs, undefined);
});

test('the design\'s loop: enqueue, dequeue, remove on success, markFailed on failure', () => {
  const q = new MessageQueue({ maxSize: 1000, maxRetries: 5, persistent: false });
  q.enqueue('Hello', 1);
  q.enqueue('flaky', 1);
  const sent = [];
  let failures = 0;
  while (!q.isEmpty()) {
    const message = q.dequeue();
    if (message.data === 'flaky' && failures < 2) {
      failures++;
      q.markFailed(message.id);
    } else {
      sent.push(message.data);
      q.remove(message.id);
    }
  }
  assert.deepEqual(sent, ['Hello', 'flaky']);
  assert.equal(q.inFlightCount(), 0);
});

test('random operations match a simple model', () => {
  // A seeded generator, as the Rust test's StdRng.
  for (const [seed, policy] of ['reject', 'dropOldest', 'dropNewest', { waitMs: 5 }].entries()) {
    let s = 0x5eed + seed;
    const rand = (n) => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return Math.floor((s / 2147483648) * n);
    };
    const maxSize = 8;
    const maxRetries = 3;
    const q = new MessageQueue({ maxSize, maxRetries, overflow: policy });
    let model = [];
    let inFlight = [];
    let nextId = 1;
    const order = () => model.sort((a, b) => b.priority - a.priority || a.id - b.id);
    for (let step = 0; step < 5000; step++) {
      const op = rand(10);
      if (op <= 3) {
        const priority = rand(4);
        const data = `m${nextId}`;
        if (model.length < maxSize) {
          assert.equal(q.enqueue(data, priority), nextId);
          model.push({ id: nextId++, priority, attempts: 0, data });
        } else if (policy === 'reject' || typeof policy === 'object') {
          assert.throws(() => q.enqueue(data, priority), QueueFullError);
        } else if (policy === 'dropNewest') {
          assert.equal(q.enqueue(data, priority), nextId++);
        } else {
          const lowest = Math.min(...model.map((m) => m.priority));
          const id = q.enqueue(data, priority);
          assert.equal(id, nextId++);
          if (priority >= lowest) {
            const victim = model.filter((m) => m.priority === lowest).sort((a, b) => a.id - b.id)[0];
            model = model.filter((m) => m !== victim);
            model.push({ id, priority, attempts: 0, data });
          }
        }
      } else if (op <= 5) {
        order();
        const expected = model.shift();
        const got = q.dequeue();
        assert.equal(got?.id, expected?.id);
        if (got) inFlight.push(got);
      } else if (op === 6) {
        const max = rand(5);
        order();
        const expected = model.splice(0, max).map((m) => m.id);
        const got = q.dequeueBatch(max);
        assert.deepEqual(got.map((m) => m.id), expected);
        inFlight.push(...got);
      } else if (op === 7 && inFlight.length > 0) {
        const [msg] = inFlight.splice(rand(inFlight.length), 1);
        const requeued = q.markFailed(msg.id);
        assert.equal(requeued, msg.attempts + 1 < maxRetries);
        if (requeued) model.push({ id: msg.id, priority: msg.priority, attempts: msg.attempts + 1, data: msg.data });
      } else if (op === 8 && nextId > 1) {
        const id = 1 + rand(nextId - 1);
        const i = model.findIndex((m) => m.id === id);
        const flying = inFlight.findIndex((m) => m.id === id);
        const expected = i >= 0 ? model.splice(i, 1)[0].id : flying >= 0 ? inFlight.splice(flying, 1)[0].id : undefined;
        assert.equal(q.remove(id)?.id, expected);
      } else if (inFlight.length > 0) {
        const [sent] = inFlight.splice(rand(inFlight.length), 1);
        q.remove(sent.id);
      }
      order();
      assert.deepEqual(q.toArray().map(({ id, priority, attempts, data }) => ({ id, priority, attempts, data })), model, `${JSON.stringify(policy)}, step ${step}`);
      assert.equal(q.size(), model.length);
      assert.equal(q.isEmpty(), model.length === 0);
      assert.equal(q.inFlightCount(), inFlight.length);
    }
  }
});
