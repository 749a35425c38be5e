// The transport's reconnect logic against a fake WebSocket (no network, short
// configured durations): attempts, backoff bounds, giving up after
// maxReconnectAttempts, the attempt counter restarting after minUptimeMs,
// message TTL and priorities in the outbox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResilientWebSocketTransport, ConnectionState, ReconnectMode } from '../dist/index.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** A WebSocket whose server is a flag: up or down. */
function fakeWorld() {
  const world = { up: true, sockets: [], sent: [] };
  world.Ctor = class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = '';
      this.bufferedAmount = 0;
      this.binaryType = 'blob';
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      world.sockets.push(this);
      setTimeout(() => {
        if (world.up) {
          this.readyState = 1;
          this.onopen?.({});
        } else {
          this.readyState = 3;
          this.onerror?.({});
          this.onclose?.({ code: 1006, reason: '' });
        }
      }, 1);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      world.sent.push(data);
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason: '' }), 1);
    }
    /** The server drops the connection. */
    drop() {
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: '' });
    }
  };
  return world;
}

test('gives up after maxReconnectAttempts with delays inside [initial, min(initial * 2^n, max)]', async () => {
  const world = fakeWorld();
  const reconnects = [];
  const states = [];
  const client = new ResilientWebSocketTransport('ws://fake/', {
    onReconnect: (e) => reconnects.push(e),
    onStateChange: (e) => states.push(e.currentState),
  }, world.Ctor, { maxReconnectAttempts: 3, reconnectInitialDelayMs: 4, reconnectMaxDelayMs: 10 });
  await client.connect();
  world.up = false;
  world.sockets.at(-1).drop();
  await until(() => client.state === ConnectionState.Disconnected, 2000, 'giving up');
  assert.deepEqual(reconnects.map((r) => r.attempt), [1, 2, 3]);
  for (const r of reconnects) {
    assert.ok(r.delayMs >= 4 && r.delayMs <= Math.min(4 * 2 ** r.attempt, 10), `attempt ${r.attempt}: ${r.delayMs}`);
    assert.equal(r.reason.kind, 'connectionLost');
  }
  assert.equal(world.sockets.length, 4, 'the first connection and three attempts');
  assert.deepEqual(states, ['Connecting', 'Connected', 'Reconnecting', 'Disconnected']);
});

test('the attempt counter starts again once a connection stayed up for minUptimeMs', async () => {
  const world = fakeWorld();
  const attempts = [];
  const client = new ResilientWebSocketTransport('ws://fake/', {
    onReconnect: (e) => attempts.push(e.attempt),
  }, world.Ctor, { reconnectInitialDelayMs: 2, reconnectMaxDelayMs: 5, minUptimeMs: 50 });
  await client.connect();
  // A server that accepts and drops at once keeps backing off...
  world.sockets.at(-1).drop();
  await until(() => client.state === ConnectionState.Connected, 1000, 'reconnect 1');
  world.sockets.at(-1).drop();
  await until(() => client.state === ConnectionState.Connected, 1000, 'reconnect 2');
  // ...one that stays up resets the count.
  await sleep(70);
  world.sockets.at(-1).drop();
  await until(() => attempts.length === 3 && client.state === ConnectionState.Connected, 1000, 'reconnect 3');
  assert.deepEqual(attempts, [1, 2, 1]);
  await client.disconnect();
  assert.equal(client.state, ConnectionState.Disconnected);
});

test('buffered messages go out by priority, and expire after messageTtlMs with a drop event', async () => {
  const world = fakeWorld();
  world.up = false;
  const dropped = [];
  const client = new ResilientWebSocketTransport('ws://fake/', {
    onMessageDropped: (d) => dropped.push(d),
  }, world.Ctor, { messageTtlMs: 30, reconnectMode: ReconnectMode.Stateless });
  await client.send('old');
  await sleep(40);
  assert.deepEqual(dropped.map((d) => [d.data, d.reason]), [['old', 'expired']]);
  await client.send('low', 0);
  await client.send('high', 5);
  world.up = true;
  await client.connect();
  assert.deepEqual(world.sent, ['high', 'low']);
  await client.send('direct');
  assert.deepEqual(world.sent, ['high', 'low', 'direct']);
  await client.disconnect();
});

test('disconnect() while waiting to reconnect stops trying; connect() after it starts again', async () => {
  const world = fakeWorld();
  const client = new ResilientWebSocketTransport('ws://fake/', {}, world.Ctor, { reconnectInitialDelayMs: 200, reconnectMaxDelayMs: 200 });
  await client.connect();
  world.up = false;
  world.sockets.at(-1).drop();
  await until(() => client.state === ConnectionState.Reconnecting, 1000, 'Reconnecting');
  const t0 = Date.now();
  await client.disconnect();
  assert.ok(Date.now() - t0 < 100, 'did not wait for the retry timer');
  assert.equal(client.state, ConnectionState.Disconnected);
  await sleep(250);
  assert.equal(world.sockets.length, 1, 'no attempt after disconnect()');
  world.up = true;
  await client.connect();
  assert.equal(client.state, ConnectionState.Connected);
  await client.disconnect();
});

test('the first connect is not retried: it rejects, and the state is Disconnected', async () => {
  const world = fakeWorld();
  world.up = false;
  const client = new ResilientWebSocketTransport('ws://fake/', {}, world.Ctor, { reconnectInitialDelayMs: 1, reconnectMaxDelayMs: 2 });
  await assert.rejects(client.connect(), (e) => e.kind === 'connectionLost');
  assert.equal(client.state, ConnectionState.Disconnected);
  await sleep(20);
  assert.equal(world.sockets.length, 1);
});

test('a bad URL fails with invalidUrl, never showing the token', async () => {
  const world = fakeWorld();
  for (const url of ['http://[bad', 'ftp://h/x?access_token=old']) {
    const client = new ResilientWebSocketTransport(url, {}, world.Ctor, { getAuthToken: () => 's3cret' });
    await assert.rejects(client.connect(), (e) => e.kind === 'invalidUrl' && !e.message.includes('s3cret') && !e.message.includes('old'));
  }
  // http(s) URLs are taken as ws(s), with the token in the opted-in query parameter.
  const client = new ResilientWebSocketTransport('http://h/ws?x=1', {}, world.Ctor, { getAuthToken: () => 's3cret' });
  await client.connect();
  assert.equal(world.sockets.at(-1).url, 'ws://h/ws?x=1&access_token=s3cret');
  await client.disconnect();
  const header = new ResilientWebSocketTransport('ws://h/ws', {}, class extends world.Ctor {
    constructor(url, protocols, options) {
      super(url, protocols);
      this.options = options;
    }
  }, { getAuthToken: () => 's3cret', authTokenQueryParam: null });
  await header.connect();
  assert.equal(world.sockets.at(-1).url, 'ws://h/ws');
  assert.deepEqual(world.sockets.at(-1).options, { headers: { Authorization: 'Bearer s3cret' } });
  await header.disconnect();
});
