// SPDX-License-Identifier: Apache-2.0
// A WebSocket echo server on Node's `ws` (run with NODE_PATH holding `ws`):
// binds 127.0.0.1 port 0, prints "PORT <n>", echoes every message with its
// type, and greets each client with {"type":"hello"} when argv[2] is "greet".
// ws-probe's --cat is tested against it as an independent implementation.
const WebSocket = require('ws');

const greet = process.argv[2] === 'greet';
const server = new WebSocket.Server({ host: '127.0.0.1', port: 0 }, () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
server.on('connection', (socket) => {
  if (greet) socket.send(JSON.stringify({ type: 'hello' }));
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
