// The invocation path: requests in from clients, out to sandboxes, streamed
// both ways.
//
//   HTTP/1.1 connection ─▶ fast path (fast-path.ts): raw sockets both ways
//        └─ anything unusual ─▶ node:http ─┐
//   h2c session ──────────────────────────┴▶ general path (this file): handle()
//                                               └▶ undici Pool.dispatch ─▶ sandbox
//
// Both paths route the same way (a /fn/<name>/ path prefix, else the first
// Host label), take a token from FunctionState or wait in its cold-start
// queue, and answer failures with the same codes. The Lambda Invoke API's
// /2015-03-31/ paths go to lambda/lambda-api.ts instead. This file holds the
// routing, the queue admission and expiry, and the general path.
//
// The general path is written for speed too (STYLE.md §6): one ProxyRequest
// per request serves as the queue node, the undici dispatch options and the
// undici handler; no closures or timers per request (undici's
// headersTimeout/bodyTimeout bound the sandbox's answer); no clock reads on
// the warm path; no logging unless logRequests is set. It uses the handler
// interface undici's core calls natively (onConnect/onHeaders/onData/
// onComplete/onError), so raw header Buffers go straight into writeHead's
// flat array; the controller-style interface would wrap every request in an
// adapter that parses the headers into an object first.
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { BatonError } from '../shared/errors.js';
import { ClientConnection, type FastPathHost } from './fast-path.js';
import type { EndpointState, FunctionState } from './function-table.js';
import { RequestHeaderScan, responseHeaders, scanRequestHeaders } from './headers.js';
import {
  classifyErrorCode,
  formatMs,
  isHealthPath,
  notFoundMessage,
  Phase,
  QUEUE_MS_HEADER,
  SANDBOX_HEADER,
  type ProxiedRequest,
  type ProxyHost,
  type ProxyOptions,
} from './request.js';
import type { AsyncSubmitter } from './async-submitter.js';
import type { AsyncInvocations } from './async/invocations.js';
import { resultHttp, submitHttp } from './async/http.js';
import { isLambdaTarget } from './lambda/invoke-api.js';
import { LambdaApi, type LambdaApiHost } from './lambda/lambda-api.js';
import { forwardedPath, functionOf, isInvocationsPath } from './routing.js';

export type ClientRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type ClientResponse = http.ServerResponse | http2.Http2ServerResponse;

/** The reason passed to undici when the client went away. */
class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection');
    this.name = 'ClientGoneError';
  }
}

const kProxyRequest = Symbol('baton.proxyRequest');
type TaggedResponse = ClientResponse & { [kProxyRequest]?: ProxyRequest };

/**
 * One request on the general path. It is at once the cold-start queue's
 * node, the options undici's dispatch() reads (path, method, headers, body,
 * time-outs) and the handler undici calls back.
 */
class ProxyRequest implements ProxiedRequest {
  // undici dispatch options: read once by undici's Request constructor.
  path: string;
  method: string;
  headers: string[];
  body: AsyncIterable<Buffer> | null;
  headersTimeout = 0;
  bodyTimeout = 0;

  // Waiter (cold-start queue links).
  queuePrev: ProxiedRequest | null = null;
  queueNext: ProxiedRequest | null = null;
  inQueue = false;
  deadline = 0;

  phase = Phase.New;
  endpoint: EndpointState | null = null;
  enqueuedAt = 0;
  queueMs = '0';
  abortUpstream: ((err: Error) => void) | null = null;
  resumeUpstream: (() => void) | null = null;
  clientGone = false;
  /** performance.now() at arrival, only when requests are logged. */
  startedAt = 0;

  constructor(
    readonly proxy: Proxy,
    readonly fn: FunctionState,
    readonly req: ClientRequest,
    readonly res: ClientResponse,
    method: string,
    path: string,
    headers: string[],
    body: AsyncIterable<Buffer> | null,
  ) {
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.body = body;
  }

  /** Waiter: a token was freed or an endpoint appeared. */
  grant(endpoint: EndpointState): void {
    const budget = this.proxy.granted(this, endpoint);
    if (budget > 0) this.dispatch(endpoint, budget);
  }

  dispatch(endpoint: EndpointState, budgetMs: number): void {
    this.phase = Phase.Dispatched;
    this.endpoint = endpoint;
    // The function's timeout bounds the wait for the response head; between
    // body chunks the sandbox gets the whole timeout again (streams may be
    // long). undici keeps both on its coarse (~1 s) timer wheel.
    this.headersTimeout = Math.ceil(budgetMs);
    this.bodyTimeout = this.fn.timeoutMs;
    endpoint.upstream.dispatcher.dispatch(this as unknown as Dispatcher.DispatchOptions, this);
  }

