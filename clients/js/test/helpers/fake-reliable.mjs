// A scripted rws.reliable.v1 server for tests the real one cannot stage:
// negotiate answers chosen per test (401/403), and a close with 4001 at a
// chosen moment. The test drives it frame by frame.
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { decodeFrame } from '../../dist/index.js';

export const welcome = (resumed, lastReceived) => Uint8Array.from([0x02, resumed ? 1 : 0, ...varint(lastReceived)]);
export const ack = (seq) => Uint8Array.from([0x05, ...varint(seq)]);
export const dataText = (seq, text) => Buffer.concat([Buffer.from([0x03, ...varint(seq)]), Buffer.from(text)]);

function varint(v) {
  const out = [];
  while (v >= 0x80) { out.push((v & 0x7f) | 0x80); v = Math.floor(v / 128); }
  out.push(v);
  return out;
}

export async function startFakeReliable() {
  const fake = {
    negotiateStatus: 200,
    negotiates: [],
    upgrades: [],
    socket: undefined,
    frames: [],
    waiters: [],
    sessions: 0,
    pingFrames: false,
  };
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (set) => (set.has('rws.reliable.v1') ? 'rws.reliable.v1' : false) });
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      fake.negotiates.push({ url: req.url, authorization: req.headers.authorization, body: body ? JSON.parse(body) : undefined });
      if (req.method !== 'POST' || !req.url.startsWith('/ws/negotiate')) {
        res.writeHead(404).end();
        return;
      }
      if (fake.negotiateStatus !== 200) {
        res.writeHead(fake.negotiateStatus).end();
        return;
      }
      fake.sessions++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        protocol: 'rws.reliable.v1', version: 1,
        connection_id: `${fake.sessions}`.padStart(32, '0'), reconnect_token: `token-${fake.sessions}`.padEnd(43, 'x'),
        url: null, resume_window_ms: 30000, max_message_size: 1 << 20, max_unacked_bytes: 1 << 20,
        ack_interval_ms: 10, ack_threshold: 64,
        ...(fake.pingFrames ? { ping_frames: true } : {}),
      }));
    });
  });
  server.on('upgrade', (req, sock, head) => {
    fake.upgrades.push({ url: req.url, authorization: req.headers.authorization, protocol: req.headers['sec-websocket-protocol'] });
    wss.handleUpgrade(req, sock, head, (ws) => {
      fake.socket = ws;
      ws.on('message', (data, isBinary) => {
        const frame = isBinary ? decodeFrame(new Uint8Array(data)) : { type: 'text' };
        const w = fake.waiters.shift();
        if (w) w(frame);
        else fake.frames.push(frame);
      });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `ws://127.0.0.1:${server.address().port}/ws`;
  /** The next frame the client sends (ACKs skipped unless asked for). */
  fake.nextFrame = async ({ acks = false, timeoutMs = 5000 } = {}) => {
    for (;;) {
      const f = fake.frames.length > 0 ? fake.frames.shift() : await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no frame from the client in time')), timeoutMs);
        fake.waiters.push((frame) => { clearTimeout(t); resolve(frame); });
      });
      if (f.type !== 'ack' || acks) return f;
    }
  };
  fake.close = () => new Promise((resolve) => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
  return fake;
}
