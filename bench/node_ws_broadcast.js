// SPDX-License-Identifier: Apache-2.0
// Baseline for bench/bench_relay.py: the ~30-line Node `ws` broadcast server
// a team would write first. Each stdin line goes to every open client.
// Usage: node node_ws_broadcast.js [PORT]   (0 or none: any free port; the
// bound address is printed on stderr like ws-relay's.)
'use strict';
const http = require('http');
const readline = require('readline');
const { WebSocketServer, WebSocket } = require('ws');

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, path: '/ws/events', perMessageDeflate: false });

server.listen(Number(process.argv[2] || 0), '127.0.0.1', 4096, () => {
  const { port } = server.address();
  process.stderr.write(`node-ws-broadcast: listening on ws://127.0.0.1:${port}/ws/events\n`);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line) return;
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(line);
  }
});

process.on('SIGTERM', () => process.exit(0));
