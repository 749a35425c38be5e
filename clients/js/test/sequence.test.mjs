// Unit tests of the sequence rules (mirroring src/client/reliable.rs), the
// wire format of docs/PROTOCOL.md, the backoff (src/retry.rs) and the
// option defaults of the design.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ReliableState, encodeVarint, decodeVarint, encodeHello, encodeAck, encodeData, decodeFrame,
  negotiateUrl, parseNegotiateResponse, shutdownAdviceDelay, exponentialBackoff, backoffCeiling, isTerminal,
  resolveOptions, ResilientWebSocketError, ReconnectMode, ResilientWebSocketTransport, ResilientWebSocket, socketUrlOf,
} from '../dist/index.js';

const err = (kind, extra) => new ResilientWebSocketError(kind, kind, extra);

test('delivers in order and drops duplicates', () => {
  const s = new ReliableState();
  s.newSocket();
  assert.equal(s.onData(1), 'deliver');
  assert.equal(s.onData(2), 'deliver');
  // A resume replays from an older point: duplicates, then new.
  s.newSocket();
  assert.equal(s.onData(1), 'duplicate');
  assert.equal(s.onData(2), 'duplicate');
  assert.equal(s.onData(3), 'deliver');
  assert.equal(s.delivered, 3);
  assert.ok(s.ackPending());
  assert.equal(s.takeAck(), 3);
  assert.ok(!s.ackPending());
});

test('a gap and a backwards sequence are protocol errors (1002)', () => {
  let s = new ReliableState();
  s.newSocket();
  s.onData(1);
  assert.throws(() => s.onData(3), (e) => e.kind === 'protocol' && e.closeCode === 1002 && /gap/.test(e.message));
  assert.equal(s.delivered, 1, 'nothing delivered past the gap');
  s = new ReliableState();
  s.newSocket();
  s.onData(1);
  s.onData(2);
  assert.throws(() => s.onData(2), (e) => /backwards/.test(e.message));
  assert.equal(s.delivered, 2);
});

test('acks beyond what was written are refused', () => {
  const s = new ReliableState();
  s.noteWritten(5);
  s.onAck(5);
  assert.throws(() => s.onAck(6), (e) => e.closeCode === 1002);
});

test('the threshold triggers an early ack', () => {
  const s = new ReliableState();
  s.newSocket();
  for (const seq of [1, 2, 3]) s.onData(seq);
  assert.ok(!s.ackNow(4));
  s.onData(4);
  assert.ok(s.ackNow(4));
});

test('a lost session restarts the inbound numbering; our ids go on', () => {
  const s = new ReliableState();
  s.newSocket();
  s.onData(1);
  s.noteWritten(9);
  s.sessionGone();
  s.newSocket();
  assert.equal(s.onData(1), 'deliver');
  assert.equal(s.highestWritten, 9);
});

