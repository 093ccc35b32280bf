// A `node` runtime process: started by a worker (runtimes/node.ts) before any
// function needs it, it boots Node, loads what every function needs (the
// HTTP server, the event code), says `booted` on its IPC channel, and waits.
// A `load` message binds it to one sandbox: it listens on a port of the
// kernel's choosing (no other program can take it between a choice and a
// bind), takes the function's environment and directory, imports the
// handler, and says `loaded` with the port. From then on each HTTP request is one invocation:
// an API Gateway HTTP API event (format 2.0) in, the handler's result mapped
// to the response (http-event.ts); or, when the data plane serves the Lambda
// Invoke API (the request carries LAMBDA_EVENT_HEADER), the body is the raw
// event and the answer the raw result or Lambda's error object
// (shared/lambda.ts).
//
// Booting Node is most of a cold start (~30 ms on the reference machine,
// DESIGN.md); a pool of these processes takes it off the request's path and
// leaves only the import of the handler and a listen. Node also initialises
// much lazily, on first use: the first listen in a process took ~4 ms and
// the first request through node:http 11-17 ms, against 0.3 ms and ~1.5 ms
// after (measured on a loaded 2-core machine), and importing a CommonJS
// module first does the same for its loader. So before saying `booted` the
// process warms those paths up: one ES and one CommonJS import, and a
// throwaway server that serves a probe and one invocation.
//
// A load that fails (no such file, no such export, a throw at the module's
// top level) is reported as `failed` with one line naming the handler, and
// the process exits with LOAD_FAILED_EXIT_CODE. Readiness probes (GET /health
// with the probe's User-Agent) are answered here, without invoking the
// handler. SIGTERM stops accepting, lets in-flight invocations finish, and
// exits; losing the worker (the channel closes) exits at once.
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import { FUNCTION_ERROR_HEADER, LAMBDA_EVENT_HEADER, resultPayload, thrownErrorBody } from '../../../shared/lambda.js';
import { buildContext, buildEvent, mapResult, type HttpResponse, type InvocationSite, type LambdaContext } from './http-event.js';
import { LOAD_FAILED_EXIT_CODE, NO_WORKER_EXIT_CODE, PROBE_USER_AGENT, type LoadMessage, type RuntimeToWorker } from './protocol.js';

type Handler = (event: unknown, context: LambdaContext, callback?: (error?: unknown, result?: unknown) => void) => unknown;

/** What a client gets when the handler fails: never the error itself (API Gateway's answer). */
const INTERNAL_ERROR: HttpResponse = Object.freeze({
  statusCode: 500,
  headers: { 'content-type': 'application/json' },
  body: Buffer.from('{"message":"Internal Server Error"}'),
});

/** A load failure with a message fit for the worker's error. */
class LoadError extends Error {}

/** What a callback-style handler passed as its error when that was not an Error (Lambda allows a string). */
class CallbackError extends Error {
  override readonly name = 'CallbackError';
  constructor(value: unknown) {
    super(typeof value === 'string' ? value : inspect(value));
  }
}

let site: InvocationSite | undefined;
let handler: Handler | undefined;
let stopping = false;

const server = http.createServer(onRequest);
// Longer than the data plane keeps an idle upstream connection (4 s), so the sandbox never closes one the proxy is about to reuse.
server.keepAliveTimeout = 65_000;

function send(message: RuntimeToWorker, then?: () => void): void {
  if (!process.send) return;
  process.send(message, undefined, undefined, () => then?.());
}

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method === 'GET' && req.url === '/health' && req.headers['user-agent'] === PROBE_USER_AGENT) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    void invoke(req, res, body);
  });
}

async function invoke(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
  const startedMs = Date.now();
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && given !== '' ? given : randomUUID();
  if (req.headers[LAMBDA_EVENT_HEADER] === '1') {
    write(res, requestId, await invokeRaw(body, requestId, startedMs));
    return;
  }
  let response: HttpResponse;
  try {
    if (!site || !handler) throw new Error('no handler is loaded');
    const event = buildEvent(
      {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        httpVersion: req.httpVersion,
        headers: req.headersDistinct,
        remoteAddress: req.socket.remoteAddress ?? '',
        body,
      },
      site,
      requestId,
      startedMs,
    );
    const result = await call(handler, event, buildContext(site, requestId, startedMs));
    response = mapResult(result);
  } catch (err) {
    // The log is the sandbox's: the operator sees the error, the client only that there was one.
    logInvokeError(requestId, err);
    response = INTERNAL_ERROR;
  }
  write(res, requestId, response);
}

