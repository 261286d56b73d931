// SPDX-License-Identifier: Apache-2.0
// A WebSocket client on Node's `ws` package, for the ws-relay integration
// tests (tests/support/relay_support.py: NodeClient). It reports everything
// it sees on stdout as NDJSON: {"open":true}, {"message":TEXT}, {"ping":true},
// {"close":CODE,"reason":TEXT}, {"status":HTTP_STATUS}, {"error":TEXT}; and
// sends each stdin line as one text message. Pongs are answered by `ws`.
// Usage: node relay_node_client.js URL [HEADERS_JSON]
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const headers = process.argv[3] ? JSON.parse(process.argv[3]) : {};
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const ws = new WebSocket(url, { headers, maxPayload: 0, handshakeTimeout: 10000 });
ws.on('open', () => out({ open: true }));
ws.on('message', (data) => out({ message: data.toString() }));
ws.on('ping', () => out({ ping: true }));
// Ending: stop reading stdin and let Node exit by itself once stdout is
// flushed (process.exit() could cut the last reports short on a full pipe).
const finish = () => process.stdin.destroy();
ws.on('unexpected-response', (req, res) => { out({ status: res.statusCode }); finish(); });
ws.on('error', (err) => out({ error: err.message }));
ws.on('close', (code, reason) => { out({ close: code, reason: reason.toString() }); finish(); });

let pending = '';
process.stdin.on('data', (chunk) => {
  pending += chunk.toString();
  let nl;
  while ((nl = pending.indexOf('\n')) >= 0) {
    ws.send(pending.slice(0, nl));
    pending = pending.slice(nl + 1);
  }
});
