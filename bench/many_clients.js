// A load generator whose connections come from many client addresses (wrk has one): scenario 11,
// where --sticky ip chooses the worker by the client's address.
//   node many_clients.js PORT SECONDS CONNECTIONS ADDRESSES
// CONNECTIONS loops, each a new connection per request ("Connection: close"), the n-th
// connection from 127.0.1.(n % ADDRESSES + 1). Prints one JSON line: requests, errors, seconds,
// and per address the worker pids that answered (X-Worker-Pid): with stickiness one each.
'use strict';
const net = require('node:net');

const [port, seconds, connections, addresses] = process.argv.slice(2).map(Number);
const request = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
const deadline = performance.now() + seconds * 1000;
const pidsOf = new Map();
let requests = 0;
let errors = 0;
let next = 0;
let running = connections;

function one(next_) {
  let over = false;
  const done = () => { if (!over) { over = true; next_(); } };
  const address = `127.0.1.${(next++ % addresses) + 1}`;
  const chunks = [];
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: address });
  socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
  socket.on('connect', () => socket.end(request));
  socket.on('data', (chunk) => chunks.push(chunk));
  socket.on('error', () => { errors += 1; done(); });
  socket.on('end', () => {
    const text = Buffer.concat(chunks).toString('latin1');
    const pid = /\r\nX-Worker-Pid: (\d+)/i.exec(text);
    if (text.startsWith('HTTP/1.1 200') && pid) {
      requests += 1;
      if (!pidsOf.has(address)) pidsOf.set(address, new Set());
      pidsOf.get(address).add(pid[1]);
    } else {
      errors += 1;
    }
    done();
  });
}

const started = performance.now();
function loop() {
  if (performance.now() >= deadline) {
    running -= 1;
    if (running === 0) finish();
    return;
  }
  one(loop);
}

function finish() {
  const perAddress = {};
  for (const [address, pids] of pidsOf) perAddress[address] = [...pids];
  process.stdout.write(JSON.stringify({
    requests, errors, seconds: (performance.now() - started) / 1000, pids: perAddress,
  }) + '\n');
}

for (let i = 0; i < connections; i += 1) loop();
