// The HTTP/1.1 fast path: the proxy reads and writes the client's socket
// itself instead of going through node:http, and talks to the sandbox over
// its own keep-alive connections (upstream.ts) instead of undici. On this
// 2-vCPU machine that is the difference between ~0.5× and ~0.85× HAProxy's
// requests/s for a small warm request (bench: docs/dataplane.md); node:http
// plus undici spend ~50 µs of CPU per proxied request, this path ~20 µs.
//
//   client bytes ─▶ ClientConnection: find the head, parseRequestHead()
//     ├─ not plain (chunked upload, Expect, Upgrade, HTTP/1.0, odd bytes…,
//     │  or a Lambda Invoke API call)
//     │     ─▶ hand the connection, bytes unread, to node:http for good
//     └─ FastRequest ─▶ token or cold-start queue ─▶ UpstreamPool.acquire()
//          ─▶ request head + body bytes to the sandbox
//   sandbox bytes ─▶ UpstreamConnection frames them ─▶ FastRequest rewrites
//   the head (hop-by-hop out, x-baton-* in) and passes body bytes through
//   unchanged: Content-Length and chunked bodies as they are, a body
//   delimited by close re-chunked so the client connection survives.
//
// One request at a time per connection: a pipelined next request waits in
// the buffer until the current response is done and the client has taken
// the responses already written (writableNeedDrain), as node:http does. The
// client's connection closes after a response whose request body was not
// fully read (an early error, or the sandbox answered first).
import { STATUS_CODES } from 'node:http';
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ErrorCode } from '../shared/errors.js';
import { clock, deadlineIn } from './clock.js';
import type { EndpointState, FunctionState } from './function-table.js';
import { BodyFraming, CRLFCRLF, MAX_HEAD_BYTES, parseRequestHead, RequestHead, type ResponseHead } from './http1.js';
import {
  describeTarget,
  isHealthPath,
  notFoundMessage,
  Phase,
  QUEUE_MS_HEADER,
  SANDBOX_HEADER,
  type ProxiedRequest,
  type ProxyHost,
  type ProxyOptions,
} from './request.js';
import { isLambdaTarget } from './lambda/invoke-api.js';
import { forwardedPath, functionOf } from './routing.js';
import { fromReadBuffer, UpstreamFailure, type UpstreamConnection, type UpstreamExchange } from './upstream.js';

/** Bytes of pipelined requests buffered before reading pauses. */
const MAX_PIPELINED_BYTES = 64 * 1024;

/** What the fast path needs from the proxy (proxy.ts implements it). */
export interface FastPathHost {
  readonly host: ProxyHost;
  readonly options: ProxyOptions;
  readonly accepting: boolean;
  /** Whether GET /health answers 200. */
  readonly healthy: boolean;
  readonly clients: Set<ClientConnection>;
  toNodeHttp(socket: net.Socket, head: Buffer | null): void;
  lookup(name: string): FunctionState | undefined;
  admit(p: FastRequest, fn: FunctionState): void;
  granted(p: ProxiedRequest, endpoint: EndpointState): number;
  logRequest(fn: FunctionState, method: string, path: string, status: number, startedAt: number, queueMs: string, ep: EndpointState | null): void;
}

function onSocketError(): void {
  // 'close' follows; the request in progress is failed there.
}

/** One client connection on the fast path. */
export class ClientConnection {
  current: FastRequest | null = null;
  /**
   * Committed to closing: after the response in progress (the client asked,
   * an early answer left the body unread, or we are draining), or now. From
   * here on no further request is parsed and later bytes are dropped, so
   * they can never reach a sandbox as requests.
   */
  closing = false;
  /** The client half-closed: answer the complete requests buffered, then end. */
  private peerEnded = false;
  /** Reading paused until the client takes the responses already written. */
  private waitingDrain = false;
  private buf: Buffer | null = null;
  private scanFrom = 0;
  private processing = false;
  private handedOff = false;
  private lastActive = clock.now;
  /** When a partial head started waiting for the rest (0: none). */
  private headSince = 0;
  private readonly head = new RequestHead();

  constructor(
    readonly proxy: FastPathHost,
    readonly socket: net.Socket,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', onSocketError);
    socket.on('drain', this.onDrain);
  }

