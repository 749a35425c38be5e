// Messages per second of the JS client in Node.js against `rws serve --echo`
// (RWS_BIN), 64-byte text messages, each echoed back: Node's `ws` alone
// (a plain WebSocket, the baseline), the client in Stateless mode (plain
// WebSocket through the client) and in Stateful mode (rws.reliable.v1:
// seqs, acks, the unacked window), all in one run against one server.
// A run sends N messages as fast as the client takes them and ends when
// the N-th echo arrived; each mode runs RUNS times, the median is kept.
//
//   node bench/bench.mjs [--quick] [--messages N] [--runs R] [--only ws|stateless|stateful]
//
// --quick (ci.sh): 2 000 messages, one run: checks that every mode works
// and gets every echo, in order; its figures are not meant to be compared.
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode } from '../dist/index.js';
import { startRws } from '../test/helpers/rws.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = arg('--messages', quick ? 2_000 : 100_000);
const RUNS = arg('--runs', quick ? 1 : 3);
const payload = (i) => `m${i}`.padEnd(64, '.');

function check(got, n, mode) {
  if (got.length !== n) throw new Error(`${mode}: ${got.length} echoes of ${n}`);
  for (let i = 0; i < n; i++) {
    if (got[i] !== payload(i + 1)) throw new Error(`${mode}: echo ${i + 1} is ${JSON.stringify(got[i]).slice(0, 20)}`);
  }
}

async function rawWs(url) {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const got = [];
  const started = performance.now();
  const done = new Promise((resolve) => {
    ws.on('message', (data) => {
      got.push(data.toString());
      if (got.length === N) resolve();
    });
  });
  for (let i = 1; i <= N; i++) ws.send(payload(i));
  await done;
  const ms = performance.now() - started;
  ws.close();
  check(got, N, 'ws');
  return ms;
}

async function jsClient(url, mode) {
  const got = [];
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  const client = new ResilientWebSocketTransport(url, {
    onMessage: (e) => {
      got.push(e.data);
      if (got.length === N) resolveDone();
    },
  }, WebSocket, { reconnectMode: mode, maxBufferedMessages: N + 1, heartbeatIntervalMs: 0 });
  await client.connect();
  const started = performance.now();
  const sends = [];
  for (let i = 1; i <= N; i++) sends.push(client.send(payload(i)));
  await Promise.all(sends);
  await done;
  const ms = performance.now() - started;
  await client.disconnect();
  check(got, N, mode);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startRws(['--echo']);
try {
  const modes = {
    ws: () => rawWs(server.url),
    stateless: () => jsClient(server.url, ReconnectMode.Stateless),
    stateful: () => jsClient(server.url, ReconnectMode.Stateful),
  };
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  if (only) for (const k of Object.keys(modes)) if (k !== only) delete modes[k];
  const rates = {};
  // Interleaved runs, so a slow moment of a loaded machine hits every mode.
  const times = { ws: [], stateless: [], stateful: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const [name, run] of Object.entries(modes)) times[name].push(await run());
  }
  for (const name of Object.keys(modes)) rates[name] = N / (median(times[name]) / 1000);
  if (only) {
    console.log(`${only}: ${Math.round(rates[only])} msg/s`);
    process.exit(0);
  }
  const fmt = (x) => `${Math.round(x).toLocaleString('en-US')} msg/s`;
  console.log(`JS client bench${quick ? ' (quick: a check, not a measurement)' : ''}: ${N} x 64 B echoed by rws serve, median of ${RUNS}, node ${process.version}`);
  console.log(`  ws alone      ${fmt(rates.ws)}`);
  console.log(`  Stateless     ${fmt(rates.stateless)}  ${(rates.stateless / rates.ws).toFixed(2)}x ws`);
  console.log(`  Stateful      ${fmt(rates.stateful)}  ${(rates.stateful / rates.ws).toFixed(2)}x ws`);
} finally {
  await server.stop();
}
