// The built-in trace function for `baton loadgen trace --runtime process` and
// `--runtime oci`, as InVitro's trace function: per request it allocates
// `?mem=` MiB (touching every page, so the memory is really used), spins the
// CPU for `?ms=` milliseconds in all (the allocation counts), and answers 200
// with `{"requestedMs", "measuredMs", "allocMs", …}`; measuredMs exceeds
// requestedMs when touching the memory alone takes longer (trace-work.ts).
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
import { TRACE_MAX_MB, TRACE_MAX_MS, traceParam, traceWork } from './trace-work.js';

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
  return {
    ms: traceParam(header(headers, 'requested_cpu'), TRACE_MAX_MS),
    memMb: traceParam(header(headers, 'requested_memory'), TRACE_MAX_MB),
    function: fn,
  };
}

const MACHINE = hostname();

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const invitro = invitroWork(req.headers);
  const requestedMs = invitro ? invitro.ms : traceParam(url.searchParams.get('ms'), TRACE_MAX_MS);
  const memMb = invitro ? invitro.memMb : traceParam(url.searchParams.get('mem'), TRACE_MAX_MB);
  req.resume();
  const work = traceWork(requestedMs, memMb);
  if (invitro) {
    const answer = { Status: 'OK', Function: invitro.function, MachineName: MACHINE, ExecutionTime: Math.round(work.measuredMs * 1000) };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(work));
});

server.keepAliveTimeout = 5_000;
const initMs = traceParam(process.env.COLD_START_BUSY_LOOP_MS, TRACE_MAX_MS);
for (const start = performance.now(); performance.now() - start < initMs; );
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
