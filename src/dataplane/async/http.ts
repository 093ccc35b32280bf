// The HTTP side of async invocations, on the data plane's invocation port
// (the general path, proxy.ts; the fast path hands such requests over):
//
//   any method /fn/<name>/… (or Host-routed) with `x-baton-invocation: async`
//   or `X-Amz-Invocation-Type: Event`  ──▶ 202 {"id"} + Location
//   GET /v1/invocations/<id>           ──▶ 200 the invocation, or 404 INVOCATION_NOT_FOUND
import type * as http from 'node:http';
import { BatonError, toBatonError } from '../../shared/errors.js';
import type { FunctionState } from '../function-table.js';
import { sendError, type ClientRequest, type ClientResponse } from '../proxy.js';
import { INVOCATIONS_PATH } from '../routing.js';
import type { AsyncInvocations } from './invocations.js';
import { encodeBody, headerObject } from './policy.js';

/** Headers that asked for async: the sandbox gets the request as an ordinary one. */
const ASYNC_HEADERS = new Set(['x-baton-invocation', 'x-amz-invocation-type']);

/** Invocation ids are UUIDs; anything else is not looked up (it could name another key in a Redis store). */
const ID = /^[0-9A-Za-z-]{1,64}$/;

/** Forwarded request headers (a flat list) as the object stored: lower-case names, repeats joined, the async ones dropped. */
function storedHeaders(flat: readonly string[]): Record<string, string> {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i] as string;
    if (!ASYNC_HEADERS.has(name.toLowerCase())) pairs.push([name, flat[i + 1] as string]);
  }
  return headerObject(pairs);
}

function sendJson(res: ClientResponse, status: number, value: unknown, extra: string[] = []): void {
  const text = JSON.stringify(value);
  (res as http.ServerResponse).writeHead(status, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(text)), ...extra]);
  res.end(text);
}

function sendBatonError(req: ClientRequest, res: ClientResponse, err: unknown): void {
  const e = toBatonError(err);
  const retryAfterMs = e.details?.retryAfterMs;
  const retryAfter = typeof retryAfterMs === 'number' ? String(Math.max(1, Math.ceil(retryAfterMs / 1000))) : undefined;
  if (e.details === undefined) {
    sendError(req, res, e.status, e.code, e.message, retryAfter);
    return;
  }
  if (res.headersSent || res.writableEnded) return;
  sendJson(res, e.status, e.toJSON(), retryAfter === undefined ? [] : ['retry-after', retryAfter]);
}

/** Reads the whole body, failing with BODY_TOO_LARGE past `max` bytes. */
async function readAll(req: ClientRequest, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw new BatonError('BODY_TOO_LARGE', `async request body is over the limit of ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** An async submission: the body is read (at most async.maxBodyBytes), written durably, then 202. */
export function submitHttp(
  invocations: AsyncInvocations,
  maxBodyBytes: number,
  req: ClientRequest,
  res: ClientResponse,
  fn: FunctionState,
  method: string,
  path: string,
  forward: readonly string[],
  contentLength: string,
): void {
  if (contentLength !== '' && Number(contentLength) > maxBodyBytes) {
    fn.countResponse(413);
    sendError(req, res, 413, 'BODY_TOO_LARGE', `async request body of ${contentLength} bytes is over the limit of ${maxBodyBytes}`);
    return;
  }
  void (async () => {
    try {
      const body = await readAll(req, maxBodyBytes);
      const { id } = await invocations.submit({ function: fn.name, method, path, headers: storedHeaders(forward), body });
      fn.countResponse(202);
      sendJson(res, 202, { id }, ['location', `${INVOCATIONS_PATH}/${id}`]);
    } catch (err) {
      const e = toBatonError(err);
      fn.countResponse(e.status);
      sendBatonError(req, res, e);
    }
  })();
}

/** GET /v1/invocations/<id>. */
export function resultHttp(invocations: AsyncInvocations, req: ClientRequest, res: ClientResponse, url: string): void {
  if (req.method !== 'GET') {
    sendError(req, res, 405, 'METHOD_NOT_ALLOWED', `${INVOCATIONS_PATH}/<id> answers GET only`);
    return;
  }
  const q = url.indexOf('?');
  let id = url.slice(INVOCATIONS_PATH.length + 1, q === -1 ? url.length : q);
  try {
    id = decodeURIComponent(id);
  } catch {
    id = '';
  }
  void (async () => {
    try {
      const inv = ID.test(id) ? await invocations.get(id) : undefined;
      if (inv === undefined) throw new BatonError('INVOCATION_NOT_FOUND', `no async invocation ${JSON.stringify(id)} on this data plane (unknown, or its result expired)`);
      const finished = inv.state === 'succeeded' || inv.state === 'failed';
      const result = finished ? inv.result : null;
      const body = result ? encodeBody(result.body) : null;
      sendJson(res, 200, {
        id: inv.id,
        function: inv.function,
        state: inv.state,
        attempts: inv.attempts,
        status: result?.status ?? null,
        headers: result ? headerObject(result.headers) : null,
        body: body?.body ?? null,
        encoding: body?.encoding ?? null,
        errorCode: result?.errorCode ?? null,
        submittedAt: new Date(inv.submittedAt).toISOString(),
        finishedAt: inv.finishedAt === null ? null : new Date(inv.finishedAt).toISOString(),
        expiresAt: inv.expiresAt === null ? null : new Date(inv.expiresAt).toISOString(),
        // While a retry waits: what the last attempt answered, and when the next one may start.
        ...(inv.state === 'queued' && inv.result
          ? { lastAttempt: { status: inv.result.status, errorCode: inv.result.errorCode ?? null }, nextAttemptAt: new Date(inv.notBefore).toISOString() }
          : {}),
      });
    } catch (err) {
      sendBatonError(req, res, err);
    }
  })();
}
