// The built-in trace function for `baton loadgen trace --runtime process` and
// `--runtime oci`, as InVitro's trace function: per request it allocates
// `?mem=` MiB (touching every page, so the memory is really used), spins the
// CPU for `?ms=` milliseconds in all (the allocation counts), and answers 200
// with `{"requestedMs", "measuredMs", "allocMs", …}`; measuredMs exceeds
// requestedMs when touching the memory alone takes longer (trace-work.ts).
// It listens on $PORT (default 8080) and $HOST (default 127.0.0.1).
import { createServer } from 'node:http';
import { TRACE_MAX_MB, TRACE_MAX_MS, traceParam, traceWork } from './trace-work.js';

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const requestedMs = traceParam(url.searchParams.get('ms'), TRACE_MAX_MS);
  const memMb = traceParam(url.searchParams.get('mem'), TRACE_MAX_MB);
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(traceWork(requestedMs, memMb)));
});

server.keepAliveTimeout = 5_000;
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
