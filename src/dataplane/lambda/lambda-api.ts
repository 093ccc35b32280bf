// The Lambda Invoke API on the data plane's port:
// `POST /2015-03-31/functions/{name}/invocations`, so the AWS SDKs and CLI
// can call Baton's functions (docs/dataplane.md, "Lambda Invoke API").
//
//   RequestResponse ─▶ body read whole (≤ 6 MB) ─▶ the function's token or
//                      cold-start queue (Proxy.admit, as any request) ─▶
//                      undici POST / to the sandbox ─▶ answer read whole ─▶
//                      200 with the payload, or a function error
//   Event           ─▶ body read whole (≤ 1 MB) ─▶ AsyncSubmitter ─▶ 202
//   DryRun          ─▶ 204 when the function exists and takes requests
//
// A `node` function gets the payload as its raw event (LAMBDA_EVENT_HEADER,
// shared/lambda.ts) and its handler's return value comes back as the
// payload; any other function gets the payload POSTed to `/` and its
// response body comes back. The Invoke API answers whole payloads, so this
// path buffers both ways instead of streaming, and runs on node:http (the
// fast path hands these requests over): it is a compatibility door, not the
// warm path.
import { randomUUID } from 'node:crypto';
import type * as http from 'node:http';
import { FUNCTION_ERROR_HEADER, LAMBDA_EVENT_HEADER, type FunctionErrorBody } from '../../shared/lambda.js';
import type { AsyncSubmitter } from '../async-submitter.js';
import type { EndpointState, FunctionState } from '../function-table.js';
import type { ClientRequest, ClientResponse } from '../proxy.js';
import { classifyErrorCode, Phase, QUEUE_MS_HEADER, SANDBOX_HEADER, type ProxiedRequest, type ProxyHost } from '../request.js';
import {
  ASYNC_PAYLOAD_LIMIT,
  EXECUTED_VERSION,
  fromBatonFailure,
  httpFunctionError,
  invalidRequest,
  notFound,
  parseInvocationType,
  parseInvokeTarget,
  RESPONSE_PAYLOAD_LIMIT,
  serviceErrorBody,
  SYNC_PAYLOAD_LIMIT,
  tooLarge,
  type ServiceError,
} from './invoke-api.js';

/** What the Invoke API needs from the proxy around it (Proxy implements it). */
export interface LambdaApiHost {
  readonly host: ProxyHost;
  readonly accepting: boolean;
  lookup(name: string): FunctionState | undefined;
  admit(p: ProxiedRequest & { dispatch(ep: EndpointState, budgetMs: number): void }, fn: FunctionState): void;
  granted(p: ProxiedRequest, endpoint: EndpointState): number;
  /** The data plane's asynchronous queue; null when async invocations are off. */
  asyncSubmitter(): AsyncSubmitter | null;
  /** The data plane's own body limit (maxBodyBytes): the Invoke API's limits apply under it. */
  readonly maxBodyBytes: number;
}

/** Thrown while reading a body past its limit. */
class TooLarge extends Error {}

/** Reads a whole body, refusing it past `limit` bytes (by Content-Length at once, else as it arrives). */
async function readWhole(stream: AsyncIterable<Buffer>, declared: number, limit: number): Promise<Buffer> {
  if (declared > limit) throw new TooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > limit) throw new TooLarge();
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

function requestBody(req: ClientRequest): AsyncIterable<Buffer> {
  // Stops reading without destroying the request, so the client still gets the 413.
  return (req as http.IncomingMessage).iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
}

/** Writes a whole answer; an HTTP/1.1 request whose body was not read closes its connection. */
function send(req: ClientRequest, res: ClientResponse, status: number, headers: string[], body: Buffer | string): void {
  if (res.headersSent || res.writableEnded || (res as http.ServerResponse).destroyed) return;
  const out = [...headers, 'content-length', String(Buffer.byteLength(body))];
  if (req.httpVersionMajor === 1 && !(req as http.IncomingMessage).complete) out.push('connection', 'close');
  (res as http.ServerResponse).writeHead(status, out);
  res.end(body);
}

function sendService(req: ClientRequest, res: ClientResponse, requestId: string, e: ServiceError): void {
  const headers = ['content-type', 'application/json', 'x-amzn-RequestId', requestId, 'x-amzn-ErrorType', e.type];
  if (e.retryAfterSeconds !== undefined) headers.push('retry-after', String(e.retryAfterSeconds));
  send(req, res, e.status, headers, serviceErrorBody(e));
}

export class LambdaApi {
  constructor(readonly proxy: LambdaApiHost) {}

  /** Serves one Invoke API request (any URL under /2015-03-31/functions/). */
  handle(req: ClientRequest, res: ClientResponse): void {
    const requestId = randomUUID();
    this.serve(req, res, requestId).catch((err: unknown) => {
      // The client went away while its payload was being read: nobody to answer.
      if ((req as http.IncomingMessage).destroyed || (res as http.ServerResponse).destroyed) return;
      this.proxy.host.onUnrouted(500);
      sendService(req, res, requestId, { status: 500, type: 'ServiceException', message: (err as Error).message, code: 'INTERNAL' });
    });
  }

