#!/usr/bin/env node
// Node `ws` client for tests/interop.rs.
//
// Usage: node node_client.js URL
//
// Connects, sends a text and a binary message, expects both echoed
// unchanged (types preserved), closes normally, prints OK and exits 0. Any
// mismatch, error or a wait over 10 s: a message on stderr and exit 1.
'use strict';

const path = require('path');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));

const url = process.argv[2];
if (!url) {
  console.error('usage: node node_client.js URL');
  process.exit(2);
}

const TEXT = 'hello from node ws \u00e9\u2713';
const BINARY = Buffer.concat([Buffer.from([0, 1, 2, 0xfe, 0xff]), Buffer.from('binary')]);

function fail(why) {
  console.error(`node_client: ${why}`);
  process.exit(1);
}

const timer = setTimeout(() => fail('timed out after 10 s'), 10000);
const ws = new WebSocket(url);
const got = [];

ws.on('open', () => {
  ws.send(TEXT);
  ws.send(BINARY, { binary: true });
});
ws.on('message', (data, isBinary) => {
  got.push({ data, isBinary });
  if (got.length < 2) return;
  const [t, b] = got;
  if (t.isBinary || t.data.toString('utf8') !== TEXT) {
    fail(`first message: expected text ${JSON.stringify(TEXT)}, got ${t.isBinary ? 'binary' : 'text'} ${JSON.stringify(t.data.toString('utf8'))}`);
  }
  if (!b.isBinary || !Buffer.from(b.data).equals(BINARY)) {
    fail(`second message: expected binary ${BINARY.toString('hex')}, got ${b.isBinary ? 'binary' : 'text'} ${Buffer.from(b.data).toString('hex')}`);
  }
  ws.close(1000);
});
ws.on('close', (code) => {
  clearTimeout(timer);
  if (got.length < 2) fail(`closed (${code}) before both echoes arrived`);
  console.log('OK');
  process.exit(0);
});
ws.on('error', (err) => fail(err.message));
