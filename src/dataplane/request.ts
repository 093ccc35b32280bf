// What the two invocation paths share: the request's lifecycle phases, the
// interface the proxy needs from a queued request, the hooks into the data
// plane, and the error classification for failures between us and a sandbox.
//
// The fast path (fast-path.ts: HTTP/1.1 on raw sockets) and the general path
// (proxy.ts: node:http and h2c in, undici out) differ in how bytes move, not
// in what a request is: both take tokens from FunctionState, wait in the same
// cold-start queue, and answer failures with the same codes.
import type { ErrorCode } from '../shared/errors.js';
import type { AsyncSubmitter } from './async-submitter.js';
import type { Logger } from '../shared/logging.js';
import type { EndpointState, FunctionState, Waiter } from './function-table.js';

export const SANDBOX_HEADER = 'x-baton-sandbox';
export const QUEUE_MS_HEADER = 'x-baton-queue-ms';

export const enum Phase {
  New,
  Queued,
  /** Handed to an upstream; no response yet. */
  Dispatched,
  /** The response head has reached (or is on its way to) the client. */
  Responding,
  Done,
}

/** A request as the queue and the proxy see it, whichever path carries it. */
export interface ProxiedRequest extends Waiter {
  readonly fn: FunctionState;
  phase: Phase;
  /** performance.now() when queued; 0 if never queued. */
  enqueuedAt: number;
  /** x-baton-queue-ms, formatted. */
  queueMs: string;
  /** Answers with `{code, message}` and the status, ending the request. */
  fail(status: number, code: string, message: string, retryAfter?: string): void;
}

/** What the proxy needs from the data plane around it. */
export interface ProxyHost {
  readonly functions: ReadonlyMap<string, FunctionState>;
  /** The function had nothing in flight or queued and now has: report it from now on. */
  onActive(fn: FunctionState): void;
  /** A request queued because no token was free: the control plane should hear at once. */
  onQueued(fn: FunctionState): void;
  /** A queued request got a token after waiting `waitedMs`. */
  onColdStartWait(fn: FunctionState, waitedMs: number): void;
  /** A request named no known function (or was a health check). */
  onUnrouted(status: number): void;
  /** An upstream request failed with `code`. */
  onUpstreamError(fn: FunctionState, code: ErrorCode): void;
}

export interface ProxyOptions {
  maxBodyBytes: number;
  maxQueueLength: number;
  /** Logs one line per request when set. */
  requestLog: Logger | null;
  log: Logger;
  /** The data plane's asynchronous queue (the Lambda Invoke API's Event type); null when off. */
  asyncSubmitter?: () => AsyncSubmitter | null;
}

/** Milliseconds for x-baton-queue-ms: one decimal, no trailing ".0". */
export function formatMs(ms: number): string {
  return String(Math.round(ms * 10) / 10);
}

/** Where a failing request was going, for messages. */
export function describeTarget(fn: FunctionState, ep: EndpointState | null): string {
  return ep ? `sandbox ${ep.sandboxId} (${ep.address})` : `a sandbox of ${fn.name}`;
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Maps a socket or undici error code to the answer the client gets. */
export function classifyErrorCode(
  errCode: string | undefined,
  message: string,
  fn: FunctionState,
  ep: EndpointState | null,
): [status: number, code: ErrorCode, message: string] {
  const where = describeTarget(fn, ep);
  if (errCode === 'UND_ERR_HEADERS_TIMEOUT' || errCode === 'UND_ERR_BODY_TIMEOUT') {
    return [504, 'REQUEST_TIMEOUT', `${where} did not answer within ${fn.timeoutMs} ms`];
  }
  if (errCode !== undefined && UNREACHABLE_CODES.has(errCode)) {
    return [502, 'SANDBOX_UNREACHABLE', `cannot connect to ${where}: ${errCode}`];
  }
  return [502, 'SANDBOX_CRASHED', `${where} closed the connection: ${message}`];
}

export function isHealthPath(url: string): boolean {
  return url === '/health' || url.startsWith('/health?');
}

export function notFoundMessage(name: string): string {
  return name === ''
    ? 'no function named: use a /fn/<name>/ path or a Host header of <name>.<domain>'
    : `no function named ${JSON.stringify(name)}`;
}