  private async serve(req: ClientRequest, res: ClientResponse, requestId: string): Promise<void> {
    const fail = (e: ServiceError): void => sendService(req, res, requestId, e);
    const target = parseInvokeTarget(req.url ?? '/');
    if (target === undefined) {
      this.proxy.host.onUnrouted(404);
      return fail({ status: 404, type: 'UnknownOperationException', message: `no Lambda API operation at ${req.url ?? '/'}: Baton serves POST /2015-03-31/functions/{name}/invocations` });
    }
    const fn = this.proxy.lookup(target.name.toLowerCase());
    if (fn === undefined) {
      this.proxy.host.onUnrouted(404);
      return fail(notFound(target.name));
    }
    const answer = (e: ServiceError): void => {
      fn.countResponse(e.status);
      fail(e);
    };
    if (target.qualifier !== '' && target.qualifier !== EXECUTED_VERSION) {
      return answer({ ...notFound(`${target.name}:${target.qualifier}`), message: `Function not found: ${target.name}:${target.qualifier} (Baton has no versions or aliases; use $LATEST or none)` });
    }
    if (req.method !== 'POST') {
      return answer({ status: 405, type: 'InvalidRequestContentException', message: `the Invoke API takes POST, not ${req.method ?? ''}`, code: 'METHOD_NOT_ALLOWED' });
    }
    const type = parseInvocationType(req.headers['x-amz-invocation-type']);
    if (type === undefined) {
      return answer(invalidRequest(`X-Amz-Invocation-Type must be RequestResponse, Event or DryRun`, 'InvalidParameterValueException'));
    }
    const draining: ServiceError = { status: 503, type: 'ServiceException', message: 'the data plane is shutting down', retryAfterSeconds: 1, code: 'UNAVAILABLE' };
    if (!this.proxy.accepting) return answer(draining);
    const limit = Math.min(type === 'Event' ? ASYNC_PAYLOAD_LIMIT : SYNC_PAYLOAD_LIMIT, this.proxy.maxBodyBytes);
    let payload: Buffer;
    try {
      payload = await readWhole(requestBody(req), Number(req.headers['content-length'] ?? '0'), limit);
    } catch (err) {
      if (err instanceof TooLarge) return answer(tooLarge(limit));
      throw err;
    }
    // Reading took time: the function may be gone, or the data plane stopping, since.
    if (fn.removed) return fail(notFound(target.name));
    if (!this.proxy.accepting) return answer(draining);
    const node = fn.spec.runtime === 'node';
    if (node && payload.length > 0 && !isJson(payload)) {
      return answer(invalidRequest('Could not parse request body into json: the payload of a node function is its event, and must be JSON'));
    }
    const headers: Record<string, string> = { 'content-type': node ? 'application/json' : contentType(req) };
    if (node) headers[LAMBDA_EVENT_HEADER] = '1';
    if (type === 'DryRun') {
      fn.countResponse(204);
      return send(req, res, 204, ['x-amzn-RequestId', requestId, 'X-Amz-Executed-Version', EXECUTED_VERSION], '');
    }
    if (type === 'Event') return this.submit(req, res, requestId, fn, headers, payload);
    headers['x-request-id'] = requestId;
    const p = new LambdaInvocation(this, fn, req, res, requestId, headers, payload);
    res.on('close', () => p.clientClosed());
    this.proxy.admit(p, fn);
  }

  /** InvocationType Event: the invocation is written to the async queue, and 202 says it was. */
  private async submit(req: ClientRequest, res: ClientResponse, requestId: string, fn: FunctionState, headers: Record<string, string>, body: Buffer): Promise<void> {
    const submitter = this.proxy.asyncSubmitter();
    if (submitter === null) {
      fn.countResponse(501);
      return sendService(req, res, requestId, {
        status: 501,
        type: 'ServiceException',
        message: 'asynchronous invocations (InvocationType Event) are not enabled on this data plane; call with RequestResponse',
        code: 'ASYNC_DISABLED',
      });
    }
    let id: string;
    try {
      ({ id } = await submitter.submit({ function: fn.name, method: 'POST', path: '/', headers, body }));
    } catch (err) {
      const e = err as { status?: unknown; code?: unknown; message?: unknown; details?: { retryAfterMs?: unknown } };
      if (typeof e.code !== 'string' || typeof e.status !== 'number') throw err;
      const retryMs = e.details?.retryAfterMs;
      const retryAfter = typeof retryMs === 'number' ? String(Math.ceil(retryMs / 1000)) : undefined;
      const outcome = fromBatonFailure(e.status, e.code, String(e.message), throttleOf(fn), retryAfter);
      const service = 'service' in outcome ? outcome.service : { status: 500, type: 'ServiceException', message: String(e.message), code: e.code };
      fn.countResponse(service.status);
      return sendService(req, res, requestId, service);
    }
    fn.countResponse(202);
    send(req, res, 202, ['x-amzn-RequestId', id, 'X-Amz-Executed-Version', EXECUTED_VERSION], '');
  }
}

