// The client in a real page: headless Chromium (the system's `chromium`,
// or CHROMIUM_BIN) driven by playwright-core. Pages are served by
// `rws serve --static clients/js`, so negotiate is same-origin.
// 1. The stateful scenario: messages both ways through a proxy that cuts
//    the link at random and blackholes it once (noticed through the
//    protocol's PING frames: a page cannot send WebSocket pings), exactly
//    once and in order.
// 2. persistent: true (IndexedDB): the page is reloaded mid-stream; the
//    reloaded page resumes the session and every message the first one took
//    reaches the server exactly once, in order (seen by an observer on
//    `rws serve --broadcast`).
// 3. The example page (example/index.html): its counter survives a server
//    restart; a screenshot goes to test-output/example.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { chromium } from 'playwright-core';
import { ResilientWebSocketTransport, ReconnectMode } from '../dist/index.js';
import { startRws } from './helpers/rws.mjs';
import { startFaultProxy } from './helpers/proxy.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'test-output');
const COUNT = Number(process.env.RWS_JS_BROWSER_MESSAGES ?? 2000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    } catch { /* next */ }
  }
  throw new Error('no Chromium: install the system package `chromium` (clients/js/ci.sh does) or set CHROMIUM_BIN');
}

let browser;
const figures = {};
before(async () => {
  mkdirSync(output, { recursive: true });
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
  if (Object.keys(figures).length) console.log(`browser figures: ${JSON.stringify(figures)}`);
});

async function newPage() {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  return page;
}

test(`browser: ${COUNT} messages each way through random cuts and one blackholed link, exactly once and in order`, { timeout: 180_000 }, async () => {
  const server = await startRws(['--echo', '--static', root]);
  const proxy = await startFaultProxy(server.port, { minLifeMs: 100, maxLifeMs: 600, seed: 11, cutting: false });
  const page = await newPage();
  try {
    await page.goto(`http://127.0.0.1:${proxy.port}/example/blank.html`);
    await page.evaluate(async (count) => {
      const { ResilientWebSocketTransport, ReconnectMode } = await import('/dist/index.js');
      const t = { received: [], heartbeatTimeouts: 0, reconnects: 0, lost: 0 };
      window.t = t;
      t.client = new ResilientWebSocketTransport(`ws://${location.host}/ws`, {
        onMessage: (e) => t.received.push(e.data),
        onReconnect: () => t.reconnects++,
        onSessionLost: () => t.lost++,
        onClose: (e) => { if (e.error?.kind === 'heartbeatTimeout') t.heartbeatTimeouts++; },
      }, undefined, {
        reconnectMode: ReconnectMode.Stateful, reconnectInitialDelayMs: 5, reconnectMaxDelayMs: 100,
        connectionTimeoutMs: 2000, maxBufferedMessages: count + 1, heartbeatIntervalMs: 250, heartbeatTimeoutMs: 750,
      });
      await t.client.connect();
      t.sending = (async () => {
        for (let i = 1; i <= count; i++) {
          await t.client.send(`m${i}`);
          if (i % 20 === 0) await new Promise((r) => setTimeout(r, 30));
        }
      })();
    }, COUNT);
    const started = Date.now();
    proxy.storm();
    await until(async () => (await page.evaluate(() => window.t.received.length)) >= COUNT / 3, 60_000, 'a third of the echoes');
    proxy.calm();
    await until(() => page.evaluate(() => window.t.client.state === 'Connected'), 10_000, 'a live link to blackhole');
    proxy.blackhole();
    await until(() => page.evaluate(() => window.t.heartbeatTimeouts >= 1), 10_000, 'the PING-frame heartbeat to notice');
    proxy.storm();
    await until(async () => (await page.evaluate(() => window.t.received.length)) >= COUNT, 120_000, 'every echo');
    proxy.calm();
    const t = await page.evaluate(async () => { await window.t.sending; return { received: window.t.received, reconnects: window.t.reconnects, lost: window.t.lost, heartbeatTimeouts: window.t.heartbeatTimeouts }; });
    assert.deepEqual(t.received, Array.from({ length: COUNT }, (_, i) => `m${i + 1}`), 'exactly once, in order');
    assert.equal(t.lost, 0, 'one session throughout');
    assert.ok(t.reconnects >= 3, `the link was cut (${t.reconnects} reconnects)`);
    figures.stream = { messages: COUNT, ms: Date.now() - started, reconnects: t.reconnects, cuts: proxy.stats.cuts, heartbeatTimeouts: t.heartbeatTimeouts };
    await page.evaluate(() => window.t.client.disconnect());
  } finally {
    await page.close();
    await proxy.close();
    await server.stop();
  }
});