/** Writes the sandbox log's line for a failed invocation, as Lambda's runtime does. */
function logInvokeError(requestId: string, err: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `${typeof err} thrown: ${inspect(err)}`;
  process.stderr.write(`${new Date().toISOString()}\t${requestId}\tERROR\tInvoke Error: ${detail}\n`);
}

/**
 * A Lambda Invoke: the body is the event as the caller sent it (JSON; empty is
 * `{}`), the answer the handler's result, or Lambda's error object with
 * FUNCTION_ERROR_HEADER when it throws. Unlike an HTTP request, the caller
 * sees the error: that is what the Invoke API returns.
 */
async function invokeRaw(body: Buffer, requestId: string, startedMs: number): Promise<HttpResponse> {
  const json = { 'content-type': 'application/json' };
  let event: unknown;
  try {
    event = body.length === 0 ? {} : (JSON.parse(body.toString('utf8')) as unknown);
  } catch (err) {
    return { statusCode: 400, headers: json, body: Buffer.from(JSON.stringify({ message: `the event is not JSON: ${(err as Error).message}` })) };
  }
  try {
    if (!site || !handler) throw new Error('no handler is loaded');
    const result = await call(handler, event, buildContext(site, requestId, startedMs));
    return { statusCode: 200, headers: json, body: resultPayload(result) };
  } catch (err) {
    logInvokeError(requestId, err);
    const error = Buffer.from(JSON.stringify(thrownErrorBody(err)));
    return { statusCode: 200, headers: { ...json, [FUNCTION_ERROR_HEADER]: 'Unhandled' }, body: error };
  }
}

function write(res: http.ServerResponse, requestId: string, response: HttpResponse): void {
  if (res.destroyed) return;
  const { statusCode, headers, body: payload } = response;
  // writeHead commits the headers, so the length is given here or the answer goes chunked.
  const hasBody = statusCode !== 204 && statusCode !== 304 && statusCode >= 200;
  try {
    res.writeHead(statusCode, hasBody ? { ...headers, 'content-length': String(payload.length) } : headers);
    res.end(hasBody ? payload : undefined);
  } catch (err) {
    // mapResult checks what node:http checks; should anything still be refused, this
    // request fails, not every request the sandbox is serving.
    process.stderr.write(`${new Date().toISOString()}\t${requestId}\tERROR\tcannot write the response: ${(err as Error).message}\n`);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'application/json', 'content-length': String(INTERNAL_ERROR.body.length) });
      res.end(INTERNAL_ERROR.body);
    } else {
      res.destroy();
    }
  }
}

/** Runs an async handler, or a callback-style one (three parameters): whichever settles first wins. */
function call(fn: Handler, event: unknown, context: LambdaContext): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const callback =
      fn.length >= 3
        ? (error?: unknown, result?: unknown): void => {
            if (error !== undefined && error !== null) reject(error instanceof Error ? error : new CallbackError(error));
            else resolve(result);
          }
        : undefined;
    const returned = callback ? fn(event, context, callback) : fn(event, context);
    // A callback-style handler's own return value is ignored unless it is a promise.
    if (!callback || isThenable(returned)) resolve(returned);
  });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/** The handler's module: `file` in dir, as Lambda's Node runtime looks for it (.js, .mjs, .cjs), then the exact name. */
function findModule(dir: string, file: string, spec: string): string {
  const candidates = [`${file}.js`, `${file}.mjs`, `${file}.cjs`, file];
  for (const name of candidates) {
    const stat = statSync(join(dir, name), { throwIfNoEntry: false });
    if (stat?.isFile()) return name;
  }
  const dirStat = statSync(dir, { throwIfNoEntry: false });
  if (!dirStat?.isDirectory()) throw new LoadError(`handler "${spec}": the function's directory ${dir} does not exist or is not a directory`);
  throw new LoadError(`handler "${spec}": no ${candidates.slice(0, 3).join(', ')} or ${file} in ${dir}`);
}

async function loadHandler(dir: string, spec: string): Promise<Handler> {
  const dot = spec.lastIndexOf('.');
  const file = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const name = findModule(dir, file, spec);
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(join(dir, name)).href)) as Record<string, unknown>;
  } catch (err) {
    process.stderr.write(`cannot load ${name}: ${err instanceof Error ? (err.stack ?? err.message) : inspect(err)}\n`);
    throw new LoadError(`handler "${spec}": cannot load ${name}: ${describeLoadError(err)}`);
  }
  // A CommonJS module's exports are named exports when Node can see them statically, and always under default.
  const fallback = namespace.default;
  let value = namespace[exportName];
  if (value === undefined && fallback !== null && (typeof fallback === 'object' || typeof fallback === 'function')) {
    value = (fallback as Record<string, unknown>)[exportName];
  }
  if (value === undefined) throw new LoadError(`handler "${spec}": ${name} has no export "${exportName}"`);
  if (typeof value !== 'function') throw new LoadError(`handler "${spec}": export "${exportName}" of ${name} is not a function (it is ${typeOf(value)})`);
  return value as Handler;
}

