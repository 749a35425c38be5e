// Stateful mode against a scripted server: 401/403 are terminal, the token's
// placement, resume with duplicates dropped, and the lost-session fallback
// (PROTOCOL.md §7) with the original seqs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, WebSocketConnectionHandler, ReconnectMode, ConnectionState } from '../dist/index.js';
import { startFakeReliable, welcome, ack, dataText } from './helpers/fake-reliable.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fastRetry = { reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 20, heartbeatIntervalMs: 0 };

for (const status of [401, 403]) {
  test(`stateful: negotiate answering ${status} is terminal`, async () => {
    const fake = await startFakeReliable();
    fake.negotiateStatus = status;
    const errors = [];
    const states = [];
    const client = new WebSocketConnectionHandler(fake.url.replace('ws:', 'http:'), {
      onError: (e) => errors.push(e),
      onStateChange: (e) => states.push(e.currentState),
    }, { WebSocket, getAuthToken: async () => 'secret', ...fastRetry });
    try {
      await assert.rejects(client.connect(), (e) => e.kind === 'negotiateRejected' && e.status === status);
      await sleep(200);
      assert.equal(client.state, ConnectionState.Disconnected);
      assert.equal(fake.negotiates.length, 1, 'no retry');
      assert.equal(fake.negotiates[0].authorization, 'Bearer secret');
      assert.deepEqual(states, [ConnectionState.Connecting, ConnectionState.Disconnected]);
      assert.equal(errors.at(-1).status, status);
    } finally {
      await client.disconnect();
      await fake.close();
    }
  });
}

test('stateful: resume drops replayed duplicates; a lost session re-sends the unacknowledged messages with their original seqs; then a 403 ends it', async () => {
  const fake = await startFakeReliable();
  const received = [];
  const lost = [];
  const errors = [];
  const client = new ResilientWebSocketTransport(fake.url, {
    onMessage: (e) => received.push([e.seq, e.data]),
    onSessionLost: (e) => lost.push(e),
    onError: (e) => errors.push(e),
  }, WebSocket, { reconnectMode: ReconnectMode.Stateful, getAuthToken: () => 'secret', ...fastRetry });
  try {
    const connected = client.connect();
    let hello = await fake.nextFrame();
    assert.deepEqual([hello.type, hello.lastReceived, hello.firstSeq], ['hello', 0, 1]);
    assert.equal(fake.negotiates[0].authorization, 'Bearer secret');
    assert.equal(fake.negotiates[0].body.client_id.length, 32);
    const clientId = fake.negotiates[0].body.client_id;
    assert.match(fake.upgrades[0].url, /[?&]access_token=secret(&|$)/, 'the token on the socket URL');
    assert.equal(fake.upgrades[0].authorization, undefined, 'not also in a header');
    fake.socket.send(welcome(false, 0));
    await connected;

    // Client -> server: 1, 2, 3; server -> client: 1 'x'.
    for (const t of ['a', 'b', 'c']) await client.send(t);
    for (const seq of [1, 2, 3]) assert.equal((await fake.nextFrame()).seq, seq);
    fake.socket.send(dataText(1, 'x'));
    fake.socket.send(ack(1));
    const firstAck = await fake.nextFrame({ acks: true });
    assert.deepEqual([firstAck.type, firstAck.seq], ['ack', 1]);

    // The socket goes away (1001): the client resumes the same session.
    fake.socket.close(1001, 'going away');
    hello = await fake.nextFrame();
    assert.deepEqual([hello.connectionId, hello.lastReceived, hello.firstSeq], ['1'.padStart(32, '0'), 1, 2]);
    fake.socket.send(welcome(true, 2));
    assert.equal((await fake.nextFrame()).seq, 3, 'only what the server did not report is replayed');
    // The server replays 1 (already delivered) and sends 2.
    fake.socket.send(dataText(1, 'x'));
    fake.socket.send(dataText(2, 'y'));
    while (received.length < 2) await sleep(5);
    await sleep(50);
    assert.deepEqual(received, [[1, 'x'], [2, 'y']], 'the duplicate is dropped');

    // The session is gone (4001): a new one, HELLO first_seq = the oldest
    // unacknowledged (3), re-sent with its original seq, then new ones.
    await client.send('d'); // seq 4
    assert.equal((await fake.nextFrame()).seq, 4);
    fake.socket.close(4001, 'session gone');
    hello = await fake.nextFrame();
    assert.equal(fake.negotiates.length, 2, 'negotiated afresh');
    assert.equal(fake.negotiates[1].body.client_id, clientId, 'the same client id');
    assert.deepEqual([hello.connectionId, hello.lastReceived, hello.firstSeq], ['2'.padStart(32, '0'), 0, 3]);
    assert.deepEqual(lost.map((l) => l.resending), [2]);
    fake.socket.send(welcome(false, 2));
    assert.deepEqual([(await fake.nextFrame()).seq, (await fake.nextFrame()).seq], [3, 4]);
    await client.send('e');
    const e = await fake.nextFrame();
    assert.equal(e.seq, 5);
    // The new session numbers server messages from 1 again.
    fake.socket.send(dataText(1, 'z'));
    while (received.length < 3) await sleep(5);
    assert.deepEqual(received[2], [1, 'z']);

    // Gone again, and now the credentials are refused: terminal.
    fake.negotiateStatus = 403;
    fake.socket.close(4001, 'session gone');
    while (client.state !== ConnectionState.Disconnected) await sleep(5);
    await sleep(100);
    assert.equal(fake.negotiates.length, 3, 'no retry after 403');
    assert.equal(errors.at(-1).kind, 'negotiateRejected');
    assert.equal(errors.at(-1).status, 403);
  } finally {
    await client.disconnect();
    await fake.close();
  }
});

test('stateful: a gap in the server\'s seqs is a protocol error (1002) and the client resumes', async () => {
  const fake = await startFakeReliable();
  const received = [];
  const closes = [];
  const client = new ResilientWebSocketTransport(fake.url, {
    onMessage: (e) => received.push(e.data),
    onClose: (e) => closes.push(e),
  }, WebSocket, { reconnectMode: ReconnectMode.Stateful, ...fastRetry });
  try {
    const connected = client.connect();
    await fake.nextFrame();
    const first = fake.socket;
    fake.socket.send(welcome(false, 0));
    await connected;
    const closed = new Promise((r) => first.once('close', (code) => r(code)));
    first.send(dataText(2, 'gap'));
    assert.equal(await closed, 1002);
    const hello = await fake.nextFrame();
    assert.equal(hello.type, 'hello');
    assert.equal(hello.lastReceived, 0);
    assert.deepEqual(received, []);
    assert.equal(closes[0].error.kind, 'protocol');
  } finally {
    await client.disconnect();
    await fake.close();
  }
});
