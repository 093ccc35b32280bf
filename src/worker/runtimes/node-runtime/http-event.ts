// The Lambda side of the `node` runtime, without any I/O: an HTTP request
// becomes an API Gateway HTTP API event (payload format 2.0), a handler's
// result becomes an HTTP response as API Gateway maps it, and the context
// object carries Lambda's fields. The bootstrap (bootstrap.ts) does the
// sockets; the worker's tests call these functions directly.
//
// Format 2.0, as AWS documents it (http-api-develop-integrations-lambda):
// header names lower-cased, duplicate headers and query parameters joined
// with ",", the Cookie header moved into `cookies`, `body` a UTF-8 string or
// base64 with `isBase64Encoded`, and "format inference" for results without
// a statusCode: 200, content-type application/json, the result as the body.
import { isUtf8 } from 'node:buffer';
import { validateHeaderName, validateHeaderValue } from 'node:http';

/** What a function sees of the sandbox it runs in; fixed when the handler is loaded. */
export interface InvocationSite {
  readonly functionName: string;
  readonly sandboxId: string;
  readonly memoryMb: number;
  readonly timeoutMs: number;
}

/** The request as the bootstrap read it off the socket. */
export interface IncomingRequest {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly url: string;
  readonly httpVersion: string;
  /** Every header's values, by lower-cased name (node:http's headersDistinct). */
  readonly headers: Readonly<Record<string, readonly string[] | undefined>>;
  readonly remoteAddress: string;
  readonly body: Buffer;
}

export interface HttpApiEvent {
  version: '2.0';
  routeKey: '$default';
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: string;
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: '$default';
    stage: '$default';
    time: string;
    timeEpoch: number;
  };
  body?: string;
  isBase64Encoded: boolean;
}

