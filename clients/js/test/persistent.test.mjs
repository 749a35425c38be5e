// persistent: true in Node.js (a file store): a client process killed
// mid-stream (SIGKILL: no Close, no last save) and a new client started with
// the same store within the resume window: every message the killed one
// took (its send resolved) reaches the server exactly once, in order, in
// the same session; then the state outlives a clean disconnect as a fresh
// session. An observer on `rws serve --broadcast` sees what the server got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode, ConnectionState, MessageQueue } from '../dist/index.js';
import { startRws } from './helpers/rws.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function observer(url, seen) {
  return new ResilientWebSocketTransport(url, {
    onMessage: (e) => seen.push(e.data),
  }, WebSocket, { reconnectMode: ReconnectMode.Stateful, reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 50 });
}

test('persistent: a client killed mid-stream, restarted with the same store: every taken message arrives exactly once, in order, in the same session', { timeout: 120_000 }, async () => {
  const N = 4000;
  const dir = mkdtempSync(join(tmpdir(), 'rws-js-persist-'));
  const storePath = join(dir, 'client.json');
  const server = await startRws(['--broadcast']);
  const seen = [];
  const watch = observer(server.url, seen);
  let child;
  let restarted;
  try {
    await watch.connect();
    child = spawn(process.execPath, [join(here, 'helpers/persistent-sender.mjs'), server.url, storePath, String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let taken = 0;
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /sent (\d+)\n(?![\s\S]*sent \d+\n)/.exec(out);
      if (m) taken = Number(m[1]);
    });
    await until(() => taken >= N / 2, 60_000, 'half the stream taken');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const takenBeforeKill = Number([...out.matchAll(/sent (\d+)/g)].at(-1)[1]);
    assert.ok(takenBeforeKill < N, `killed mid-stream (${takenBeforeKill} of ${N})`);
    const stored = JSON.parse(readFileSync(storePath, 'utf8'));
    assert.ok(stored.session?.connectionId, 'the session is in the store');

    const sessions = [];
    restarted = new ResilientWebSocketTransport(server.url, {
      onSessionLost: (e) => sessions.push(e),
    }, WebSocket, { reconnectMode: ReconnectMode.Stateful, persistent: true, storePath, reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 50 });
    await restarted.connect();
    assert.equal(restarted.clientId, stored.clientId, 'the same client');
    await until(() => restarted.unackedCount === 0 && restarted.bufferedCount === 0, 30_000, 'every stored message acknowledged');
    const last = Number(seen.at(-1)?.slice(1));
    await until(() => seen.length >= last, 10_000, 'the broadcast of every message');
    assert.ok(last >= takenBeforeKill, `every taken message arrived: last ${last}, taken ${takenBeforeKill}`);
    assert.deepEqual(seen, Array.from({ length: last }, (_, i) => `m${i + 1}`), 'exactly once, in order');
    assert.deepEqual(sessions, [], 'resumed: the session was not lost');

    // Go on after the restart: the seqs continue.
    await restarted.send('after the restart');
    await until(() => seen.at(-1) === 'after the restart', 10_000, 'the next message');
    assert.equal(seen.length, last + 1);
  } finally {
    child?.kill('SIGKILL');
    await restarted?.disconnect();
    await watch.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('persistent: without a place to store, the options are refused; a MessageQueue lists its messages for the store', () => {
  assert.throws(() => new ResilientWebSocketTransport('ws://127.0.0.1:1/ws', {}, WebSocket, { persistent: true }),
    (e) => e.kind === 'invalidConfig' && /storePath/.test(e.message));
  const q = new MessageQueue({ maxSize: 10, persistent: true });
  q.enqueue('low', 0);
  q.enqueue('high', 5);
  q.enqueue('low2', 0);
  assert.deepEqual(q.snapshot().map((m) => m.data), ['high', 'low', 'low2']);
});