  start(first: Buffer): void {
    this.onData(first);
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.read(chunk);
    } catch (err) {
      // A bug, not a client error: drop this connection, keep serving the rest.
      this.proxy.options.log.error({ err }, 'fast path failed on a client connection');
      this.socket.destroy();
    }
  };

  private read(chunk: Buffer): void {
    this.lastActive = clock.now;
    const cur = this.current;
    if (cur !== null && cur.bodyRemaining > 0) {
      const rest = cur.feedBody(chunk);
      if (rest === null) return;
      chunk = rest;
    }
    // Past the body of the request in progress nothing more is read once
    // the connection is closing: those bytes are not requests we will serve.
    if (this.closing) return;
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.current === null) this.processBuffered();
    else if (this.buf.length > MAX_PIPELINED_BYTES) this.socket.pause();
  }

  private readonly onEnd = (): void => {
    this.peerEnded = true;
    if (this.current === null) this.processBuffered();
  };

  private readonly onClose = (): void => {
    this.proxy.clients.delete(this);
    const cur = this.current;
    this.current = null;
    cur?.clientClosed();
  };

  private readonly onDrain = (): void => {
    if (this.waitingDrain) {
      this.waitingDrain = false;
      if (this.socket.isPaused()) this.socket.resume();
      if (this.current === null) this.processBuffered();
      return;
    }
    this.current?.onClientDrain();
  };

  /** Ends the connection: nothing more is parsed or read. */
  private end(): void {
    this.closing = true;
    if (!this.socket.destroyed) this.socket.end();
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  /**
   * Parses and starts buffered requests while none is in progress. Ends the
   * connection when it is closing, or the client half-closed and no complete
   * request is left.
   */
  private processBuffered(): void {
    if (this.processing || this.closing) return;
    this.processing = true;
    try {
      while (this.current === null && !this.handedOff && !this.socket.destroyed) {
        if (this.socket.writableNeedDrain) {
          // The client is not reading its responses: answer no more until it
          // does (as node:http), and stop reading its requests meanwhile.
          this.waitingDrain = true;
          this.socket.pause();
          return;
        }
        const buf = this.buf;
        if (buf === null) break;
        const end = buf.indexOf(CRLFCRLF, this.scanFrom);
        if (end === -1) {
          if (buf.length > MAX_HEAD_BYTES) {
            this.handOff();
            return;
          }
          this.scanFrom = buf.length > 3 ? buf.length - 3 : 0;
          if (this.headSince === 0) this.headSince = clock.now;
          break;
        }
        const head = this.head;
        // The Lambda Invoke API buffers whole payloads on node:http (lambda/lambda-api.ts).
        if (end > MAX_HEAD_BYTES || !parseRequestHead(buf.toString('latin1', 0, end), head) || isLambdaTarget(head.target)) {
          this.handOff();
          return;
        }
        this.scanFrom = 0;
        this.headSince = 0;
        let rest: Buffer | null = end + 4 < buf.length ? buf.subarray(end + 4) : null;
        let body: Buffer | null = null;
        const length = head.contentLength;
        if (length > 0 && rest !== null) {
          if (rest.length <= length) {
            body = rest;
            rest = null;
          } else {
            body = rest.subarray(0, length);
            rest = rest.subarray(length);
          }
        }
        this.buf = rest;
        if (head.close) this.closing = true;
        this.startRequest(head, body, head.method === 'HEAD');
        if (this.current === null && this.closing) {
          this.end();
          return;
        }
      }
      if (this.peerEnded && this.current === null && !this.handedOff) this.end();
    } finally {
      this.processing = false;
    }
  }

  private startRequest(head: RequestHead, body: Buffer | null, isHead: boolean): void {
    const proxy = this.proxy;
    const target = head.target;
    const name = functionOf(target, head.host);
    const path = forwardedPath(target);
    const fn = proxy.lookup(name);
    const length = head.contentLength;
    if (length > 0 && (body === null || body.length < length)) {
      // Answers below go out before the body is read: close afterwards.
      if (fn === undefined || !proxy.accepting || length > proxy.options.maxBodyBytes) this.closing = true;
    }
    if (fn === undefined) {
      if (head.method === 'GET' && isHealthPath(target)) {
        const ok = proxy.healthy;
        proxy.host.onUnrouted(ok ? 200 : 503);
        this.writeJson(ok ? 200 : 503, ok ? '{"status":"ok"}' : '{"status":"unavailable"}', '', false);
        return;
      }
      proxy.host.onUnrouted(404);
      this.writeError(404, 'FUNCTION_NOT_FOUND', notFoundMessage(name), '', isHead);
      return;
    }
    if (!proxy.accepting) {
      this.closing = true;
      fn.countResponse(503);
      this.writeError(503, 'UNAVAILABLE', 'the data plane is shutting down', 'retry-after: 1\r\n', isHead);
      return;
    }
    const max = proxy.options.maxBodyBytes;
    if (length > max) {
      fn.countResponse(413);
      this.writeError(413, 'BODY_TOO_LARGE', `request body of ${length} bytes is over the limit of ${max}`, '', isHead);
      return;
    }
    const r = new FastRequest(this, fn, head.method, path, head.headers, length, body);
    this.current = r;
    if (proxy.options.requestLog !== null) r.startedAt = performance.now();
    proxy.admit(r, fn);
  }

  /** The request in progress finished (answered or failed). */
  requestDone(r: FastRequest): void {
    if (this.current !== r) return;
    this.current = null;
    this.lastActive = clock.now;
    if (this.closing) {
      this.end();
      return;
    }
    if (this.socket.isPaused() && !this.waitingDrain) this.socket.resume();
    this.processBuffered();
  }

  writeError(status: number, code: string, message: string, extraHeaderLines: string, isHead: boolean): void {
    this.writeJson(status, JSON.stringify({ code, message }), extraHeaderLines, isHead);
  }

  /** Writes a response of the proxy's own; a HEAD request gets its head only. */
  private writeJson(status: number, body: string, extraHeaderLines: string, isHead: boolean): void {
    if (!this.socket.writable) return;
    const close = this.closing ? 'connection: close\r\n' : '';
    const statusLine = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    const length = Buffer.byteLength(body);
    this.socket.write(`${statusLine}content-type: application/json\r\ncontent-length: ${length}\r\n${extraHeaderLines}${close}\r\n${isHead ? '' : body}`);
  }

  /** Closes the connection if it idled, or sat on a partial head, for too long. */
  sweep(now: number, idleTimeoutMs: number, headersTimeoutMs: number): void {
    if (this.current !== null) return;
    if (this.headSince !== 0 ? now - this.headSince > headersTimeoutMs : now - this.lastActive > idleTimeoutMs) {
      this.socket.destroy();
    }
  }

  /** Ends the connection now if no request is in progress, else after it. */
  closeIfIdle(): void {
    this.closing = true;
    if (this.current === null) this.end();
  }

  /** Gives the connection, with the bytes not yet consumed, to node:http. */
  private handOff(): void {
    this.handedOff = true;
    const s = this.socket;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    s.off('error', onSocketError);
    s.off('drain', this.onDrain);
    this.proxy.clients.delete(this);
    const bytes = this.buf;
    this.buf = null;
    if (s.readableEnded) {
      s.destroy();
      return;
    }
    this.proxy.toNodeHttp(s, bytes);
  }
}