export interface LambdaContext {
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  /** A string, as Lambda gives it. */
  memoryLimitInMB: string;
  awsRequestId: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

export interface HttpResponse {
  readonly statusCode: number;
  /** Header name → value(s), ready for res.setHeader. */
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

/** Content types whose body is passed as text (when it is valid UTF-8); anything else is base64. */
const TEXT_TYPE = /^(?:text\/|application\/(?:[\w.+-]*\+)?(?:json|xml|javascript|x-www-form-urlencoded|yaml|x-yaml|graphql|x-ndjson)\b)/i;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** API Gateway's requestContext.time: "12/Mar/2020:19:03:58 +0000". */
export function requestTime(epochMs: number): string {
  const d = new Date(epochMs);
  const two = (n: number): string => (n < 10 ? `0${n}` : String(n));
  return `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()] ?? ''}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}

/** True when a body of this content type goes to the handler as a UTF-8 string; a missing type counts as text. */
export function isTextContentType(contentType: string | undefined): boolean {
  return contentType === undefined || contentType === '' || TEXT_TYPE.test(contentType.trimStart());
}

export function buildEvent(req: IncomingRequest, site: InvocationSite, requestId: string, nowMs: number): HttpApiEvent {
  const q = req.url.indexOf('?');
  const rawPath = q < 0 ? req.url : req.url.slice(0, q);
  const rawQueryString = q < 0 ? '' : req.url.slice(q + 1);

  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const name of Object.keys(req.headers)) {
    const values = req.headers[name];
    if (!values) continue;
    if (name === 'cookie') {
      for (const line of values) {
        for (const part of line.split(';')) {
          const cookie = part.trim();
          if (cookie) (cookies ??= []).push(cookie);
        }
      }
      continue;
    }
    headers[name] = values.join(',');
  }

  let queryStringParameters: Record<string, string> | undefined;
  if (rawQueryString) {
    queryStringParameters = {};
    for (const [key, value] of new URLSearchParams(rawQueryString)) {
      const previous = queryStringParameters[key];
      queryStringParameters[key] = previous === undefined ? value : `${previous},${value}`;
    }
  }

  const host = headers.host ?? '';
  const dot = host.indexOf('.');
  const event: HttpApiEvent = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies ? { cookies } : {}),
    headers,
    ...(queryStringParameters ? { queryStringParameters } : {}),
    requestContext: {
      accountId: 'baton',
      apiId: site.functionName,
      domainName: host,
      domainPrefix: dot < 0 ? host : host.slice(0, dot),
      http: {
        method: req.method,
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.remoteAddress,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: requestTime(nowMs),
      timeEpoch: nowMs,
    },
    isBase64Encoded: false,
  };
  if (req.body.length > 0) {
    if (isTextContentType(headers['content-type']) && isUtf8(req.body)) {
      event.body = req.body.toString('utf8');
    } else {
      event.body = req.body.toString('base64');
      event.isBase64Encoded = true;
    }
  }
  return event;
}

export function buildContext(site: InvocationSite, requestId: string, startedMs: number): LambdaContext {
  const deadline = startedMs + site.timeoutMs;
  return {
    functionName: site.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:baton:lambda:local:baton:function:${site.functionName}`,
    memoryLimitInMB: String(site.memoryMb),
    awsRequestId: requestId,
    logGroupName: `/baton/functions/${site.functionName}`,
    logStreamName: site.sandboxId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

/** A result the runtime cannot turn into a response: the client gets a 500 and the log says why. */
export class InvalidResultError extends Error {
  override readonly name = 'InvalidResultError';
}

/** Headers the runtime sets itself: a handler's value would contradict the body actually sent. */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);

/**
 * Maps a handler's result to a response as API Gateway does for format 2.0:
 * an object with a statusCode is a response (statusCode, headers,
 * multiValueHeaders, cookies, body, isBase64Encoded); anything else is the
 * body of a 200 with content-type application/json: a string as it is,
 * another value JSON-serialised, undefined as an empty body.
 */
export function mapResult(result: unknown): HttpResponse {
  if (result !== null && typeof result === 'object' && 'statusCode' in result) {
    return mapStructured(result);
  }
  let body: string;
  if (result === undefined) body = '';
  else if (typeof result === 'string') body = result;
  else body = stringify(result);
  return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(body, 'utf8') };
}

function mapStructured(r: Record<string, unknown>): HttpResponse {
  const statusCode = r.statusCode;
  // 1xx are interim responses: one as the answer would leave the client waiting for the final one.
  if (typeof statusCode !== 'number' || !Number.isInteger(statusCode) || statusCode < 200 || statusCode > 599) {
    throw new InvalidResultError(`statusCode must be an integer from 200 to 599, got ${describe(statusCode)}`);
  }
  const headers: Record<string, string | string[]> = {};
  const add = (name: string, value: unknown, append: boolean): void => {
    const key = name.toLowerCase();
    if (OWN_HEADERS.has(key) || value === undefined || value === null) return;
    const text = headerText(name, value);
    // Checked here, as node:http would when writing them: a name or value it refuses
    // (a space, a newline) is the handler's bad result, a 500, not a crash of the sandbox.
    try {
      validateHeaderName(name);
      validateHeaderValue(name, text);
    } catch (err) {
      throw new InvalidResultError(`header ${JSON.stringify(name.slice(0, 64))}: ${(err as Error).message}`);
    }
    const previous = headers[key];
    if (!append || previous === undefined) headers[key] = text;
    else headers[key] = Array.isArray(previous) ? [...previous, text] : [previous, text];
  };
  for (const [name, value] of objectEntries(r.headers, 'headers')) add(name, value, false);
  for (const [name, values] of objectEntries(r.multiValueHeaders, 'multiValueHeaders')) {
    if (!Array.isArray(values)) throw new InvalidResultError(`multiValueHeaders.${name} must be an array`);
    for (const value of values) add(name, value, true);
  }
  if (r.cookies !== undefined && r.cookies !== null) {
    if (!Array.isArray(r.cookies)) throw new InvalidResultError('cookies must be an array of strings');
    for (const cookie of r.cookies) add('set-cookie', cookie, true);
  }
  let body: Buffer;
  if (r.body === undefined || r.body === null) body = Buffer.alloc(0);
  else if (typeof r.body === 'string') body = Buffer.from(r.body, r.isBase64Encoded === true ? 'base64' : 'utf8');
  else body = Buffer.from(stringify(r.body), 'utf8');
  if (body.length > 0 && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  return { statusCode, headers, body };
}

function headerText(name: string, value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'boolean':
    case 'bigint':
      return value.toString();
    case 'object':
      return stringify(value);
    default:
      throw new InvalidResultError(`header ${name}: a value must be a string, a number or a boolean, not a ${typeof value}`);
  }
}

function objectEntries(value: unknown, field: string): [string, unknown][] {
  if (value === undefined || value === null) return [];
  if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidResultError(`${field} must be an object`);
  return Object.entries(value);
}

function stringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch (err) {
    throw new InvalidResultError(`the result cannot be serialised as JSON: ${(err as Error).message}`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}
