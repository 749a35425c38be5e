#!/usr/bin/env node
// Echo server on Node `ws`, for tests/interop.rs.
//
// Usage: node node_server.js [PORT]   (default 0: a free port)
//
// Listens on 127.0.0.1, prints the bound port alone on the first stdout
// line, then echoes every message unchanged (text as text, binary as
// binary). The text message `close:<code>` is not echoed: the server closes
// that connection with that close code instead.
'use strict';

const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));

const port = process.argv.length > 2 ? Number(process.argv[2]) : 0;
const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('listening', () => {
  process.stdout.write(`${wss.address().port}\n`);
});
wss.on('error', (err) => {
  console.error(`node_server: ${err.message}`);
  process.exit(1);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString('utf8');
      if (text.startsWith('close:')) {
        ws.close(Number(text.slice('close:'.length)), 'asked to');
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', (err) => console.error(`node_server: connection: ${err.message}`));
});
