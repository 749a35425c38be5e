// A persistent client in its own process, for the test that kills it
// mid-stream: sends "m1".."mN" (each after the previous send resolved) and
// prints "sent I" once send I resolved, i.e. once it is in the store.
// Usage: node persistent-sender.mjs URL STORE_PATH N
import { WebSocket } from 'ws';
import { ResilientWebSocketTransport, ReconnectMode } from '../../dist/index.js';

const [url, storePath, n] = process.argv.slice(2);
const client = new ResilientWebSocketTransport(url, {}, WebSocket, {
  reconnectMode: ReconnectMode.Stateful,
  persistent: true,
  storePath,
  maxBufferedMessages: Number(n) + 1,
  reconnectInitialDelayMs: 5,
  reconnectMaxDelayMs: 50,
});
await client.connect();
for (let i = 1; i <= Number(n); i++) {
  await client.send(`m${i}`);
  process.stdout.write(`sent ${i}\n`);
}
process.stdout.write('all sent\n');