function isJson(payload: Buffer): boolean {
  try {
    JSON.parse(payload.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

function contentType(req: ClientRequest): string {
  const given = req.headers['content-type'];
  return typeof given === 'string' && given !== '' ? given : 'application/json';
}

function throttleOf(fn: FunctionState): { maxScale: number; sandboxes: number } {
  return { maxScale: fn.spec.scaling.maxScale, sandboxes: fn.endpoints.length };
}

/** The answer was over RESPONSE_PAYLOAD_LIMIT. */
class ResponseTooLarge extends Error {}

/** One RequestResponse call: the cold-start queue's node, then one buffered exchange with a sandbox. */
class LambdaInvocation implements ProxiedRequest {
  queuePrev: ProxiedRequest | null = null;
  queueNext: ProxiedRequest | null = null;
  inQueue = false;
  deadline = 0;
  phase = Phase.New;
  enqueuedAt = 0;
  queueMs = '0';
  private abort: AbortController | null = null;

  constructor(
    readonly api: LambdaApi,
    readonly fn: FunctionState,
    readonly req: ClientRequest,
    readonly res: ClientResponse,
    readonly requestId: string,
    readonly headers: Record<string, string>,
    readonly body: Buffer,
  ) {}

  grant(endpoint: EndpointState): void {
    const budget = this.api.proxy.granted(this, endpoint);
    if (budget > 0) this.dispatch(endpoint, budget);
  }

  dispatch(endpoint: EndpointState, budgetMs: number): void {
    this.phase = Phase.Dispatched;
    void this.exchange(endpoint, budgetMs);
  }

  private async exchange(ep: EndpointState, budgetMs: number): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let payload: Buffer;
    try {
      const r = await ep.upstream.dispatcher.request({
        path: '/',
        method: 'POST',
        headers: this.headers,
        body: this.body,
        headersTimeout: Math.ceil(budgetMs),
        bodyTimeout: this.fn.timeoutMs,
        signal: abort.signal,
      });
      status = r.statusCode;
      headers = r.headers;
      payload = await readAnswer(r.body);
    } catch (err) {
      this.fn.release(ep);
      if (this.phase === Phase.Done) return; // the client went away
      if (err instanceof ResponseTooLarge) {
        this.functionError(ep, { errorMessage: `Response payload size exceeded maximum allowed payload size (${RESPONSE_PAYLOAD_LIMIT} bytes).`, errorType: 'Function.ResponseSizeTooLarge', stackTrace: [] });
        return;
      }
      const [st, code, message] = classifyErrorCode((err as NodeJS.ErrnoException).code, (err as Error).message, this.fn, ep);
      this.api.proxy.host.onUpstreamError(this.fn, code);
      this.fail(st, code, message);
      return;
    }
    this.fn.release(ep);
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    const node = this.fn.spec.runtime === 'node';
    if (node && status === 200 && headers[FUNCTION_ERROR_HEADER] !== undefined) {
      this.respond(200, ep, ['content-type', 'application/json', 'X-Amz-Function-Error', 'Unhandled'], payload);
      return;
    }
    if (status >= 500) {
      this.functionError(ep, httpFunctionError(status, payload));
      return;
    }
    const type = headers['content-type'];
    this.respond(200, ep, ['content-type', typeof type === 'string' ? type : 'application/json', 'x-baton-function-status', String(status)], payload);
  }

  private functionError(ep: EndpointState | null, error: FunctionErrorBody): void {
    this.phase = Phase.Done;
    this.respond(200, ep, ['content-type', 'application/json', 'X-Amz-Function-Error', 'Unhandled'], JSON.stringify(error));
  }

  private respond(status: number, ep: EndpointState | null, headers: string[], body: Buffer | string): void {
    this.fn.countResponse(status);
    headers.push('x-amzn-RequestId', this.requestId, 'X-Amz-Executed-Version', EXECUTED_VERSION, QUEUE_MS_HEADER, this.queueMs);
    if (ep !== null) headers.push(SANDBOX_HEADER, ep.sandboxId);
    send(this.req, this.res, status, headers, body);
  }

  /** Baton failed the call (queue full or timed out, sandbox unreachable or crashed, …). */
  fail(status: number, code: string, message: string, retryAfter?: string): void {
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    const outcome = fromBatonFailure(status, code, message, throttleOf(this.fn), retryAfter);
    if ('functionError' in outcome) {
      this.functionError(null, outcome.functionError);
      return;
    }
    this.fn.countResponse(outcome.service.status);
    sendService(this.req, this.res, this.requestId, outcome.service);
  }

  /** The client's connection closed: leave the queue, or abort the exchange. */
  clientClosed(): void {
    if (this.phase === Phase.Done) return;
    const queued = this.phase === Phase.Queued;
    this.phase = Phase.Done;
    if (queued) this.fn.queue.remove(this);
    else this.abort?.abort();
  }
}

async function readAnswer(body: AsyncIterable<Buffer>): Promise<Buffer> {
  try {
    return await readWhole(body, 0, RESPONSE_PAYLOAD_LIMIT);
  } catch (err) {
    if (err instanceof TooLarge) throw new ResponseTooLarge();
    throw err;
  }
}