  // undici handler ---------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.clientGone) abort(new ClientGoneError());
    else this.abortUpstream = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, _statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational: not forwarded
    if (this.phase !== Phase.Dispatched) return false;
    this.phase = Phase.Responding;
    this.resumeUpstream = resume;
    const ep = this.endpoint as EndpointState;
    try {
      (this.res as http.ServerResponse).writeHead(
        statusCode,
        responseHeaders(rawHeaders, SANDBOX_HEADER, ep.sandboxId, QUEUE_MS_HEADER, this.queueMs),
      );
    } catch (err) {
      // A header Node will not send (an invalid character): the response is unusable.
      this.phase = Phase.Dispatched;
      this.abortUpstream?.(new BatonError('SANDBOX_CRASHED', `sandbox sent an invalid response head: ${(err as Error).message}`));
      return false;
    }
    this.fn.countResponse(statusCode);
    return true;
  }

  onData(chunk: Buffer): boolean {
    const res = this.res as http.ServerResponse;
    if (res.write(chunk)) return true;
    if (!this.clientGone) res.once('drain', this.resumeUpstream as () => void);
    return false;
  }

  onComplete(_trailers: unknown): void {
    this.phase = Phase.Done;
    const ep = this.endpoint as EndpointState;
    this.endpoint = null;
    this.res.end();
    this.fn.release(ep);
    if (this.startedAt !== 0) this.logLine(this.res.statusCode, ep);
  }

  onError(err: Error): void {
    const wasResponding = this.phase === Phase.Responding;
    this.phase = Phase.Done;
    const ep = this.endpoint;
    if (ep !== null) {
      this.endpoint = null;
      this.fn.release(ep);
    }
    if (this.clientGone) return;
    const [status, code, message] =
      err instanceof BatonError
        ? [err.status, err.code, err.message]
        : classifyErrorCode((err as NodeJS.ErrnoException).code, err.message, this.fn, ep);
    this.proxy.host.onUpstreamError(this.fn, code);
    if (wasResponding || this.res.headersSent) {
      // Half a response is already out: cut the connection so the client sees it.
      this.res.destroy();
      if (this.startedAt !== 0) this.logLine(status, ep);
      return;
    }
    this.fail(status, code, message);
  }

  // ------------------------------------------------------------------------

  fail(status: number, code: string, message: string, retryAfter?: string): void {
    this.phase = Phase.Done;
    if (this.clientGone) return;
    this.fn.countResponse(status);
    const extra = this.enqueuedAt !== 0 ? [QUEUE_MS_HEADER, this.queueMs] : null;
    sendError(this.req, this.res, status, code, message, retryAfter, extra);
    if (this.startedAt !== 0) this.logLine(status, null);
  }

  /** The client's response closed before we finished: the client went away. */
  clientClosed(): void {
    if (this.phase === Phase.Done) return;
    this.clientGone = true;
    if (this.phase === Phase.Queued) {
      this.phase = Phase.Done;
      this.fn.queue.remove(this);
      return;
    }
    // Dispatched or responding: abort upstream, which calls onError and
    // returns the token. Before undici connected, onConnect aborts.
    const abort = this.abortUpstream;
    if (abort !== null) abort(new ClientGoneError());
  }

  private logLine(status: number, ep: EndpointState | null): void {
    this.proxy.logRequest(this.fn, this.method, this.path, status, this.startedAt, this.queueMs, ep);
  }
}

function onResponseClose(this: TaggedResponse): void {
  this[kProxyRequest]?.clientClosed();
}

/** Routes requests from both paths; owns queue admission and expiry. */
export class Proxy implements FastPathHost, LambdaApiHost {
  /** False while the data plane drains: new requests get 503. */
  accepting = true;
  /**
   * Whether GET /health (no function named) answers 200: the data plane holds
   * the control plane's state and accepts requests. A load balancer sends
   * nothing to a data plane that has just started and knows no function yet.
   */
  get healthy(): boolean {
    return this.accepting && this.synced;
  }
  /** Set once the control plane's full state has been applied (DataPlane.syncState). */
  synced = true;
  /** Raw HTTP/1.1 connections on the fast path. */
  readonly clients = new Set<ClientConnection>();
  /** Gives a connection the fast path will not serve to node:http, with the bytes read so far. */
  toNodeHttp: (socket: net.Socket, head: Buffer | null) => void = (socket) => socket.destroy();
  private readonly scan = new RequestHeaderScan();
  /** Async invocations (submits and /v1/invocations/<id>); null when async.enabled is false. */
  asyncInvocations: AsyncInvocations | null = null;
  /** async.maxBodyBytes. */
  asyncMaxBodyBytes = 0;
  /** The node:http and h2c request handler. */
  readonly handle: (req: ClientRequest, res: ClientResponse) => void;
  private readonly lambda: LambdaApi = new LambdaApi(this);

