// Baton's demo function: a Node HTTP server on $PORT, as every `process`
// function is. Try: curl http://127.0.0.1:8080/fn/hello/?name=you
'use strict';
const http = require('node:http');
const { hostname } = require('node:os');

let served = 0;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const name = url.searchParams.get('name') || 'world';
  served += 1;
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({
      message: `Hello, ${name}!`,
      sandbox: process.env.BATON_SANDBOX_ID,
      host: hostname(),
      pid: process.pid,
      served,
    }) + '\n',
  );
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
