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