  constructor(
    readonly host: ProxyHost,
    readonly options: ProxyOptions,
  ) {
    this.handle = (req, res) => {
      try {
        this.route(req, res);
      } catch (err) {
        // A bug, not a client error: answer 500 and keep serving.
        this.options.log.error({ err }, 'proxy handler failed');
        sendError(req, res, 500, 'INTERNAL', (err as Error).message);
      }
    };
  }

  get maxBodyBytes(): number {
    return this.options.maxBodyBytes;
  }

  asyncSubmitter(): AsyncSubmitter | null {
    return this.options.asyncSubmitter?.() ?? null;
  }

  /** Takes a new HTTP/1.1 connection onto the fast path. */
  acceptHttp1(socket: net.Socket, head: Buffer): void {
    const c = new ClientConnection(this, socket);
    this.clients.add(c);
    c.start(head);
  }

  /** The function a request names, or undefined. */
  lookup(name: string): FunctionState | undefined {
    if (name === '') return undefined;
    const functions = this.host.functions;
    const fn = functions.get(name);
    if (fn !== undefined) return fn;
    const lower = name.toLowerCase();
    return lower === name ? undefined : functions.get(lower);
  }

  private route(req: ClientRequest, res: ClientResponse): void {
    const scan = scanRequestHeaders(req.rawHeaders, this.scan);
    const url = req.url ?? '/';
    if (isLambdaTarget(url)) {
      this.lambda.handle(req, res);
      return;
    }
    if (isInvocationsPath(url)) {
      // Reserved before routing, so no Host-routed function can shadow it (routing.ts).
      if (this.asyncInvocations === null) sendError(req, res, 501, 'ASYNC_DISABLED', 'async invocations are off on this data plane (async.enabled)');
      else resultHttp(this.asyncInvocations, req, res, url);
      return;
    }
    const name = functionOf(url, scan.host);
    const path = forwardedPath(url);
    const fn = this.lookup(name);
    if (fn === undefined) {
      this.unrouted(req, res, name, url);
      return;
    }
    if (!this.accepting) {
      fn.countResponse(503);
      sendError(req, res, 503, 'UNAVAILABLE', 'the data plane is shutting down', '1');
      return;
    }
    const method = req.method ?? 'GET';
    if (method === 'CONNECT') {
      fn.countResponse(405);
      sendError(req, res, 405, 'METHOD_NOT_ALLOWED', 'CONNECT is not proxied');
      return;
    }
    if (scan.async) {
      if (this.asyncInvocations === null) {
        fn.countResponse(501);
        sendError(req, res, 501, 'ASYNC_DISABLED', 'async invocations are off on this data plane (async.enabled)');
      } else {
        submitHttp(this.asyncInvocations, this.asyncMaxBodyBytes, req, res, fn, method, path, scan.forward, scan.contentLength);
      }
      return;
    }

    let body: AsyncIterable<Buffer> | null = null;
    const max = this.options.maxBodyBytes;
    if (scan.contentLength !== '') {
      const length = Number(scan.contentLength);
      if (length > max) {
        fn.countResponse(413);
        sendError(req, res, 413, 'BODY_TOO_LARGE', `request body of ${length} bytes is over the limit of ${max}`);
        return;
      }
      if (length > 0) body = readBody(req, max);
    } else if (scan.chunked || (req.httpVersionMajor === 2 && !(req as http2.Http2ServerRequest).stream.endAfterHeaders)) {
      body = readBody(req, max);
    }

    const p = new ProxyRequest(this, fn, req, res, method, path, scan.forward, body);
    if (this.options.requestLog !== null) p.startedAt = performance.now();
    (res as TaggedResponse)[kProxyRequest] = p;
    res.on('close', onResponseClose);
    this.admit(p, fn);
  }

  /** Gives the request a token at once, or queues it. */
  admit(p: ProxiedRequest & { dispatch(ep: EndpointState, budgetMs: number): void }, fn: FunctionState): void {
    if (!fn.reportActive) this.host.onActive(fn);
    const ep = fn.acquire();
    if (ep !== null) {
      p.dispatch(ep, fn.timeoutMs);
      return;
    }
    if (fn.queue.length >= this.options.maxQueueLength) {
      p.fail(503, 'QUEUE_FULL', `the queue of ${fn.name} is full (${this.options.maxQueueLength} requests)`, '1');
      return;
    }
    p.phase = Phase.Queued;
    p.enqueuedAt = performance.now();
    p.deadline = p.enqueuedAt + fn.timeoutMs;
    fn.queue.push(p);
    this.host.onQueued(fn);
  }