test('varints are LEB128, at most 10 bytes', () => {
  assert.deepEqual(encodeVarint(300), [0xac, 0x02]);
  assert.deepEqual(encodeVarint(0), [0]);
  for (const v of [0, 1, 127, 128, 16383, 16384, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
    const bytes = Uint8Array.from(encodeVarint(v));
    assert.deepEqual(decodeVarint(bytes, 0), [v, bytes.length]);
  }
  assert.throws(() => decodeVarint(Uint8Array.from([0x80, 0x80]), 0), /truncated/);
  assert.throws(() => decodeVarint(new Uint8Array(11).fill(0x80), 0), /over 10 bytes/);
});

test('frames round-trip and match the spec\'s layout', () => {
  const hello = encodeHello('9f', 'Qm', 1, 2);
  assert.deepEqual([...hello], [0x01, 2, 0x39, 0x66, 2, 0x51, 0x6d, 1, 2]);
  assert.deepEqual(decodeFrame(hello), { type: 'hello', connectionId: '9f', reconnectToken: 'Qm', lastReceived: 1, firstSeq: 2 });
  assert.deepEqual([...encodeAck(300)], [0x05, 0xac, 0x02]);
  assert.deepEqual(decodeFrame(encodeAck(300)), { type: 'ack', seq: 300 });
  const text = encodeData(7, new TextEncoder().encode('héllo'), true);
  assert.equal(text[0], 0x03);
  assert.deepEqual(decodeFrame(text), { type: 'data', seq: 7, text: 'héllo' });
  const bin = decodeFrame(encodeData(8, Uint8Array.from([1, 2]), false));
  assert.deepEqual([bin.type, bin.seq, [...new Uint8Array(bin.binary)]], ['data', 8, [1, 2]]);
  assert.deepEqual(decodeFrame(Uint8Array.from([0x02, 1, 0xac, 0x02])), { type: 'welcome', resumed: true, lastReceived: 300 });
});

test('malformed frames are protocol errors', () => {
  for (const bytes of [[], [0x09], [0x02], [0x03], [0x03, 1, 0xff], [0x01, 5, 1]]) {
    assert.throws(() => decodeFrame(Uint8Array.from(bytes)), (e) => e.kind === 'protocol' && e.closeCode === 1002, JSON.stringify(bytes));
  }
});

test('negotiate URL and response', () => {
  assert.equal(negotiateUrl('ws://h:8080/ws'), 'http://h:8080/ws/negotiate');
  assert.equal(negotiateUrl('wss://h/ws/?access_token=x'), 'https://h/ws/negotiate');
  assert.equal(socketUrlOf('https://example.com/ws'), 'wss://example.com/ws');
  const body = {
    protocol: 'rws.reliable.v1', version: 1, connection_id: 'c', reconnect_token: 't', url: null,
    resume_window_ms: 30000, max_message_size: 1000, max_unacked_bytes: 4096, ack_interval_ms: 100, ack_threshold: 64, extra: 1,
  };
  const s = parseNegotiateResponse(body, 'ws://h/ws', false);
  assert.equal(s.socketUrl, 'ws://h/ws');
  assert.equal(s.maxMessageSize, 1000);
  assert.throws(() => parseNegotiateResponse({ ...body, url: 'ws://evil/ws' }, 'ws://h/ws', false), /another host/);
  assert.throws(() => parseNegotiateResponse({ ...body, url: 'ws://h/ws' }, 'wss://h/ws', false), /from wss to ws/);
  assert.throws(() => parseNegotiateResponse({ ...body, url: 'ws://h:81/ws' }, 'ws://h/ws', false), /another port/);
  assert.equal(parseNegotiateResponse({ ...body, url: 'wss://h/ws' }, 'ws://h/ws', false).socketUrl, 'wss://h/ws');
  assert.equal(parseNegotiateResponse({ ...body, url: 'ws://other/ws' }, 'ws://h/ws', true).socketUrl, 'ws://other/ws');
  assert.throws(() => parseNegotiateResponse({ ...body, protocol: 'x' }, 'ws://h/ws', false), (e) => e.kind === 'protocolNotSupported');
  assert.throws(() => parseNegotiateResponse({ ...body, connection_id: 3 }, 'ws://h/ws', false), (e) => e.kind === 'negotiate');
});

test('1012 advice: after + random spread, each capped at 10 minutes', () => {
  assert.equal(shutdownAdviceDelay('{"reconnect_after_ms":1000,"spread_ms":2000}', () => 0), 1000);
  assert.equal(shutdownAdviceDelay('{"reconnect_after_ms":1000,"spread_ms":2000}', () => 1 - Number.EPSILON), 3000);
  assert.equal(shutdownAdviceDelay('{"reconnect_after_ms":1e12,"spread_ms":1e12}', () => 1 - Number.EPSILON), 1_200_000);
  assert.equal(shutdownAdviceDelay('not json'), undefined);
});

test('backoff delays stay within the doubling ceiling and the cap', () => {
  const p = exponentialBackoff(1000, 30_000, 0);
  for (let attempt = 1; attempt <= 12; attempt++) {
    const ceiling = Math.min(1000 * 2 ** Math.min(attempt, 5), 30_000);
    assert.equal(backoffCeiling(1000, 30_000, attempt), ceiling);
    for (let i = 0; i < 200; i++) {
      const d = p({ attempt, elapsedMs: 0, error: err('connectionLost') });
      assert.ok(d >= 1000 && d <= ceiling, `attempt ${attempt}: ${d}`);
    }
  }
});

test('backoff delays are jittered (full jitter)', () => {
  const p = exponentialBackoff(1000, 30_000, 0);
  const delays = Array.from({ length: 50 }, () => p({ attempt: 5, elapsedMs: 0, error: err('connectionLost') }));
  assert.ok(new Set(delays).size > 40);
  const mean = delays.reduce((a, b) => a + b, 0) / delays.length / 1000;
  assert.ok(mean > 5 && mean < 26, `uniform over [1, 30] s: mean ${mean}`);
});

test('backoff gives up after maxAttempts; 0 is unlimited', () => {
  const p = exponentialBackoff(1000, 30_000, 3);
  assert.notEqual(p({ attempt: 3, elapsedMs: 0, error: err('connectionLost') }), undefined);
  assert.equal(p({ attempt: 4, elapsedMs: 0, error: err('connectionLost') }), undefined);
  assert.notEqual(exponentialBackoff(1000, 30_000, 0)({ attempt: 10_000, elapsedMs: 0, error: err('connectionLost') }), undefined);
});

test('auth failures and policy closes are terminal; the rest retries', () => {
  const p = exponentialBackoff(1000, 30_000, 0);
  for (const e of [err('negotiateRejected', { status: 401 }), err('negotiateRejected', { status: 403 }), err('closed', { closeCode: 1008 }), err('protocolNotSupported'), err('peerRefusesReplay')]) {
    assert.ok(isTerminal(e));
    assert.equal(p({ attempt: 1, elapsedMs: 0, error: e }), undefined);
  }
  for (const e of [err('negotiateRejected', { status: 503 }), err('negotiateRejected', { status: 429 }), err('closed', { closeCode: 1013 }), err('closed', { closeCode: 1011 }), err('connectTimeout'), err('sessionGone')]) {
    assert.ok(!isTerminal(e));
    assert.notEqual(p({ attempt: 1, elapsedMs: 0, error: e }), undefined);
  }
});

test('options have the design\'s defaults', () => {
  const o = resolveOptions();
  assert.equal(o.maxReconnectAttempts, 0);
  assert.equal(o.reconnectInitialDelayMs, 1000);
  assert.equal(o.reconnectMaxDelayMs, 30_000);
  assert.equal(o.reconnectMode, ReconnectMode.Stateless);
  assert.equal(o.heartbeatIntervalMs, 30_000);
  assert.equal(o.heartbeatTimeoutMs, 60_000);
  assert.equal(o.connectionTimeoutMs, 10_000);
  assert.equal(o.closeTimeoutMs, 5000);
  assert.equal(o.maxBufferedMessages, 1000);
  assert.equal(o.enableMessageBuffering, true);
  assert.equal(o.overflowPolicy, 'reject');
  assert.equal(o.authTokenQueryParam, 'access_token');
  for (const bad of [{ connectionTimeoutMs: 0 }, { reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 1 }, { persistent: true }, { authTokenQueryParam: 'a b' }, { reconnectMode: 'Sometimes' }]) {
    assert.throws(() => resolveOptions(bad), (e) => e.kind === 'invalidConfig', JSON.stringify(bad));
  }
});

test('isSupported() tells whether there is a global WebSocket; without one a constructor must be given', () => {
  const hasGlobal = typeof globalThis.WebSocket === 'function';
  assert.equal(ResilientWebSocket.isSupported(), hasGlobal);
  if (!hasGlobal) {
    assert.throws(() => new ResilientWebSocketTransport('ws://h/'), (e) => e.kind === 'invalidConfig' && /WebSocket constructor/.test(e.message));
  } else {
    assert.doesNotThrow(() => new ResilientWebSocketTransport('ws://h/'));
  }
});
