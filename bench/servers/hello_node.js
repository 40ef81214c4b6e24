// Node's cluster running the hello-world server (the seed's example), for comparison.
//   WORKERS=2 NODE_CLUSTER_SCHED_POLICY=rr|none PORT=3000 node hello_node.js
// WORKERS=0 runs one plain process. The primary prints "ready N" once N workers listen.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

const workers = Number(process.env.WORKERS ?? '2');
const port = Number(process.env.PORT ?? '3000');
const host = process.env.HOST ?? '127.0.0.1';
const slowMs = Number(process.env.SLOW_MS ?? '50');
const pid = String(process.pid);

function serve() {
  http.createServer((req, res) => {
    if (req.url === '/slow') {
      const end = performance.now() + slowMs;
      while (performance.now() < end);
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Worker-Pid': pid });
    res.end('Hello Http');
  }).listen(port, host, () => {
    if (workers === 0) console.log(`ready 1 ${pid}`);
  });
}

if (workers > 0 && cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) console.log(`ready ${workers} ${pid}`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  serve();
}
