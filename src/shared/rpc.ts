// Internal RPC: the services in proto/ served with Connect, which also speaks
// gRPC and gRPC-Web, so a peer in another language can join with a gRPC
// client. Baton's own clients use the Connect protocol (binary protobuf) over
// h2c: on loopback a call costs ~1.2 ms with it against ~2.1 ms with
// connect-node's gRPC client, and three calls sit on the cold-start path.
//
// Components in one process (`baton up`, the tests' clusters) call each
// other in memory: a client whose base URL names a port this process serves
// RPC on uses Connect's router transport to that server's routes, with the
// same interceptors, serialization, deadlines and errors, but no HTTP/2. An
// h2c call costs ~1–2 ms of latency on this machine, and four of them sit
// between a queued request and its cold start's answer (urgent report,
// CreateSandbox there and back, AddEndpoints): that was most of what Baton
// added to a raw spawn. The choice is made per call, so a server that closes
// (a component stopping) is reached over the network again, and refuses.
//
// Every internal port also answers GET /health and GET /metrics over plain
// HTTP/1.1, for probes and Prometheus. A BatonError thrown by a handler
// crosses the wire as a ConnectError whose `baton-error-code` header holds
// the stable code; the caller turns it back into the same BatonError.
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import { networkInterfaces } from 'node:os';
import { Code, ConnectError, createClient, createRouterTransport, type Client, type ConnectRouter, type Interceptor, type Transport } from '@connectrpc/connect';
import { connectNodeAdapter, createConnectTransport } from '@connectrpc/connect-node';
import type { DescService } from '@bufbuild/protobuf';
import type { Registry } from 'prom-client';
import { BatonError, isErrorCode, type ErrorCode } from './errors.js';
import type { Logger } from './logging.js';
import { DualListener } from './listener.js';

const ERROR_CODE_HEADER = 'baton-error-code';

const CONNECT_CODE_BY_STATUS: Record<number, Code> = {
  400: Code.InvalidArgument,
  401: Code.Unauthenticated,
  404: Code.NotFound,
  409: Code.AlreadyExists,
  413: Code.ResourceExhausted,
  502: Code.Unavailable,
  503: Code.Unavailable,
  504: Code.DeadlineExceeded,
};

/** Turns a BatonError (or anything) into a ConnectError carrying the Baton code. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err instanceof BatonError ? err : new BatonError('INTERNAL', err instanceof Error ? err.message : String(err));
  const ce = new ConnectError(e.message, CONNECT_CODE_BY_STATUS[e.status] ?? Code.Internal);
  ce.metadata.set(ERROR_CODE_HEADER, e.code);
  return ce;
}

/** Turns an error from an RPC call back into a BatonError with the remote code. */
export function fromRpcError(err: unknown, peer: string): BatonError {
  if (err instanceof BatonError) return err;
  const ce = ConnectError.from(err);
  const code = ce.metadata.get(ERROR_CODE_HEADER);
  if (code && isErrorCode(code)) return new BatonError(code, ce.rawMessage, { cause: err });
  const fallback: ErrorCode =
    ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded || ce.code === Code.Canceled
      ? 'PEER_UNAVAILABLE'
      : ce.code === Code.Unauthenticated
        ? 'UNAUTHORIZED'
        : 'INTERNAL';
  return new BatonError(fallback, `${peer}: ${ce.rawMessage}`, { cause: err });
}

function authInterceptor(token: string | undefined): Interceptor {
  return (next) => async (req) => {
    if (token) req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
}

function requireToken(token: string | undefined): Interceptor {
  return (next) => async (req) => {
    if (token && req.header.get('authorization') !== `Bearer ${token}`) {
      throw toConnectError(new BatonError('UNAUTHORIZED', 'missing or wrong bearer token'));
    }
    return next(req);
  };
}

/** Maps handler errors to ConnectErrors with the Baton code, and logs internal ones. */
function errorMapper(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof BatonError) && !(err instanceof ConnectError)) {
        log.error({ err, method: req.method.name }, 'RPC handler failed');
      }
      throw toConnectError(err);
    }
  };
}

export interface RpcClientOptions {
  /** Base URL, e.g. http://10.0.0.5:10010. */
  baseUrl: string;
  token?: string | undefined;
  timeoutMs?: number;
  /** false: always over the network, even to a server of this process (the tests of the wire). Default true. */
  inProcess?: boolean;
}

