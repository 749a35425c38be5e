// Auth against the real server (`rws serve --auth-token T --forbidden-token F`):
// a missing or wrong token is 401 and a refused one 403, both final (no
// retry); the right token passes negotiate (Authorization header) and the
// socket (the access_token query parameter, PROTOCOL.md §2, as a browser
// must send it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode, ConnectionState } from '../dist/index.js';
import { startRws } from './helpers/rws.mjs';

const options = { reconnectMode: ReconnectMode.Stateful, reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 20, heartbeatIntervalMs: 0 };

test('rws serve --auth-token: 401 without or with a wrong token, 403 for the forbidden one, both final; the right token connects', { timeout: 30_000 }, async () => {
  const server = await startRws(['--echo', '--auth-token', 'good-token', '--forbidden-token', 'banned-token']);
  try {
    for (const [token, status] of [[undefined, 401], ['wrong', 401], ['banned-token', 403]]) {
      const errors = [];
      let asked = 0;
      const client = new ResilientWebSocketTransport(server.url, { onError: (e) => errors.push(e) }, WebSocket, {
        ...options,
        ...(token ? { getAuthToken: () => { asked++; return token; } } : {}),
      });
      await assert.rejects(client.connect(), (e) => e.kind === 'negotiateRejected' && e.status === status, `token ${token}`);
      assert.equal(client.state, ConnectionState.Disconnected);
      if (token) assert.equal(asked, 1, 'not retried');
      await client.disconnect();
    }
    const received = [];
    const client = new ResilientWebSocketTransport(server.url, { onMessage: (e) => received.push(e.data) }, WebSocket, {
      ...options,
      getAuthToken: () => 'good-token',
    });
    await client.connect();
    await client.send('hello with a token');
    const deadline = Date.now() + 10_000;
    while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(received, ['hello with a token']);
    await client.disconnect();
  } finally {
    await server.stop();
  }
});

test('rws serve --auth-token: a socket whose query carries no token is refused with 401 even after a good negotiate', { timeout: 30_000 }, async () => {
  const server = await startRws(['--echo', '--auth-token', 'good-token']);
  try {
    const resp = await fetch(server.url.replace('ws:', 'http:') + '/negotiate', { method: 'POST', headers: { Authorization: 'Bearer good-token' } });
    assert.equal(resp.status, 200);
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(server.url, ['rws.reliable.v1']);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    assert.equal(status, 401);
    const ok = await new Promise((resolve) => {
      const ws = new WebSocket(`${server.url}?access_token=good-token`, ['rws.reliable.v1']);
      ws.on('open', () => { ws.terminate(); resolve(101); });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      ws.on('error', () => {});
    });
    assert.equal(ok, 101, 'the query parameter is read');
  } finally {
    await server.stop();
  }
});