/** One request on the fast path: the queue's node and the upstream exchange. */
export class FastRequest implements ProxiedRequest, UpstreamExchange {
  queuePrev: ProxiedRequest | null = null;
  queueNext: ProxiedRequest | null = null;
  inQueue = false;
  deadline = 0;
  phase = Phase.New;
  enqueuedAt = 0;
  queueMs = '0';
  endpoint: EndpointState | null = null;
  upstream: UpstreamConnection | null = null;
  headersDeadline = 0;
  bodyTimeoutMs = 0;
  /** Request body bytes still to come from the client. */
  bodyRemaining: number;
  /** Body bytes received before an upstream connection was ready. */
  private pendingBody: Buffer[] | null;
  /** The response head, held back to go out with the first body bytes. */
  private pendingHead: string | null = null;
  private rechunk = false;
  private clientGone = false;
  private status = 0;
  startedAt = 0;
  readonly isHead: boolean;

  constructor(
    readonly client: ClientConnection,
    readonly fn: FunctionState,
    readonly method: string,
    readonly path: string,
    readonly headers: string,
    contentLength: number,
    body: Buffer | null,
  ) {
    this.isHead = method === 'HEAD';
    this.bodyRemaining = contentLength > 0 ? contentLength - (body === null ? 0 : body.length) : 0;
    this.pendingBody = body === null ? null : [body];
  }