/** A typed client for one of Baton's services: Connect protocol, binary, over h2c, or in memory (above). */
export function createRpcClient<S extends DescService>(service: S, options: RpcClientOptions): Client<S> {
  const interceptors = [authInterceptor(options.token)];
  const defaultTimeoutMs = options.timeoutMs ?? 10_000;
  const network = createConnectTransport({
    httpVersion: '2',
    useBinaryFormat: true,
    baseUrl: options.baseUrl,
    defaultTimeoutMs,
    interceptors,
    idleConnectionTimeoutMs: 60_000,
    pingIntervalMs: 10_000,
  });
  const url = new URL(options.baseUrl);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  // The in-memory transport to the local server, made on first use, again if another server takes the port.
  let local: { server: LocalServer; transport: Transport } | undefined;
  const pick = (): Transport => {
    const server = options.inProcess === false || !inProcessCalls ? undefined : localServer(port, url.hostname);
    if (!server) return network;
    if (local?.server !== server) {
      local = {
        server,
        transport: createRouterTransport(server.routes, {
          router: { interceptors: server.interceptors, readMaxBytes: RPC_READ_MAX_BYTES },
          transport: { interceptors, defaultTimeoutMs },
        }),
      };
    }
    return local.transport;
  };
  return createClient(service, {
    unary: (...args) => pick().unary(...args),
    stream: (...args) => pick().stream(...args),
  });
}

/**
 * Whether clients of this process call its own servers in memory (the
 * default). `baton up --config` with inProcessRpc: false turns it off for the
 * process, so the wire can be measured or a test can widen the windows
 * between calls.
 */
let inProcessCalls = true;

export function setInProcessCalls(enabled: boolean): void {
  inProcessCalls = enabled;
}

/** An RPC server of this process, for the in-memory transport. */
interface LocalServer {
  readonly listener: DualListener;
  /** The host it was asked to bind. */
  readonly host: string;
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors: Interceptor[];
}

/** This process's RPC servers, by port. */
const localServers = new Map<number, LocalServer>();

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$/;

/** The server of this process that a URL with this port and host reaches, if any is open. */
function localServer(port: number, hostname: string): LocalServer | undefined {
  const server = localServers.get(port);
  if (!server) return undefined;
  if (!server.listener.accepting) {
    localServers.delete(port);
    return undefined;
  }
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === server.host) return server;
  const wildcard = server.host === '0.0.0.0' || server.host === '::' || server.host === '';
  if (LOOPBACK.test(host)) return wildcard || LOOPBACK.test(server.host) ? server : undefined;
  return wildcard && isLocalAddress(host) ? server : undefined;
}

function isLocalAddress(host: string): boolean {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.address === host) return true;
  }
  return false;
}

const RPC_READ_MAX_BYTES = 16 * 1024 * 1024;

export interface RpcServerOptions {
  host: string;
  port: number;
  log: Logger;
  token?: string | undefined;
  routes: (router: ConnectRouter) => void;
  metrics: Registry;
  /** Readiness for GET /health: a reason when not ready. */
  health?: () => { ok: boolean; detail?: Record<string, unknown> };
  /** Other HTTP routes served before RPC (the control plane's admin API). */
  fallback?: (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;
}

/** Serves RPC, /health and /metrics on one HTTP/1.1 + h2c port. */
export async function startRpcServer(options: RpcServerOptions): Promise<DualListener> {
  const interceptors = [errorMapper(options.log), requireToken(options.token)];
  const rpc = connectNodeAdapter({
    routes: options.routes,
    interceptors,
    readMaxBytes: RPC_READ_MAX_BYTES,
    fallback: options.fallback
      ? (req, res) => options.fallback?.(req, res as AnyResponse)
      : (req, res) =>
          sendError(res as AnyResponse, new BatonError('NOT_FOUND', `no route for ${req.method ?? ''} ${req.url ?? ''}`)),
  });
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/health') {
      const h = options.health?.() ?? { ok: true };
      sendJson(res, h.ok ? 200 : 503, { status: h.ok ? 'ok' : 'unavailable', ...h.detail });
      return;
    }
    if (req.method === 'GET' && url === '/metrics') {
      options.metrics
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': options.metrics.contentType });
          res.end(text);
        })
        .catch((err: unknown) => sendError(res, new BatonError('INTERNAL', String(err))));
      return;
    }
    rpc(req, res);
  };
  const listener = await DualListener.listen(handler, { host: options.host, port: options.port, log: options.log });
  localServers.set(listener.port, { listener, host: options.host, routes: options.routes, interceptors });
  return listener;
}

type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

export function sendJson(res: AnyResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(res: AnyResponse, err: BatonError, headers?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy?.();
    return;
  }
  sendJson(res, err.status, err.toJSON(), headers);
}

