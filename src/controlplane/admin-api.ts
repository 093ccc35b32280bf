// The public admin API: HTTP+JSON, versioned under /v1. It shares the control
// plane's port with the internal RPC service (split by path). Every /v1 call
// needs the bearer token when one is configured; /health and /metrics do not.
// Errors are `{code, message}` with the status fixed by the code.
//
// Besides /v1, Dirigent's form registration (`POST /registerService` and
// `POST /`, dirigent-registration.ts) when `compat.dirigentRegistration` is
// `on` (the token is needed as for /v1) or `open` (no token: InVitro sends none).
import { timingSafeEqual } from 'node:crypto';
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import { BatonError, toBatonError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import { sendError, sendJson } from '../shared/rpc.js';
import type { CreationRecord } from './creation-trace.js';
import { DIRIGENT_REGISTRATION_PATHS, dirigentAnswer, dirigentSpec } from './dirigent-registration.js';

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** What the admin API needs from the control plane. */
export interface AdminBackend {
  createFunction(body: unknown): Promise<Record<string, unknown>>;
  listFunctions(): Record<string, unknown>[];
  describeFunction(name: string): Record<string, unknown>;
  patchFunction(name: string, body: unknown): Promise<Record<string, unknown>>;
  deleteFunction(name: string): Promise<void>;
  createChain(body: unknown): Promise<Record<string, unknown>>;
  listChains(): Record<string, unknown>[];
  describeChain(name: string): Record<string, unknown>;
  deleteChain(name: string): Promise<void>;
  listWorkers(): Record<string, unknown>[];
  listDataPlanes(): Record<string, unknown>[];
  listCreations(sinceMs: number, fn: string | undefined): { creations: CreationRecord[]; complete: boolean };
}

export interface AdminApiOptions {
  token: string | undefined;
  maxBodyBytes: number;
  log: Logger;
  /** Dirigent's form registration: `off`, `on` (behind the token, if any) or `open` (never behind it). */
  dirigentRegistration?: 'off' | 'on' | 'open';
}

const FUNCTION_PATH = /^\/v1\/functions\/([^/]+)$/;
const CHAIN_PATH = /^\/v1\/chains\/([^/]+)$/;

/** `since` of GET /v1/creations: Unix milliseconds or an ISO 8601 time; absent, everything kept. */
export function parseSince(value: string | null): number {
  if (value === null || value === '') return 0;
  const ms = /^\d+(\.\d+)?$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new BatonError('INVALID_REQUEST', `since=${value}: expected Unix milliseconds or an ISO 8601 time`);
  return ms;
}

/** Reads a whole body, answering 413 past the limit. */
async function readBody(req: Req, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) throw new BatonError('BODY_TOO_LARGE', `body is over the ${maxBytes}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new BatonError('BODY_TOO_LARGE', `body is over the ${maxBytes}-byte limit`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON body, answering 413 past the limit and 400 on bad JSON. */
export async function readJsonBody(req: Req, maxBytes: number): Promise<unknown> {
  const body = await readBody(req, maxBytes);
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw new BatonError('INVALID_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
  }
}

function tokenMatches(header: string | string[] | undefined, token: string): boolean {
  if (typeof header !== 'string') return false;
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header);
  return got.length === want.length && timingSafeEqual(got, want);
}

export function createAdminHandler(backend: AdminBackend, options: AdminApiOptions): (req: Req, res: Res) => void {
  /** Dirigent's form registration: 200 with the data planes' addresses joined by `;`, as text. */
  const registerDirigent = async (req: Req, res: Res): Promise<void> => {
    const form = new URLSearchParams((await readBody(req, options.maxBodyBytes)).toString('utf8'));
    await backend.createFunction(dirigentSpec(form));
    const answer = dirigentAnswer(backend.listDataPlanes().map((d) => String(d.proxyAddress)));
    (res as http.ServerResponse).writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
  };

  const route = async (req: Req, res: Res): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const dirigent = options.dirigentRegistration ?? 'off';
    if (dirigent !== 'off' && method === 'POST' && DIRIGENT_REGISTRATION_PATHS.includes(path)) {
      if (dirigent === 'on' && options.token && !tokenMatches(req.headers.authorization, options.token)) {
        throw new BatonError(
          'UNAUTHORIZED',
          'this API needs a bearer token (Authorization: Bearer …); InVitro sends none: set controlplane compat.dirigentRegistration to open to register without it',
        );
      }
      return registerDirigent(req, res);
    }
    if (!path.startsWith('/v1/')) throw new BatonError('NOT_FOUND', `no route for ${method} ${path}`);
    if (options.token && !tokenMatches(req.headers.authorization, options.token)) {
      throw new BatonError('UNAUTHORIZED', 'this API needs a bearer token (Authorization: Bearer …)');
    }
    if (path === '/v1/functions') {
      if (method === 'GET') return sendJson(res, 200, { functions: backend.listFunctions() });
      if (method === 'POST') {
        const body = await readJsonBody(req, options.maxBodyBytes);
        return sendJson(res, 201, await backend.createFunction(body));
      }
      throw new BatonError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    }
    const m = FUNCTION_PATH.exec(path);
    if (m) {
      const name = decodeURIComponent(m[1] ?? '');
      if (method === 'GET') return sendJson(res, 200, backend.describeFunction(name));
      if (method === 'PATCH') {
        const body = await readJsonBody(req, options.maxBodyBytes);
        return sendJson(res, 200, await backend.patchFunction(name, body));
      }
      if (method === 'DELETE') {
        await backend.deleteFunction(name);
        return sendJson(res, 200, { deleted: name });
      }
      throw new BatonError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    }
    if (path === '/v1/chains') {
      if (method === 'GET') return sendJson(res, 200, { chains: backend.listChains() });
      if (method === 'POST') {
        const body = await readJsonBody(req, options.maxBodyBytes);
        return sendJson(res, 201, await backend.createChain(body));
      }
      throw new BatonError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    }
    const c = CHAIN_PATH.exec(path);
    if (c) {
      const name = decodeURIComponent(c[1] ?? '');
      if (method === 'GET') return sendJson(res, 200, backend.describeChain(name));
      if (method === 'DELETE') {
        await backend.deleteChain(name);
        return sendJson(res, 200, { deleted: name });
      }
      throw new BatonError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    }
    if (path === '/v1/workers' && method === 'GET') return sendJson(res, 200, { workers: backend.listWorkers() });
    if (path === '/v1/dataplanes' && method === 'GET') return sendJson(res, 200, { dataPlanes: backend.listDataPlanes() });
    if (path === '/v1/creations' && method === 'GET') {
      const fn = url.searchParams.get('function');
      return sendJson(res, 200, backend.listCreations(parseSince(url.searchParams.get('since')), fn === null || fn === '' ? undefined : fn));
    }
    throw new BatonError('NOT_FOUND', `no route for ${method} ${path}`);
  };

  return (req, res) => {
    route(req, res).catch((err: unknown) => {
      const e = toBatonError(err);
      if (e.status >= 500) options.log.error({ err, url: req.url }, 'admin call failed');
      // An unread HTTP/1.1 body would otherwise be parsed as the next request.
      // (HTTP/2 has no such header, and rejects it: its streams end on their own.)
      const headers = !req.complete && req.httpVersionMajor === 1 ? { connection: 'close' } : undefined;
      sendError(res, e, headers);
    });
  };
}
