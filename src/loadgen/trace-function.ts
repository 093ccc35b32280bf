// The built-in trace function for `baton loadgen trace --runtime process`, as
// InVitro's trace function: per request it allocates `?mem=` MiB (touching
// every page, so the memory is really used), spins the CPU for `?ms=`
// milliseconds in all (the allocation counts), and answers 200 with
// `{"requestedMs", "measuredMs", "allocMs", …}`; measuredMs exceeds
// requestedMs when touching the memory alone takes longer.
// It listens on $PORT (default 8080) and $HOST (default 127.0.0.1).
//
// It also speaks InVitro's protocol (reference/workload-peers.md §1.4-1.5),
// for functions registered through Dirigent's form (docs/controlplane.md): a
// request with a `workload` header is InVitro's. `workload: empty` (or an
// image reference naming the empty function) answers at once; anything else
// runs `requested_cpu` ms with `requested_memory` MiB, and the answer is
// InVitro's `{Status, Function, MachineName, ExecutionTime}` (µs). InVitro's
// Go function turns the ms into `multiplier` × ms loops calibrated per
// machine; this one spins by the clock, so it runs the requested time on any
// machine and `multiplier` (or the ITERATIONS_MULTIPLIER its registration
// set) changes nothing. COLD_START_BUSY_LOOP_MS, from the registration's
// cold_start_busy_loop_ms, spins that long before listening: an emulated init.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { hostname } from 'node:os';

const PAGE = 4096;
const MAX_MS = 3_600_000;
const MAX_MB = 10_240;

function bounded(value: string | null | undefined, max: number): number {
  const n = Number(value ?? '0');
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : 0;
}

function param(url: URL, name: string, max: number): number {
  return bounded(url.searchParams.get(name), max);
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The work an InVitro request asks for, or undefined for a request that is not InVitro's (no `workload` header). */
function invitroWork(headers: IncomingHttpHeaders): { ms: number; memMb: number; function: string } | undefined {
  const workload = header(headers, 'workload');
  if (workload === undefined) return undefined;
  const fn = header(headers, 'function') ?? '';
  // The header carries the trace's Image column: `empty`, `trace`, or an image reference.
  if (workload.trim().toLowerCase() === 'empty' || workload.includes('empty_function')) return { ms: 0, memMb: 0, function: fn };
  return { ms: bounded(header(headers, 'requested_cpu'), MAX_MS), memMb: bounded(header(headers, 'requested_memory'), MAX_MB), function: fn };
}

const MACHINE = hostname();

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const invitro = invitroWork(req.headers);
  const requestedMs = invitro ? invitro.ms : param(url, 'ms', MAX_MS);
  const memMb = invitro ? invitro.memMb : param(url, 'mem', MAX_MB);
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
  if (invitro) {
    const answer = { Status: 'OK', Function: invitro.function, MachineName: MACHINE, ExecutionTime: Math.round(measuredMs * 1000) };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requestedMs, measuredMs, allocMs, memoryMb: memMb, spins: x }));
});

server.keepAliveTimeout = 5_000;
const initMs = bounded(process.env.COLD_START_BUSY_LOOP_MS, MAX_MS);
for (const start = performance.now(); performance.now() - start < initMs; );
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
