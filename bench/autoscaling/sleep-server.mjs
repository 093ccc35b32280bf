// The function the autoscaling benchmark runs: answers a request after ?ms=N
// milliseconds, so a request holds its sandbox's one concurrency token for a
// known time. Without ?ms it answers at once: the worker's readiness probe
// (GET /health, a 10 ms first attempt timeout that doubles) must not wait.
// Listens on $PORT/$HOST like every Baton `process` function; keep-alive 65 s
// so the data plane's pooled connections are never closed under it mid-run.
import http from 'node:http';

const server = http.createServer((req, res) => {
  const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? '0');
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`slept ${ms}\n`);
  }, Number.isFinite(ms) && ms > 0 ? ms : 0);
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