  /**
   * A queued request got a token. Returns the time left for the sandbox to
   * answer, or 0 after failing the request because its time is up.
   */
  granted(p: ProxiedRequest, endpoint: EndpointState): number {
    const fn = p.fn;
    const waited = performance.now() - p.enqueuedAt;
    p.queueMs = formatMs(waited);
    this.host.onColdStartWait(fn, waited);
    const remaining = fn.timeoutMs - waited;
    if (remaining >= 1) return remaining;
    fn.release(endpoint);
    p.fail(504, 'QUEUE_TIMEOUT', `no sandbox of ${fn.name} was free within ${fn.timeoutMs} ms`);
    return 0;
  }

  private unrouted(req: ClientRequest, res: ClientResponse, name: string, url: string): void {
    if (req.method === 'GET' && isHealthPath(url)) {
      const ok = this.healthy;
      sendJsonBody(req, res, ok ? 200 : 503, ok ? '{"status":"ok"}' : '{"status":"unavailable"}');
      this.host.onUnrouted(ok ? 200 : 503);
      return;
    }
    this.host.onUnrouted(404);
    sendError(req, res, 404, 'FUNCTION_NOT_FOUND', notFoundMessage(name));
  }

  /** Fails queued requests whose deadline has passed. */
  expireQueued(fn: FunctionState, now: number): void {
    const expired = fn.takeExpired(now);
    if (expired === null) return;
    const t = performance.now();
    // Say which wait it was: for a sandbox to exist, or for a token on busy ones.
    const why =
      fn.endpoints.length === 0
        ? `no sandbox of ${fn.name} became ready within ${fn.timeoutMs} ms`
        : `all ${fn.endpoints.length} sandboxes of ${fn.name} stayed at their concurrency limit (${fn.concurrency}) for ${fn.timeoutMs} ms`;
    for (const w of expired) {
      const p = w as ProxiedRequest;
      p.queueMs = formatMs(t - p.enqueuedAt);
      p.fail(504, 'QUEUE_TIMEOUT', why);
    }
  }

  /** Fails every queued request of a function with the given answer. */
  failQueued(fn: FunctionState, status: number, code: string, message: string, retryAfter?: string): number {
    const waiters = fn.queue.takeAll();
    const t = performance.now();
    for (const w of waiters) {
      const p = w as ProxiedRequest;
      p.queueMs = formatMs(t - p.enqueuedAt);
      p.fail(status, code, message, retryAfter);
    }
    return waiters.length;
  }

  /** Closes fast-path connections that sat idle or half-sent a head for too long. */
  sweepClients(now: number, idleTimeoutMs: number, headersTimeoutMs: number): void {
    for (const c of this.clients) c.sweep(now, idleTimeoutMs, headersTimeoutMs);
  }

  /** Ends every fast-path connection with no request in progress. */
  closeIdleClients(): void {
    for (const c of this.clients) c.closeIfIdle();
  }

  logRequest(fn: FunctionState, method: string, path: string, status: number, startedAt: number, queueMs: string, ep: EndpointState | null): void {
    this.options.requestLog?.info(
      {
        function: fn.name,
        method,
        path,
        status,
        ms: Math.round((performance.now() - startedAt) * 100) / 100,
        queueMs: Number(queueMs),
        sandbox: ep?.sandboxId,
      },
      'request',
    );
  }
}

/**
 * The request body as undici reads it, counted against the limit. It reads
 * through an iterator that does not destroy the request when undici stops
 * early (the sandbox failed, the body was too large), so the client still
 * gets our error response instead of a reset connection.
 */
async function* readBody(req: ClientRequest, maxBytes: number): AsyncGenerator<Buffer> {
  let total = 0;
  const it = (req as http.IncomingMessage).iterator({ destroyOnReturn: false }) as AsyncIterableIterator<Buffer>;
  for await (const chunk of it) {
    total += chunk.length;
    if (total > maxBytes) throw new BatonError('BODY_TOO_LARGE', `request body is over the limit of ${maxBytes} bytes`);
    yield chunk;
  }
}

function sendJsonBody(req: ClientRequest, res: ClientResponse, status: number, text: string, extra?: string[] | null): void {
  const headers = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(text))];
  if (extra) for (const h of extra) headers.push(h);
  // An HTTP/1.1 request whose body we did not read: close rather than read it all.
  if (req.httpVersionMajor === 1 && !(req as http.IncomingMessage).complete) headers.push('connection', 'close');
  (res as http.ServerResponse).writeHead(status, headers);
  res.end(text);
}

/** Writes `{code, message}` with the status, or cuts the connection if a response already began. */
export function sendError(
  req: ClientRequest,
  res: ClientResponse,
  status: number,
  code: string,
  message: string,
  retryAfter?: string,
  extra?: string[] | null,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if ((res as http.ServerResponse).destroyed || res.writableEnded) return;
  const headers = retryAfter === undefined ? extra : [...(extra ?? []), 'retry-after', retryAfter];
  sendJsonBody(req, res, status, JSON.stringify({ code, message }), headers);
}