  get requestSent(): boolean {
    return this.bodyRemaining === 0 && this.pendingBody === null;
  }

  grant(endpoint: EndpointState): void {
    const budget = this.client.proxy.granted(this, endpoint);
    if (budget > 0) this.dispatch(endpoint, budget);
  }

  dispatch(endpoint: EndpointState, budgetMs: number): void {
    this.phase = Phase.Dispatched;
    this.endpoint = endpoint;
    this.headersDeadline = deadlineIn(budgetMs);
    this.bodyTimeoutMs = this.fn.timeoutMs;
    endpoint.upstream.raw.acquire(this);
  }

  /** Takes request body bytes; returns what belongs to the next request, or null. */
  feedBody(chunk: Buffer): Buffer | null {
    const take = chunk.length < this.bodyRemaining ? chunk.length : this.bodyRemaining;
    const part = take === chunk.length ? chunk : chunk.subarray(0, take);
    this.bodyRemaining -= take;
    const up = this.upstream;
    if (up !== null) {
      if (!up.socket.write(part)) this.client.pauseReading();
    } else if (this.phase !== Phase.Done) {
      (this.pendingBody ??= []).push(part);
      this.client.pauseReading();
    }
    return take === chunk.length ? null : chunk.subarray(take);
  }

  // UpstreamExchange -------------------------------------------------------

  onConnection(conn: UpstreamConnection): void {
    this.upstream = conn;
    const s = conn.socket;
    const head = `${this.method} ${this.path} HTTP/1.1\r\nhost: ${(this.endpoint as EndpointState).address}\r\n${this.headers}\r\n`;
    const body = this.pendingBody;
    if (body === null) {
      s.write(head, 'latin1');
    } else {
      this.pendingBody = null;
      s.cork();
      s.write(head, 'latin1');
      for (const b of body) s.write(b);
      s.uncork();
    }
    if (this.bodyRemaining > 0) this.client.resumeReading();
  }

  onUpstreamDrain(): void {
    if (this.bodyRemaining > 0) this.client.resumeReading();
  }

  onResponseHead(r: ResponseHead): void {
    this.phase = Phase.Responding;
    this.status = r.status;
    this.fn.countResponse(r.status);
    this.rechunk = r.framing === BodyFraming.Close;
    // The sandbox answered before the whole body arrived: the rest of it
    // would have to be read and dropped; closing is simpler and rare.
    if (this.bodyRemaining > 0) this.client.closing = true;
    const sandboxId = (this.endpoint as EndpointState).sandboxId;
    let h = `HTTP/1.1 ${r.status} ${r.reason}\r\n${r.headers}${SANDBOX_HEADER}: ${sandboxId}\r\n${QUEUE_MS_HEADER}: ${this.queueMs}\r\n`;
    if (this.rechunk) h += 'transfer-encoding: chunked\r\n';
    if (this.client.closing) h += 'connection: close\r\n';
    this.pendingHead = h + '\r\n';
  }

  onResponseBody(chunk: Buffer): boolean {
    // `chunk` is a view of the shared read buffer: what we write is always a
    // copy, and building it is also how the head and the body leave in one
    // write() (a corked writev costs more in Node than the copy).
    const head = this.pendingHead;
    this.pendingHead = null;
    const headLength = head === null ? 0 : head.length;
    let out: Buffer;
    if (this.rechunk) {
      const size = chunk.length.toString(16);
      out = Buffer.allocUnsafe(headLength + size.length + chunk.length + 4);
      let at = headLength === 0 ? 0 : out.write(head as string, 0, 'latin1');
      at += out.write(size, at, 'latin1');
      out[at++] = 13;
      out[at++] = 10;
      at += chunk.copy(out, at);
      out[at++] = 13;
      out[at] = 10;
    } else if (head === null) {
      out = fromReadBuffer(chunk);
    } else {
      out = Buffer.allocUnsafe(headLength + chunk.length);
      out.write(head, 0, 'latin1');
      chunk.copy(out, headLength);
    }
    return this.client.socket.write(out);
  }

  onResponseFlush(): void {
    const head = this.pendingHead;
    if (head === null) return;
    this.pendingHead = null;
    this.client.socket.write(head, 'latin1');
  }

