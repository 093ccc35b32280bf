// Header handling on the hot path: what passes from client to sandbox and
// back. Hop-by-hop headers (RFC 9110 §7.6.1) and HTTP/2 pseudo-headers stay
// on their own leg; `host` is dropped because undici sets it for the
// sandbox's address; `expect` is dropped because Node's server already
// answered the 100-continue and undici refuses the header.
//
// Both directions work on flat [name, value, name, value, …] arrays, which is
// what Node gives (rawHeaders) and what undici and writeHead take, so no
// header object is built per request. Names keep the case the peer sent;
// only names whose length matches a hop-by-hop name are lower-cased to
// compare.

import { LAMBDA_EVENT_HEADER } from '../shared/lambda.js';

/** What the request-header scan found, besides the headers to forward. */
export class RequestHeaderScan {
  forward: string[] = [];
  /** The Host header, or HTTP/2's :authority when no Host was sent. */
  host = '';
  /** The Content-Length header as sent, or '' when absent. */
  contentLength = '';
  /** A Transfer-Encoding header was present (a chunked body follows). */
  chunked = false;
  /** `x-baton-invocation: async` or `X-Amz-Invocation-Type: Event`: run it asynchronously (src/dataplane/async/). */
  async = false;
}

/**
 * Splits a client's raw headers into those to forward and the few the proxy
 * reads itself. Fills and returns `scan` (the caller reuses one object).
 */
export function scanRequestHeaders(raw: readonly string[], scan: RequestHeaderScan): RequestHeaderScan {
  const forward: string[] = [];
  let host = '';
  let authority = '';
  let contentLength = '';
  let chunked = false;
  let isAsync = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    switch (name.length) {
      case 2:
        if (name.toLowerCase() === 'te') continue;
        break;
      case 4:
        if (name === 'host' || name.toLowerCase() === 'host') {
          host = value;
          continue;
        }
        break;
      case 6:
        if (name.toLowerCase() === 'expect') continue;
        break;
      case 7: {
        const l = name.toLowerCase();
        if (l === 'upgrade' || l === 'trailer') continue;
        break;
      }
      case 10: {
        const l = name.toLowerCase();
        if (l === 'connection' || l === 'keep-alive') continue;
        if (l === ':authority') {
          authority = value;
          continue;
        }
        break;
      }
      case 14: {
        const l = name.toLowerCase();
        if (l === 'content-length') contentLength = value;
        else if (l === 'http2-settings') continue;
        break;
      }
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') {
          chunked = true;
          continue;
        }
        break;
      case 18:
        if (name.toLowerCase() === 'x-baton-invocation' && value.trim().toLowerCase() === 'async') isAsync = true;
        break;
      case 20:
        // Only the Lambda Invoke API (lambda/lambda-api.ts) may put a node
        // handler into raw-event mode, whose errors carry stack traces.
        if (name.toLowerCase() === LAMBDA_EVENT_HEADER) continue;
        break;
      case 21:
        if (name.toLowerCase() === 'x-amz-invocation-type' && value.trim().toLowerCase() === 'event') isAsync = true;
        break;
    }
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (name.length > 6 && (name.charCodeAt(0) | 0x20) === 112 /* p */ && name.slice(0, 6).toLowerCase() === 'proxy-') continue;
    forward.push(name, value);
  }
  scan.forward = forward;
  scan.host = host || authority;
  scan.contentLength = contentLength;
  scan.chunked = chunked;
  scan.async = isAsync;
  return scan;
}

/** True for a response header that must not be forwarded to the client. */
export function isHopByHopResponseHeader(name: string): boolean {
  switch (name.length) {
    case 7: {
      const l = name.toLowerCase();
      return l === 'upgrade' || l === 'trailer';
    }
    case 10: {
      const l = name.toLowerCase();
      return l === 'connection' || l === 'keep-alive';
    }
    case 16:
      return name.toLowerCase() === 'proxy-connection';
    case 17:
      return name.toLowerCase() === 'transfer-encoding';
    default:
      return false;
  }
}

/**
 * Turns undici's raw response headers (latin1 Buffers) into the flat string
 * array writeHead takes, without hop-by-hop headers, with `extra` appended.
 */
export function responseHeaders(raw: readonly Buffer[], extraName1: string, extraValue1: string, extraName2: string, extraValue2: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1');
    if (isHopByHopResponseHeader(name)) continue;
    out.push(name, (raw[i + 1] as Buffer).toString('latin1'));
  }
  out.push(extraName1, extraValue1, extraName2, extraValue2);
  return out;
}
