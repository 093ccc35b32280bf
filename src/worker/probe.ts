// The readiness probe: GET /health on a sandbox's port. Any HTTP response,
// whatever its status, means the sandbox is serving; a refused connection
// means it has not bound its port yet. Dirigent's [dev] branch probes the
// same path with a 10 ms client timeout.
//
// One attempt is a bare TCP connect plus a one-line request on node:net: no
// agent, no HTTP parser, a few tens of microseconds of worker CPU, because
// the probe is polled every few milliseconds while a sandbox boots and cold
// start latency is what users feel.
import * as net from 'node:net';

export type ProbeResult = 'ready' | 'refused' | 'timeout' | 'error';

/** The host to connect to for a sandbox bound on bindHost: a wildcard bind is reached on loopback. */
export function probeHost(bindHost: string): string {
  if (bindHost === '0.0.0.0' || bindHost === '') return '127.0.0.1';
  if (bindHost === '::') return '::1';
  return bindHost;
}

/** One probe attempt. Never rejects. */
export function probeOnce(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    let head = '';
    const socket = net.connect({ host, port, noDelay: true });
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => finish('timeout'));
    socket.once('connect', () => {
      const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      socket.write(`GET /health HTTP/1.1\r\nhost: ${authority}\r\nuser-agent: baton-probe\r\nconnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (head.length >= 5) finish(head.startsWith('HTTP/') ? 'ready' : 'error');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? 'refused' : 'error'));
    // Closed without a status line: something accepted and hung up, not an HTTP server (yet).
    socket.once('close', () => finish('error'));
  });
}

// Readiness polling. Refused connects on loopback cost tens of microseconds,
// so during the first second the probe runs every millisecond (about 5 % of a
// core while a sandbox boots): a cold start is judged against raw
// spawn-to-first-response + 5 ms (DESIGN.md), and every millisecond between
// the sandbox binding its port and the next probe is added to it. A ×1.5
// back-off to 50 ms would probe at 32 ms and then 49 ms for a ~30 ms Node
// boot. After that second nothing is interactive any more and the gap grows
// ×1.5 to 50 ms.
const PROBE_FIRST_DELAY_MS = 1;
const PROBE_BACKOFF = 1.5;
const PROBE_FAST_PHASE_MS = 1000;
const PROBE_FAST_MAX_DELAY_MS = 1;
const PROBE_MAX_DELAY_MS = 50;
// A connected probe with no answer yet is given 25 ms, doubling on each timeout
// (up to 1 s), so a slow first response is not cut off again and again.
const PROBE_ATTEMPT_TIMEOUT_MS = 25;
const PROBE_MAX_ATTEMPT_TIMEOUT_MS = 1000;

export type ReadinessOutcome = 'ready' | 'exited' | 'aborted' | 'timeout';

export interface WaitReadyOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Aborted when the sandbox is deleted while it starts. */
  readonly signal: AbortSignal;
  /** Settles when the sandbox's process ends: polling stops at once. */
  readonly exited: Promise<unknown>;
}

/** Polls GET /health until any HTTP answer, the process ending, an abort, or the timeout. Never rejects. */
export async function waitUntilReady(o: WaitReadyOptions): Promise<ReadinessOutcome> {
  const started = performance.now();
  const deadline = started + o.timeoutMs;
  let delayMs = PROBE_FIRST_DELAY_MS;
  let attemptTimeoutMs = PROBE_ATTEMPT_TIMEOUT_MS;
  let hasExited = false;
  let wake: (() => void) | undefined;
  void o.exited.then(() => {
    hasExited = true;
    wake?.();
  });
  const onAbort = (): void => wake?.();
  o.signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (hasExited) return 'exited';
      if (o.signal.aborted) return 'aborted';
      const left = deadline - performance.now();
      if (left <= 0) return 'timeout';
      const result = await probeOnce(o.host, o.port, Math.min(attemptTimeoutMs, left));
      if (result === 'ready') return 'ready';
      if (result === 'timeout') attemptTimeoutMs = Math.min(attemptTimeoutMs * 2, PROBE_MAX_ATTEMPT_TIMEOUT_MS);
      const now = performance.now();
      if (now >= deadline) return 'timeout';
      if (hasExited || o.signal.aborted) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(delayMs, deadline - now));
        function done(): void {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
      const cap = now - started < PROBE_FAST_PHASE_MS ? PROBE_FAST_MAX_DELAY_MS : PROBE_MAX_DELAY_MS;
      delayMs = Math.min(delayMs * PROBE_BACKOFF, cap);
    }
  } finally {
    o.signal.removeEventListener('abort', onAbort);
  }
}