  onResponseEnd(): void {
    const s = this.client.socket;
    const head = this.pendingHead;
    if (head !== null) {
      this.pendingHead = null;
      s.write(this.rechunk ? head + '0\r\n\r\n' : head, 'latin1');
    } else if (this.rechunk) {
      s.write('0\r\n\r\n', 'latin1');
    }
    this.phase = Phase.Done;
    this.upstream = null;
    const ep = this.endpoint as EndpointState;
    this.endpoint = null;
    this.fn.release(ep);
    if (this.startedAt !== 0) this.client.proxy.logRequest(this.fn, this.method, this.path, this.status, this.startedAt, this.queueMs, ep);
    this.client.requestDone(this);
  }

  onUpstreamError(failure: UpstreamFailure, detail: string): void {
    this.upstream = null;
    if (this.phase === Phase.Done) return;
    // No retry, not even for a bodiless request on a reused connection that
    // closed before answering (a keep-alive race): a sandbox that crashed on
    // the request looks the same, and running a request twice is worse than
    // a 502. Idle connections close before the sandbox's keep-alive does
    // (UPSTREAM_IDLE_MS), which keeps the race rare. undici behaves the same.
    const ep = this.endpoint;
    const headSent = this.phase === Phase.Responding && this.pendingHead === null;
    const counted = this.phase === Phase.Responding;
    this.phase = Phase.Done;
    this.endpoint = null;
    this.pendingHead = null;
    if (ep !== null) this.fn.release(ep);
    if (this.clientGone) return;
    const [status, code, message] = classifyFailure(failure, detail, this.fn, ep);
    this.client.proxy.host.onUpstreamError(this.fn, code);
    if (headSent) {
      // Half a response is already out: cut the connection so the client sees it.
      this.client.socket.destroy();
      return;
    }
    if (!counted) this.fn.countResponse(status);
    this.respond(status, code, message, undefined);
  }

  // ProxiedRequest ---------------------------------------------------------

  fail(status: number, code: string, message: string, retryAfter?: string): void {
    this.phase = Phase.Done;
    if (this.clientGone) return;
    this.fn.countResponse(status);
    this.respond(status, code, message, retryAfter);
  }

  private respond(status: number, code: string, message: string, retryAfter: string | undefined): void {
    if (this.bodyRemaining > 0) this.client.closing = true;
    let extra = '';
    if (this.enqueuedAt !== 0) extra += `${QUEUE_MS_HEADER}: ${this.queueMs}\r\n`;
    if (retryAfter !== undefined) extra += `retry-after: ${retryAfter}\r\n`;
    this.client.writeError(status, code, message, extra, this.isHead);
    if (this.startedAt !== 0) this.client.proxy.logRequest(this.fn, this.method, this.path, status, this.startedAt, this.queueMs, null);
    this.client.requestDone(this);
  }

  /** The client's connection closed. */
  clientClosed(): void {
    if (this.phase === Phase.Done) return;
    this.clientGone = true;
    if (this.phase === Phase.Queued) {
      this.phase = Phase.Done;
      this.fn.queue.remove(this);
      return;
    }
    this.phase = Phase.Done;
    const ep = this.endpoint;
    this.endpoint = null;
    const up = this.upstream;
    this.upstream = null;
    if (up !== null) up.abort();
    else if (ep !== null) ep.upstream.raw.cancel(this);
    if (ep !== null) this.fn.release(ep);
  }

  onClientDrain(): void {
    this.upstream?.resume();
  }
}

function classifyFailure(
  failure: UpstreamFailure,
  detail: string,
  fn: FunctionState,
  ep: EndpointState | null,
): [status: number, code: ErrorCode, message: string] {
  const where = describeTarget(fn, ep);
  switch (failure) {
    case UpstreamFailure.Unreachable:
      return [502, 'SANDBOX_UNREACHABLE', `cannot connect to ${where}: ${detail}`];
    case UpstreamFailure.Timeout:
      return [504, 'REQUEST_TIMEOUT', `${where} did not answer within ${fn.timeoutMs} ms`];
    case UpstreamFailure.BadResponse:
      return [502, 'SANDBOX_CRASHED', `${where} sent an invalid response: ${detail}`];
    default:
      return [502, 'SANDBOX_CRASHED', `${where} closed the connection: ${detail}`];
  }
}
