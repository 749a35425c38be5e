// The example page: the JS client in Stateful mode against the server that
// served the page (`rws serve --static clients/js`, page at
// /example/index.html). Shows the connection state and a counter the server
// echoes; both survive a restart of the server (the session is lost with
// the server's memory, and the unacknowledged numbers go to a new one with
// their original seqs, PROTOCOL.md §7).
import { ResilientWebSocket, ReconnectMode } from '../dist/index.js';

const $ = (id) => document.getElementById(id);
const url = new URL('/ws', location.href);
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
const stats = { sent: 0, echoed: 0, duplicates: 0, reconnects: 0, lost: 0, ok: true };
window.exampleStats = stats;

function log(line) {
  const el = $('log');
  el.textContent = `${new Date().toISOString().slice(11, 19)} ${line}\n${el.textContent}`.split('\n').slice(0, 8).join('\n');
}

const ws = new ResilientWebSocket(url.toString(), {
  onStateChange: ({ currentState }) => {
    $('state').textContent = currentState;
    $('state').className = `state ${currentState}`;
    log(`state: ${currentState}`);
  },
  onMessage: ({ data }) => {
    const n = Number(data);
    // After a lost session a number the old server echoed but did not
    // acknowledge comes back once more (at least once, same seq, §7): the
    // number is its id, so it is dropped here.
    if (n <= stats.echoed) {
      stats.duplicates++;
      $('duplicates').textContent = String(stats.duplicates);
      return;
    }
    if (n !== stats.echoed + 1) stats.ok = false;
    stats.echoed = n;
    $('echoed').textContent = String(n);
    $('ok').textContent = stats.ok ? 'yes' : 'NO';
  },
  onReconnect: ({ attempt, delayMs }) => {
    stats.reconnects++;
    $('reconnects').textContent = String(stats.reconnects);
    log(`reconnecting: attempt ${attempt} in ${Math.round(delayMs)} ms`);
  },
  onSessionLost: () => {
    stats.lost++;
    $('lost').textContent = String(stats.lost);
    log('the server lost the session: re-sending with the original seqs');
  },
  onError: (e) => log(`${e.kind}: ${e.message}`),
}, {
  reconnectMode: ReconnectMode.Stateful,
  reconnectInitialDelayMs: 100,
  reconnectMaxDelayMs: 2000,
  heartbeatIntervalMs: 2000,
});

await ws.connect();
setInterval(() => {
  stats.sent++;
  $('counter').textContent = String(stats.sent);
  ws.send(String(stats.sent)).catch((e) => log(`send: ${e.message}`));
}, 500);