test('browser: persistent (IndexedDB): a page reloaded mid-stream resumes its session; every taken message arrives exactly once, in order', { timeout: 120_000 }, async () => {
  const N = 3000;
  const server = await startRws(['--broadcast', '--static', root]);
  const seen = [];
  const watch = new ResilientWebSocketTransport(server.url, { onMessage: (e) => seen.push(e.data) }, WebSocket,
    { reconnectMode: ReconnectMode.Stateful });
  const page = await newPage();
  let taken = 0;
  page.on('console', (m) => {
    const r = /^taken (\d+)$/.exec(m.text());
    if (r) taken = Math.max(taken, Number(r[1]));
  });
  try {
    await watch.connect();
    await page.goto(`${server.url.replace('ws:', 'http:').replace(/\/ws$/, '')}/example/blank.html`);
    const start = async (n) => page.evaluate(async (n) => {
      const { ResilientWebSocketTransport, ReconnectMode } = await import('/dist/index.js');
      const client = new ResilientWebSocketTransport(`ws://${location.host}/ws`, {}, undefined, {
        reconnectMode: ReconnectMode.Stateful, persistent: true, storeKey: 'browser-test', maxBufferedMessages: 10_000,
      });
      window.client = client;
      await client.connect();
      for (let i = 1; i <= n; i++) {
        await client.send(`m${i}`);
        if (i % 10 === 0) console.log(`taken ${i}`);
      }
      return client.clientId;
    }, n);
    const first = start(N).catch(() => 'reloaded');
    await until(() => taken >= N / 3, 60_000, 'a third of the stream taken');
    await page.reload();
    assert.equal(await first, 'reloaded', 'the reload cut the stream');
    const takenBeforeReload = taken;
    assert.ok(takenBeforeReload < N, `reloaded mid-stream (${takenBeforeReload} of ${N})`);
    // The reloaded page: the same store, nothing new to send; it resumes and drains.
    await start(0);
    await until(() => page.evaluate(() => window.client.unackedCount === 0 && window.client.bufferedCount === 0), 30_000, 'the stored messages acknowledged');
    const last = Number(seen.at(-1)?.slice(1));
    await until(() => seen.length >= last, 10_000, 'the broadcast of every message');
    assert.ok(last >= takenBeforeReload, `every taken message arrived: last ${last}, taken ${takenBeforeReload}`);
    assert.deepEqual(seen, Array.from({ length: last }, (_, i) => `m${i + 1}`), 'exactly once, in order');
    figures.reload = { takenBeforeReload, arrived: last };
    await page.evaluate(() => window.client.disconnect());
  } finally {
    await page.close();
    await watch.disconnect();
    await server.stop();
  }
});

test('browser: the example page keeps counting across a server restart (screenshot in test-output/example.png)', { timeout: 60_000 }, async () => {
  let server = await startRws(['--echo', '--static', root]);
  const port = server.port;
  const page = await newPage();
  try {
    await page.goto(`http://127.0.0.1:${port}/example/index.html`);
    const stats = () => page.evaluate(() => ({ ...window.exampleStats }));
    await until(async () => (await stats())?.echoed >= 3, 20_000, 'the counter echoed');
    await server.stop();
    await until(async () => (await page.textContent('#state')) !== 'Connected', 10_000, 'the page to notice the restart');
    server = await startRws(['--echo', '--static', root], { bind: `127.0.0.1:${port}` });
    const before = (await stats()).sent;
    await until(async () => {
      const s = await stats();
      return s.echoed > before && (await page.textContent('#state')) === 'Connected';
    }, 30_000, 'the counter going on after the restart');
    const s = await stats();
    assert.ok(s.ok, 'every number echoed, in order, none missing (repeats after the lost session dropped by number)');
    assert.ok(s.lost >= 1, 'the restarted server had lost the session (§7 fallback)');
    await page.screenshot({ path: join(output, 'example.png') });
    assert.ok(existsSync(join(output, 'example.png')));
    figures.example = { sent: s.sent, echoed: s.echoed, repeatsDropped: s.duplicates, reconnects: s.reconnects, sessionsLost: s.lost };
  } finally {
    await page.close();
    await server.stop();
  }
});
