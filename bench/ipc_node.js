// Node's side of bench/ipc.py: the same exchange with cluster's worker.send.
// node bench/ipc_node.js MESSAGES ROUND_TRIPS  -> prints {"throughput": ..., "rtt_us": ..., "big_rtt_ms": ...}
'use strict';
const cluster = require('cluster');
const messages = Number(process.argv[2] || 100000);
const roundTrips = Number(process.argv[3] || 5000);
// The large message: a 1 MiB string, echoed by the worker BIG_ROUND_TRIPS times.
const BIG = 'x'.repeat(1 << 20);
const BIG_ROUND_TRIPS = 20;

if (cluster.isPrimary) {
  const worker = cluster.fork();
  const samples = [];
  let sentAt = 0;
  let left = roundTrips;
  const result = {};
  worker.on('message', (m) => {
    if (m === 'got-all') {
      result.throughput = messages / ((performance.now() - sentAt) / 1000);
      sentAt = performance.now();
      worker.send('ping');
    } else if (m === 'pong') {
      samples.push(performance.now() - sentAt);
      if (--left) {
        sentAt = performance.now();
        worker.send('ping');
      } else {
        samples.sort((a, b) => a - b);
        result.rtt_us = samples[Math.floor(samples.length / 2)] * 1000;
        samples.length = 0;
        left = BIG_ROUND_TRIPS;
        sentAt = performance.now();
        worker.send({ big: BIG });
      }
    } else if (m && m.big === BIG) {
      samples.push(performance.now() - sentAt);
      if (--left) {
        sentAt = performance.now();
        worker.send({ big: BIG });
      } else {
        samples.sort((a, b) => a - b);
        result.big_rtt_ms = samples[Math.floor(samples.length / 2)];
        console.log(JSON.stringify(result));
        worker.disconnect();
      }
    }
  });
  worker.on('online', () => {
    worker.send({ expect: messages });
    sentAt = performance.now();
    for (let i = 0; i < messages; i++) worker.send({ i });
  });
} else {
  let expect = -1;
  let count = 0;
  process.on('message', (m) => {
    if (m === 'ping') process.send('pong');
    else if (m && m.big !== undefined) process.send(m);
    else if (m && m.expect !== undefined) expect = m.expect;
    else if (++count === expect) process.send('got-all');
  });
}
