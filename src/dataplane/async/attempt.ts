// One attempt of an async invocation, on the data plane's own invocation
// path: no HTTP connection to itself. An Attempt is a ProxiedRequest like the
// general path's ProxyRequest (proxy.ts): Proxy.admit() gives it a token on a
// sandbox picked by the function's load-balancing policy, or parks it in the
// function's cold-start queue (which reports it to the control plane, so a
// function at zero scales up), with the same QUEUE_FULL, QUEUE_TIMEOUT and
// shutdown answers as a sync request. It then sends the stored request with
// the sandbox's undici pool and collects the response in memory instead of
// streaming it to a client.
import type { Dispatcher } from 'undici';
import { BatonError, type ErrorCode } from '../../shared/errors.js';
import type { EndpointState, FunctionState } from '../function-table.js';
import { isHopByHopResponseHeader } from '../headers.js';
import type { Proxy } from '../proxy.js';
import { classifyErrorCode, Phase, type ProxiedRequest } from '../request.js';
import type { InvocationResult, StoredInvocation } from './queue-store.js';

/** The data plane's own answer (a crash, a timeout, no such function) as a stored result. */
export function errorResult(status: number, code: string, message: string): InvocationResult {
  return { status, headers: [['content-type', 'application/json']], body: Buffer.from(JSON.stringify({ code, message })), errorCode: code };
}

/** Carries the invocation's id on every attempt, so a function can make a re-run harmless. */
export const INVOCATION_ID_HEADER = 'x-baton-invocation-id';

/**
 * Request headers the attempt sends: the stored ones as a flat list, without
 * content-length (undici sets it from the body), plus the invocation id as
 * INVOCATION_ID_HEADER and x-request-id (which a node handler sees as
 * context.awsRequestId), the same on every attempt and after a restart.
 */
function requestHeaders(stored: Readonly<Record<string, string>>, id: string): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(stored)) {
    if (name === 'content-length' || name === 'transfer-encoding' || name === 'host' || name === 'x-request-id' || name === INVOCATION_ID_HEADER) continue;
    out.push(name, value);
  }
  out.push(INVOCATION_ID_HEADER, id, 'x-request-id', id);
  return out;
}

export class Attempt implements ProxiedRequest {
  // Waiter (cold-start queue links).
  queuePrev: ProxiedRequest | null = null;
  queueNext: ProxiedRequest | null = null;
  inQueue = false;
  deadline = 0;
  phase = Phase.New;
  enqueuedAt = 0;
  queueMs = '0';

  private endpoint: EndpointState | null = null;
  private status = 0;
  private readonly headers: [string, string][] = [];
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private abortUpstream: ((err: Error) => void) | null = null;

  constructor(
    private readonly proxy: Proxy,
    readonly fn: FunctionState,
    private readonly inv: StoredInvocation,
    /** Responses over this are not kept: RESULT_TOO_LARGE. */
    private readonly maxResultBytes: number,
    private readonly done: (result: InvocationResult) => void,
  ) {}

  /** Takes a token (or queues) on the function's normal path. */
  start(): void {
    this.proxy.admit(this, this.fn);
  }

  grant(endpoint: EndpointState): void {
    const budget = this.proxy.granted(this, endpoint);
    if (budget > 0) this.dispatch(endpoint, budget);
  }

  dispatch(endpoint: EndpointState, budgetMs: number): void {
    this.phase = Phase.Dispatched;
    this.endpoint = endpoint;
    const options: Dispatcher.DispatchOptions = {
      path: this.inv.path,
      method: this.inv.method,
      headers: requestHeaders(this.inv.headers, this.inv.id),
      body: this.inv.body.byteLength > 0 ? Buffer.from(this.inv.body) : null,
      headersTimeout: Math.ceil(budgetMs),
      bodyTimeout: this.fn.timeoutMs,
    };
    endpoint.upstream.dispatcher.dispatch(options, this);
  }

  // undici handler ---------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], _resume: () => void, _statusText: string): boolean {
    if (statusCode < 200) return true;
    this.phase = Phase.Responding;
    this.status = statusCode;
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] as Buffer).toString('latin1');
      if (!isHopByHopResponseHeader(name)) this.headers.push([name, (rawHeaders[i + 1] as Buffer).toString('latin1')]);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > this.maxResultBytes) {
      this.abortUpstream?.(new BatonError('RESULT_TOO_LARGE', `the response of ${this.fn.name} is over the limit of ${this.maxResultBytes} bytes`));
      return false;
    }
    this.chunks.push(chunk);
    return true;
  }

  onComplete(_trailers: unknown): void {
    this.phase = Phase.Done;
    this.releaseToken();
    this.fn.countResponse(this.status);
    this.done({ status: this.status, headers: this.headers, body: Buffer.concat(this.chunks) });
  }

  onError(err: Error): void {
    this.phase = Phase.Done;
    const ep = this.releaseToken();
    const [status, code, message]: [number, ErrorCode, string] =
      err instanceof BatonError ? [err.status, err.code, err.message] : classifyErrorCode((err as NodeJS.ErrnoException).code, err.message, this.fn, ep);
    this.proxy.host.onUpstreamError(this.fn, code);
    this.fn.countResponse(status);
    this.done(errorResult(status, code, message));
  }

  /** The proxy's answer instead of the sandbox's: queue full or timed out, function removed, shutting down. */
  fail(status: number, code: string, message: string): void {
    this.phase = Phase.Done;
    this.fn.countResponse(status);
    this.done(errorResult(status, code, message));
  }

  private releaseToken(): EndpointState | null {
    const ep = this.endpoint;
    if (ep !== null) {
      this.endpoint = null;
      this.fn.release(ep);
    }
    return ep;
  }
}
