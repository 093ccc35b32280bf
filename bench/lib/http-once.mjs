// A minimal HTTP/1.1 client on node:net for cold-start measurements: one GET on a fresh
// connection with `connection: close`, so every side of a comparison pays the same client
// cost and nothing is pooled.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FIXTURES, HELLO_SERVER, freePort, sleep, stopChild } from './harness.mjs';

const REQUEST_TIMEOUT_MS = 30_000;


/**
 * One GET on a fresh connection with `connection: close`. Resolves with the status, the
 * headers (lower-case names) and the body once the response is complete (content-length
 * reached, last chunk seen, or the server closed). Rejects on a connect error (the caller
 * tells "refused" from the rest by err.code) or after timeoutMs.
 */
export function getOnce(host, port, urlPath, timeoutMs = REQUEST_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    let buf = Buffer.alloc(0);
    let head = null; // { status, headers, bodyStart }
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const complete = () => {
      const body = buf.subarray(head.bodyStart);
      const length = head.headers['content-length'];
      if (length !== undefined) return body.length >= Number(length) ? body.subarray(0, Number(length)) : null;
      if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) return body.includes('0\r\n\r\n') ? dechunk(body) : null;
      return null; // until close
    };
    socket.setTimeout(timeoutMs, () => finish(Object.assign(new Error(`GET ${urlPath} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    socket.once('connect', () => {
      socket.write(`GET ${urlPath} HTTP/1.1\r\nhost: ${host}:${port}\r\nuser-agent: baton-bench\r\nconnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (head === null) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
        if (!status) return finish(new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`));
        const headers = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        head = { status, headers, bodyStart: end + 4 };
      }
      const body = complete();
      if (body !== null) finish(null, { status: head.status, headers: head.headers, body: body.toString('utf8') });
    });
    socket.once('end', () => {
      if (head === null) finish(Object.assign(new Error('connection closed before a response'), { code: 'ECONNRESET' }));
      else finish(null, { status: head.status, headers: head.headers, body: buf.subarray(head.bodyStart).toString('utf8') });
    });
    socket.once('error', (err) => finish(err));
  });
}

function dechunk(body) {
  const parts = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
    if (!size) return Buffer.concat(parts);
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}


/** Raw: spawn the fixture with a clean environment, poll until 200. Milliseconds. */
export async function rawColdStart() {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [HELLO_SERVER], {
    cwd: FIXTURES,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port), HOST: '127.0.0.1' },
    stdio: 'ignore',
  });
  child.benchName = 'hello-server (raw)';
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    for (;;) {
      try {
        const res = await getOnce('127.0.0.1', port, '/', 5_000);
        if (res.status === 200) return { ms: performance.now() - t0, body: res.body };
      } catch (err) {
        if (err.code !== 'ECONNREFUSED' && err.code !== 'ECONNRESET') throw err;
      }
      if (child.exitCode !== null) throw new Error(`hello-server exited with ${child.exitCode} before answering`);
      if (performance.now() - t0 > REQUEST_TIMEOUT_MS) throw new Error('hello-server did not answer within 30 s');
      await sleep(1);
    }
  } finally {
    await stopChild(child, 5_000);
  }
}
