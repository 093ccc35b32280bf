// The built-in trace function for `baton loadgen trace --runtime process`, as
// InVitro's trace function: per request it allocates `?mem=` MiB (touching
// every page, so the memory is really used), spins the CPU for `?ms=`
// milliseconds in all (the allocation counts), and answers 200 with
// `{"requestedMs", "measuredMs", "allocMs", …}`; measuredMs exceeds
// requestedMs when touching the memory alone takes longer.
// It listens on $PORT (default 8080) and $HOST (default 127.0.0.1).
import { createServer } from 'node:http';

const PAGE = 4096;
const MAX_MS = 3_600_000;
const MAX_MB = 10_240;

function param(url: URL, name: string, max: number): number {
  const n = Number(url.searchParams.get(name) ?? '0');
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : 0;
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const requestedMs = param(url, 'ms', MAX_MS);
  const memMb = param(url, 'mem', MAX_MB);
  req.resume();
  const began = performance.now();
  let memory: Buffer | undefined = memMb > 0 ? Buffer.allocUnsafe(Math.round(memMb * 1024 * 1024)) : undefined;
  if (memory) for (let i = 0; i < memory.length; i += PAGE) memory[i] = 1;
  const allocMs = Math.round((performance.now() - began) * 1000) / 1000;
  // Spin for what is left of the requested time (InVitro counts the allocation
  // in it): a busy loop, so the time is CPU time as the trace's function used it.
  let x = 0;
  while (performance.now() - began < requestedMs) x = (x + 1) % 1_000_003;
  memory = undefined;
  const measuredMs = Math.round((performance.now() - began) * 1000) / 1000;
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requestedMs, measuredMs, allocMs, memoryMb: memMb, spins: x }));
});

server.keepAliveTimeout = 5_000;
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
