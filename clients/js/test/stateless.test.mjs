// Stateless mode against a plain Node `ws` server that restarts: messages
// sent while it is down are buffered and delivered in order after the
// reconnect; ReconnectMode.None ends in Disconnected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { ResilientWebSocket, ReconnectMode, ConnectionState } from '../dist/index.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function startPlain(port, got) {
  return new Promise((resolve) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port }, () => resolve(wss));
    wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => {
        const text = isBinary ? `bin:${[...data].join(',')}` : data.toString();
        got.push(text);
        ws.send(`echo:${text}`);
      });
    });
  });
}

function stopPlain(wss) {
  return new Promise((resolve) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => resolve());
  });
}

test('stateless: buffered messages reach a restarted plain ws server in order', async () => {
  const got = [];
  let wss = await startPlain(0, got);
  const port = wss.address().port;
  const echoes = [];
  const reconnects = [];
  const states = [];
  const ws = new ResilientWebSocket(`ws://127.0.0.1:${port}/`, {
    onMessage: (e) => echoes.push(e.data),
    onReconnect: (e) => reconnects.push(e),
    onStateChange: (e) => states.push(e.currentState),
  }, { WebSocket, reconnectMode: ReconnectMode.Stateless, reconnectInitialDelayMs: 10, reconnectMaxDelayMs: 50, heartbeatIntervalMs: 0 });
  try {
    await ws.connect();
    await ws.send('before');
    await until(() => got.length === 1, 5000, 'the first message');
    await stopPlain(wss);
    await until(() => ws.state === ConnectionState.Reconnecting, 5000, 'Reconnecting');
    for (let i = 1; i <= 200; i++) await ws.send(`m${i}`);
    await ws.send(new Uint8Array([7, 8]));
    await sleep(100); // a few failed attempts against the closed port
    assert.ok(reconnects.length >= 2, `kept trying (${reconnects.length} attempts)`);
    assert.ok(reconnects.every((r) => r.delayMs >= 10 && r.delayMs <= 50), 'delays within [initial, max]');
    assert.deepEqual(reconnects.map((r) => r.attempt), reconnects.map((_, i) => i + 1));
    wss = await startPlain(port, got);
    await until(() => got.length === 202, 10_000, `the buffered messages (got ${got.length - 1})`);
    assert.deepEqual(got, ['before', ...Array.from({ length: 200 }, (_, i) => `m${i + 1}`), 'bin:7,8']);
    await until(() => echoes.length === 202, 5000, 'the echoes');
    assert.equal(echoes[1], 'echo:m1');
    assert.equal(ws.state, ConnectionState.Connected);
    await ws.disconnect();
    assert.equal(ws.state, ConnectionState.Disconnected);
    assert.deepEqual(states.slice(0, 3), [ConnectionState.Connecting, ConnectionState.Connected, ConnectionState.Reconnecting]);
    assert.deepEqual(states.slice(-2), [ConnectionState.Disconnecting, ConnectionState.Disconnected]);
  } finally {
    await ws.disconnect();
    await stopPlain(wss);
  }
});

test('stateless: buffering off refuses send() while disconnected; ReconnectMode.None ends in Disconnected', async () => {
  const got = [];
  const wss = await startPlain(0, got);
  const port = wss.address().port;
  const errors = [];
  const ws = new ResilientWebSocket(`ws://127.0.0.1:${port}/`, { onError: (e) => errors.push(e) },
    { WebSocket, reconnectMode: ReconnectMode.None, enableMessageBuffering: false, heartbeatIntervalMs: 0 });
  try {
    await assert.rejects(ws.send('early'), (e) => e.kind === 'notConnected');
    await ws.connect();
    await ws.send('hi');
    await until(() => got.length === 1, 5000, 'hi');
    for (const c of wss.clients) c.terminate();
    await until(() => ws.state === ConnectionState.Disconnected, 5000, 'Disconnected');
    assert.equal(errors.at(-1).kind, 'connectionLost');
  } finally {
    await ws.disconnect();
    await stopPlain(wss);
  }
});

test('stateless: the overflow policy reports drops; reject refuses at send()', async () => {
  const dropped = [];
  // Never connected: everything is buffered.
  const ws = new ResilientWebSocket('ws://127.0.0.1:9/', { onMessageDropped: (d) => dropped.push(d) },
    { WebSocket, maxBufferedMessages: 2, overflowPolicy: 'dropOldest', heartbeatIntervalMs: 0 });
  for (const t of ['a', 'b', 'c']) await ws.send(t);
  assert.deepEqual(dropped.map((d) => [d.id, d.data, d.reason]), [[1, 'a', 'overflow']]);
  const strict = new ResilientWebSocket('ws://127.0.0.1:9/', {}, { WebSocket, maxBufferedMessages: 1, heartbeatIntervalMs: 0 });
  await strict.send('a');
  await assert.rejects(strict.send('b'), (e) => e.kind === 'bufferFull');
  const waiting = new ResilientWebSocket('ws://127.0.0.1:9/', {}, { WebSocket, maxBufferedMessages: 1, overflowPolicy: { waitMs: 30 }, heartbeatIntervalMs: 0 });
  await waiting.send('a');
  const t0 = Date.now();
  await assert.rejects(waiting.send('b'), (e) => e.kind === 'bufferFull');
  assert.ok(Date.now() - t0 >= 25, 'waited for room first');
});
