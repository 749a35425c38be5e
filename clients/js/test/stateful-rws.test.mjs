// Stateful mode against a real `rws serve` (RWS_BIN): exactly once, in order,
// both ways, through a proxy that keeps cutting the TCP link; an oversized
// message refused at send().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode, ConnectionState } from '../dist/index.js';
import { startRws } from './helpers/rws.mjs';
import { startFaultProxy } from './helpers/proxy.mjs';

const COUNT = Number(process.env.RWS_JS_MESSAGES ?? 10_000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test(`stateful: ${COUNT} messages each way through random cuts and one blackholed link, exactly once and in order`, { timeout: 180_000 }, async () => {
  const server = await startRws(['--echo']);
  const proxy = await startFaultProxy(server.port, {
    minLifeMs: Number(process.env.RWS_JS_CUT_MIN_MS ?? 30),
    maxLifeMs: Number(process.env.RWS_JS_CUT_MAX_MS ?? 300),
    seed: Number(process.env.RWS_JS_SEED ?? 7),
    cutting: false,
  });
  const received = [];
  const seqs = [];
  const events = { reconnects: 0, connected: 0, sessionLost: 0, heartbeatTimeouts: 0, errors: [] };
  const client = new ResilientWebSocketTransport(`ws://127.0.0.1:${proxy.port}/ws`, {
    onMessage: (e) => { received.push(e.data); seqs.push(e.seq); },
    onConnected: () => events.connected++,
    onReconnect: () => events.reconnects++,
    onSessionLost: () => events.sessionLost++,
    onError: (e) => events.errors.push(e.kind),
    onClose: (e) => { if (e.error?.kind === 'heartbeatTimeout') events.heartbeatTimeouts++; },
  }, WebSocket, {
    reconnectMode: ReconnectMode.Stateful,
    reconnectInitialDelayMs: 5,
    reconnectMaxDelayMs: 100,
    connectionTimeoutMs: 2000,
    maxBufferedMessages: COUNT + 1,
    // Node's ws socket is pinged: the blackholed link is noticed by silence.
    heartbeatIntervalMs: 250,
    heartbeatTimeoutMs: 750,
  });
  const started = Date.now();
  try {
    await client.connect();
    assert.equal(client.state, ConnectionState.Connected);
    proxy.storm();
    // Spread the stream over about 3 s (many cuts) rather than one burst.
    const pause = Math.max(1, Math.round(3000 / (COUNT / 100)));
    for (let i = 1; i <= COUNT; i++) {
      await client.send(`m${i}`);
      if (i % 100 === 0) await sleep(pause);
      if (i === Math.floor(COUNT / 2)) {
        await until(() => client.state === ConnectionState.Connected, 10_000, 'a live link to blackhole');
        proxy.blackhole();
      }
    }
    await until(() => received.length >= COUNT, 150_000, `${COUNT} echoes (got ${received.length})`);
    proxy.calm();
    await until(() => client.unackedCount === 0, 20_000, 'the server to ack everything');
    await sleep(300); // anything delivered twice would show up by now
    const elapsed = Date.now() - started;
    assert.equal(received.length, COUNT, 'no duplicates');
    for (let i = 0; i < COUNT; i++) {
      if (received[i] !== `m${i + 1}`) assert.fail(`echo ${i + 1} is ${received[i]}, expected m${i + 1}`);
      if (seqs[i] !== i + 1) assert.fail(`server seq ${seqs[i]} at position ${i + 1}`);
    }
    assert.equal(events.sessionLost, 0, 'the session was resumed every time');
    assert.ok(proxy.stats.cuts >= 3, `the proxy cut the link (${proxy.stats.cuts} cuts)`);
    assert.ok(proxy.stats.blackholed >= 1, 'a link was blackholed');
    assert.ok(events.heartbeatTimeouts >= 1, 'and noticed by the heartbeat');
    console.log(`# stateful: ${COUNT} messages each way in ${elapsed} ms, ${proxy.stats.cuts} cuts, `
      + `${events.reconnects} reconnect attempts, ${events.connected} connections, `
      + `${events.heartbeatTimeouts} half-open link(s) noticed by the heartbeat`);
    await client.disconnect();
    assert.equal(client.state, ConnectionState.Disconnected);
  } finally {
    await client.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test('stateful: a message over the server\'s max_message_size is refused at send()', { timeout: 30_000 }, async () => {
  const server = await startRws(['--echo', '--max-message-size', '1000']);
  const received = [];
  const client = new ResilientWebSocketTransport(server.url, {
    onMessage: (e) => received.push(e.data),
  }, WebSocket, { reconnectMode: ReconnectMode.Stateful, heartbeatIntervalMs: 0 });
  try {
    await client.connect();
    assert.equal(client.peerMaxMessageSize, 1000);
    await assert.rejects(client.send('x'.repeat(1001)), (e) => e.kind === 'messageTooLarge');
    // UTF-8 bytes count, not UTF-16 units: 501 x 'é' is 1002 bytes.
    await assert.rejects(client.send('é'.repeat(501)), (e) => e.kind === 'messageTooLarge');
    await assert.rejects(client.send(new Uint8Array(1001)), (e) => e.kind === 'messageTooLarge');
    await client.send('y'.repeat(1000));
    await client.send(new Uint8Array([1, 2, 3]));
    await until(() => received.length === 2, 5000, 'the echoes');
    assert.equal(received[0], 'y'.repeat(1000));
    assert.deepEqual([...new Uint8Array(received[1])], [1, 2, 3]);
    assert.equal(client.state, ConnectionState.Connected, 'nothing oversized reached the server');
  } finally {
    await client.disconnect();
    await server.stop();
  }
});

test('stateful: a restarted server (session gone, 4001) gets the unacknowledged messages again (PROTOCOL.md §7)', { timeout: 60_000 }, async () => {
  let server = await startRws(['--echo']);
  const port = server.port;
  const received = [];
  const lost = [];
  const client = new ResilientWebSocketTransport(server.url, {
    onMessage: (e) => received.push(e.data),
    onSessionLost: (e) => lost.push(e),
  }, WebSocket, {
    reconnectMode: ReconnectMode.Stateful,
    reconnectInitialDelayMs: 20,
    reconnectMaxDelayMs: 200,
    heartbeatIntervalMs: 0,
  });
  try {
    await client.connect();
    for (let i = 1; i <= 50; i++) await client.send(`a${i}`);
    await until(() => received.length === 50 && client.unackedCount === 0, 10_000, 'the first 50');
    await server.stop();
    // Sent while the server is down: they wait in the window.
    for (let i = 1; i <= 50; i++) await client.send(`b${i}`);
    assert.equal(client.unackedCount, 50);
    server = await startRws(['--echo'], { bind: `127.0.0.1:${port}` });
    await until(() => received.length === 100, 20_000, `the 50 sent while down (got ${received.length - 50})`);
    assert.equal(lost.length, 1, 'one session-lost event');
    assert.equal(lost[0].resending, 50);
    assert.deepEqual(received.slice(50), Array.from({ length: 50 }, (_, i) => `b${i + 1}`));
  } finally {
    await client.disconnect();
    await server.stop();
  }
});

test('stateful: a blackholed (half-open) link is detected within the heartbeat timeout and the stream goes on', { timeout: 60_000 }, async () => {
  const server = await startRws(['--echo']);
  const proxy = await startFaultProxy(server.port, { cutting: false });
  const received = [];
  const closes = [];
  const client = new ResilientWebSocketTransport(`ws://127.0.0.1:${proxy.port}/ws`, {
    onMessage: (e) => received.push(e.data),
    onClose: (e) => closes.push({ at: Date.now(), kind: e.error?.kind }),
  }, WebSocket, {
    reconnectMode: ReconnectMode.Stateful,
    reconnectInitialDelayMs: 10,
    reconnectMaxDelayMs: 50,
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 600,
  });
  try {
    await client.connect();
    for (let i = 1; i <= 100; i++) await client.send(`m${i}`);
    await until(() => received.length === 100 && client.unackedCount === 0, 10_000, 'the first 100');
    proxy.blackhole();
    const t0 = Date.now();
    for (let i = 101; i <= 200; i++) await client.send(`m${i}`);
    await until(() => closes.length > 0, 5000, 'the dead link to be noticed');
    const detectedMs = closes[0].at - t0;
    assert.equal(closes[0].kind, 'heartbeatTimeout');
    assert.ok(detectedMs <= 600 + 200 + 300, `detected after ${detectedMs} ms (timeout 600 ms, interval 200 ms)`);
    await until(() => received.length >= 200, 10_000, `the rest (got ${received.length})`);
    await sleep(200);
    assert.deepEqual(received, Array.from({ length: 200 }, (_, i) => `m${i + 1}`));
    console.log(`# half-open link detected after ${detectedMs} ms (heartbeat 200 ms, timeout 600 ms)`);
  } finally {
    await client.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test('stateful: a server shutting down (1012) is left after its drain and rejoined after the advised delay, nothing lost', { timeout: 60_000 }, async () => {
  const args = ['--echo', '--shutdown-reconnect-after', '300ms', '--shutdown-spread', '100ms', '--shutdown-drain', '2s'];
  let server = await startRws(args);
  const port = server.port;
  const received = [];
  const reconnects = [];
  const closes = [];
  const client = new ResilientWebSocketTransport(server.url, {
    onMessage: (e) => received.push(e.data),
    onReconnect: (e) => reconnects.push(e),
    onClose: (e) => closes.push(e),
  }, WebSocket, { reconnectMode: ReconnectMode.Stateful, reconnectInitialDelayMs: 10, reconnectMaxDelayMs: 50, heartbeatIntervalMs: 0 });
  try {
    await client.connect();
    for (let i = 1; i <= 500; i++) await client.send(`m${i}`);
    const stopped = server.terminate();
    await until(() => closes.length > 0, 10_000, 'the 1012 close');
    assert.equal(closes[0].code, 1012);
    await stopped;
    assert.ok(reconnects[0].delayMs >= 300 && reconnects[0].delayMs <= 401, `advised delay, got ${reconnects[0].delayMs}`);
    for (let i = 501; i <= 600; i++) await client.send(`m${i}`);
    server = await startRws(args, { bind: `127.0.0.1:${port}` });
    await until(() => received.length >= 600, 20_000, `all echoes (got ${received.length})`);
    await sleep(200);
    assert.deepEqual(received, Array.from({ length: 600 }, (_, i) => `m${i + 1}`), 'the drain delivered and acked everything: exactly once');
  } finally {
    await client.disconnect();
    await server.stop();
  }
});

test('stateful: binary messages up to 20 KB through cuts with a 64 KiB unacked window (backpressure), exactly once and in order', { timeout: 90_000 }, async () => {
  const server = await startRws(['--echo', '--max-unacked-bytes', '65536']);
  const proxy = await startFaultProxy(server.port, { minLifeMs: 50, maxLifeMs: 300, seed: 3, cutting: false });
  const got = [];
  const client = new ResilientWebSocketTransport(`ws://127.0.0.1:${proxy.port}/ws`, { onMessage: (e) => got.push(e.data) }, WebSocket, {
    reconnectMode: ReconnectMode.Stateful, reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 50, maxBufferedMessages: 1000, heartbeatIntervalMs: 0,
  });
  try {
    await client.connect();
    proxy.storm();
    const N = 300;
    const sizes = [];
    for (let i = 0; i < N; i++) {
      const len = 1 + ((i * 7919) % 20_000);
      const b = new Uint8Array(len);
      b[0] = i & 255;
      b[len - 1] = i >> 8;
      sizes.push(len);
      await client.send(b);
    }
    assert.ok(client.bufferedCount > 0, 'the window was full: the rest waited in the outbox');
    await until(() => got.length >= N, 60_000, `${N} echoes (got ${got.length})`);
    await sleep(200);
    assert.equal(got.length, N);
    got.forEach((data, i) => {
      const b = new Uint8Array(data);
      if (b.length !== sizes[i] || b[0] !== (i & 255) || b[b.length - 1] !== i >> 8) assert.fail(`echo ${i} differs`);
    });
    assert.ok(proxy.stats.cuts >= 3, `${proxy.stats.cuts} cuts`);
  } finally {
    await client.disconnect();
    await proxy.close();
    await server.stop();
  }
});