function describeLoadError(err: unknown): string {
  if (!(err instanceof Error)) return `${typeof err} thrown: ${inspect(err)}`;
  const text = `${err.name}: ${err.message}`;
  // A syntax error's location is the first line of its stack ("file:///dir/index.js:3"), not its message.
  if (err.name === 'SyntaxError' && err.stack) {
    const where = err.stack.split('\n', 1)[0];
    if (where && where !== text && /:\d+$/.test(where)) return `${text} (${where.replace(/^file:\/\//, '')})`;
  }
  return text;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

/** Listens on a free port of host; resolves with the port. */
function listen(on: http.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(new LoadError(`cannot listen on ${host}: ${err.code ?? err.message}`));
    on.once('error', onError);
    on.listen({ host, port: 0 }, () => {
      on.off('error', onError);
      const address = on.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
}

/** One request on a fresh connection to this process's own server; resolves when the answer has ended. */
function requestSelf(port: number, head: string, body = ''): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => socket.end(`${head}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`));
    socket.on('data', () => undefined);
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
}

/** Runs what every load and first request will run once, with a stand-in handler, on a throwaway server. */
async function warmUp(): Promise<void> {
  await import('./warm-esm.js');
  await import('./warm-cjs.cjs');
  const warmServer = http.createServer(onRequest);
  handler = async (event) => ({ statusCode: 200, headers: { 'x-warm': '1' }, cookies: ['warm=1'], body: JSON.stringify(event) });
  site = { functionName: 'warm-up', sandboxId: 'warm-up', memoryMb: 128, timeoutMs: 1000 };
  try {
    const port = await listen(warmServer, '127.0.0.1');
    await requestSelf(port, `GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: ${PROBE_USER_AGENT}`);
    await requestSelf(port, 'POST /warm?a=1 HTTP/1.1\r\nhost: 127.0.0.1\r\ncookie: a=1\r\ncontent-type: application/json', '{"warm":true}');
  } finally {
    handler = undefined;
    site = undefined;
    warmServer.closeAllConnections();
    warmServer.close();
  }
}

async function load(message: LoadMessage): Promise<void> {
  const received = performance.now();
  // Nothing knows the port before `loaded`, so nothing reaches the server before the handler is in place.
  const port = await listen(server, message.host);
  // The function's environment replaces the runtime process's own, whatever that was.
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, message.env, { PORT: String(port) });
  try {
    process.chdir(message.dir);
  } catch {
    throw new LoadError(`handler "${message.handler}": the function's directory ${message.dir} does not exist or is not a directory`);
  }
  const t0 = performance.now();
  handler = await loadHandler(message.dir, message.handler);
  const importUs = Math.round((performance.now() - t0) * 1000);
  site = { functionName: message.functionName, sandboxId: message.sandboxId, memoryMb: message.memoryMb, timeoutMs: message.timeoutMs };
  send({ type: 'loaded', port, loadUs: Math.round((performance.now() - received) * 1000), importUs });
}

function onMessage(message: unknown): void {
  if (site || typeof message !== 'object' || message === null || (message as { type?: unknown }).type !== 'load') {
    process.stderr.write(`baton node runtime: ignoring an unexpected message: ${JSON.stringify(message)}\n`);
    return;
  }
  process.off('message', onMessage);
  load(message as LoadMessage).catch((err: unknown) => {
    const text = err instanceof LoadError ? err.message : `handler "${(message as LoadMessage).handler}": ${err instanceof Error ? err.message : inspect(err)}`;
    process.stderr.write(`${text}\n`);
    send({ type: 'failed', message: text }, () => process.exit(LOAD_FAILED_EXIT_CODE));
  });
}

function stop(): void {
  if (stopping) return;
  stopping = true;
  if (!server.listening) process.exit(0);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
}

if (!process.send) {
  process.stderr.write('baton node runtime: must be started by a worker, with an IPC channel\n');
  process.exit(NO_WORKER_EXIT_CODE);
}
process.on('SIGTERM', stop);
process.on('disconnect', () => process.exit(NO_WORKER_EXIT_CODE));
try {
  await warmUp();
} catch (err) {
  // Only slower: the load still works, and the log says why.
  process.stderr.write(`baton node runtime: warm-up failed: ${err instanceof Error ? err.message : inspect(err)}\n`);
}
process.on('message', onMessage);
send({ type: 'booted' });
