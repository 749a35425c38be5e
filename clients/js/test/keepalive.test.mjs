// The protocol's keep-alive frames (PROTOCOL.md §5a), used when the socket
// cannot send WebSocket pings (a browser page, Node's global WebSocket):
// PING frames against `rws serve` keep the link up and notice a blackholed
// one; a server that predates them gets no PING and the client says once
// that it has no heartbeat. The socket here is Node's `ws` with `ping`
// hidden, as a browser's WebSocket has none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode, ConnectionState, encodePing, decodeFrame, parseNegotiateResponse } from '../dist/index.js';
import { startRws } from './helpers/rws.mjs';
import { startFaultProxy } from './helpers/proxy.mjs';
import { startFakeReliable, welcome } from './helpers/fake-reliable.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Node's ws without `ping`: what a browser's WebSocket offers. */
class NoPingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.pingsAttempted = 0;
    NoPingWebSocket.last = this;
  }
}
Object.defineProperty(NoPingWebSocket.prototype, 'ping', { value: undefined });

test('PING/PONG frames: wire format and the negotiate flag', () => {
  assert.deepEqual([...encodePing(300)], [0x06, 0xac, 0x02]);
  assert.deepEqual(decodeFrame(Uint8Array.from([0x07, 0xac, 0x02])), { type: 'pong', nonce: 300 });
  assert.deepEqual(decodeFrame(Uint8Array.from([0x06, 0x01])), { type: 'ping', nonce: 1 });
  const body = {
    protocol: 'rws.reliable.v1', version: 1, connection_id: '0'.repeat(32), reconnect_token: 't'.repeat(43),
    url: null, resume_window_ms: 1, max_message_size: 1, max_unacked_bytes: 1, ack_interval_ms: 1, ack_threshold: 1,
  };
  assert.equal(parseNegotiateResponse(body, 'ws://h/ws', false).pingFrames, false, 'absent: an older server');
  assert.equal(parseNegotiateResponse({ ...body, ping_frames: true }, 'ws://h/ws', false).pingFrames, true);
});

test('stateful without WebSocket pings: PING frames keep the link up, a blackholed link is noticed within the timeout, the session resumes', { timeout: 60_000 }, async () => {
  const server = await startRws(['--echo']);
  const proxy = await startFaultProxy(server.port, { cutting: false });
  const received = [];
  const errors = [];
  let heartbeatTimeouts = 0;
  const client = new ResilientWebSocketTransport(`ws://127.0.0.1:${proxy.port}/ws`, {
    onMessage: (e) => received.push(e.data),
    onError: (e) => errors.push(e.kind),
    onClose: (e) => { if (e.error?.kind === 'heartbeatTimeout') heartbeatTimeouts++; },
  }, NoPingWebSocket, {
    reconnectMode: ReconnectMode.Stateful,
    reconnectInitialDelayMs: 5,
    reconnectMaxDelayMs: 50,
    heartbeatIntervalMs: 100,
    heartbeatTimeoutMs: 500,
  });
  try {
    await client.connect();
    await client.send('before');
    await until(() => received.length === 1, 10_000, 'the echo');
    // Quiet for several timeouts: only PONGs arrive, and they suffice.
    await sleep(1500);
    assert.equal(client.state, ConnectionState.Connected);
    assert.equal(heartbeatTimeouts, 0);
    assert.deepEqual(errors, []);
    proxy.blackhole();
    const cutAt = Date.now();
    await until(() => heartbeatTimeouts === 1, 10_000, 'the heartbeat timeout');
    const after = Date.now() - cutAt;
    assert.ok(after >= 350 && after < 1500, `noticed within the timeout: ${after} ms`);
    await until(() => client.state === ConnectionState.Connected, 10_000, 'the resumed session');
    await client.send('after');
    await until(() => received.length === 2, 10_000, 'the echo after resuming');
    assert.deepEqual(received, ['before', 'after']);
  } finally {
    await client.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test('stateful without WebSocket pings against a server that predates PING frames: no PING sent, noHeartbeat said once', async () => {
  const fake = await startFakeReliable();
  const errors = [];
  const client = new ResilientWebSocketTransport(fake.url, {
    onError: (e) => errors.push(e.kind),
  }, NoPingWebSocket, { reconnectMode: ReconnectMode.Stateful, heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200 });
  try {
    const connected = client.connect();
    const hello = await fake.nextFrame();
    assert.equal(hello.type, 'hello');
    fake.socket.send(welcome(false, 0));
    await connected;
    await sleep(500);
    assert.equal(client.state, ConnectionState.Connected, 'no heartbeat timeout without a heartbeat');
    assert.equal(fake.frames.filter((f) => f.type === 'ping').length, 0, 'never a frame the server does not know');
    assert.deepEqual(errors, ['noHeartbeat']);
  } finally {
    await client.disconnect();
    await fake.close();
  }
});

test('stateful without WebSocket pings against the scripted server offering PING frames: PINGs go out, unanswered they end the link', async () => {
  const fake = await startFakeReliable();
  fake.pingFrames = true;
  let heartbeatTimeouts = 0;
  const client = new ResilientWebSocketTransport(fake.url, {
    onClose: (e) => { if (e.error?.kind === 'heartbeatTimeout') heartbeatTimeouts++; },
  }, NoPingWebSocket, { reconnectMode: ReconnectMode.Stateful, heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300, reconnectInitialDelayMs: 10_000 });
  try {
    const connected = client.connect();
    await fake.nextFrame();
    fake.socket.send(welcome(false, 0));
    await connected;
    const ping = await fake.nextFrame();
    assert.equal(ping.type, 'ping');
    assert.ok(Math.abs(ping.nonce - Date.now()) < 5_000, 'the nonce is the send time');
    await until(() => heartbeatTimeouts === 1, 5_000, 'the heartbeat timeout');
  } finally {
    await client.disconnect();
    await fake.close();
  }
});
