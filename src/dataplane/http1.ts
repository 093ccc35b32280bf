// HTTP/1.1 message heads and chunked framing for the fast path: the parsing
// the proxy does itself instead of going through node:http and undici.
//
// The fast path takes only the plain, common case and leaves every doubt to
// Node's own parser (llhttp): parseRequestHead() returns false for anything
// it does not fully understand (HTTP/1.0, Transfer-Encoding, Expect,
// Upgrade, obs-fold, odd characters, absolute-form targets, duplicate
// Content-Length…), and the connection is then handed to node:http, which
// parses strictly and answers 400/431 where it should. So the fast path
// never has to be lenient, which is where request smuggling lives.
//
// Responses come from our own sandboxes but are still checked: a malformed
// head is a 502, not something to forward. Bodies are not parsed, only
// framed: Content-Length is counted, chunked bytes pass through unchanged
// while ChunkedScanner finds where the message ends.
//
// Async invocations (a `x-baton-invocation` or `X-Amz-Invocation-Type`
// header, or a /v1/invocations/… target) go to node:http as well: the
// general path submits them and serves their results.
//
// Pure functions and small classes, unit-tested without I/O.
import { LAMBDA_EVENT_HEADER } from '../shared/lambda.js';
import { isInvocationsPath } from './routing.js';

/** Node's default --max-http-header-size; a longer head goes to node:http (431). */
export const MAX_HEAD_BYTES = 16 * 1024;

export const CRLFCRLF = Buffer.from('\r\n\r\n');

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Anything but HTAB, CR, LF, visible ASCII and obs-text. */
const BAD_CHAR = /[^\t\r\n\x20-\x7e\x80-\xff]/;
/** CR not followed by LF, or LF not preceded by CR. */
const BARE_CRLF = /\r(?!\n)|(?<!\r)\n/;
const TARGET = /^\/[!-~\x80-\xff]*$/;
const DIGITS = /^\d{1,15}$/;

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

/** A request head the fast path can forward, as parseRequestHead fills it. */
export class RequestHead {
  method = '';
  /** origin-form request target: path and query. */
  target = '';
  host = '';
  /** -1 when there is no body. */
  contentLength = -1;
  /** The client asked to close the connection after this exchange. */
  close = false;
  /** The header lines to forward, each ending in CRLF. */
  headers = '';
}

function trimmedValue(head: string, from: number, to: number): string {
  while (from < to && (head.charCodeAt(from) === 32 || head.charCodeAt(from) === 9)) from++;
  while (to > from && (head.charCodeAt(to - 1) === 32 || head.charCodeAt(to - 1) === 9)) to--;
  return head.slice(from, to);
}

/**
 * Parses a request head (the bytes before the blank line, as latin1). Fills
 * `out` and returns true when the fast path may forward the request; false
 * sends the connection to node:http.
 */
export function parseRequestHead(head: string, out: RequestHead): boolean {
  if (BAD_CHAR.test(head) || BARE_CRLF.test(head)) return false;
  let lineEnd = head.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = head.length;
  const sp1 = head.indexOf(' ');
  if (sp1 <= 0 || sp1 >= lineEnd) return false;
  const sp2 = head.indexOf(' ', sp1 + 1);
  if (sp2 === -1 || sp2 >= lineEnd) return false;
  if (lineEnd - sp2 - 1 !== 8 || !head.startsWith('HTTP/1.1', sp2 + 1)) return false;
  const method = head.slice(0, sp1);
  if (!TOKEN.test(method) || method === 'CONNECT') return false;
  const target = head.slice(sp1 + 1, sp2);
  // Async results (/v1/invocations/…) are served by the general path.
  if (!TARGET.test(target) || isInvocationsPath(target)) return false;

  let headers = '';
  let host: string | null = null;
  let contentLength = -1;
  let close = false;
  let pos = lineEnd + 2;
  // Kept header lines are copied in runs: a dropped line ends the run.
  let runStart = pos;
  while (pos < head.length) {
    let end = head.indexOf('\r\n', pos);
    if (end === -1) end = head.length;
    const colon = head.indexOf(':', pos);
    if (colon <= pos || colon > end) return false;
    const name = head.slice(pos, colon);
    if (!TOKEN.test(name)) return false; // also catches obs-fold (a leading space)
    let drop = false;
    switch (name.length) {
      case 2:
        drop = name.toLowerCase() === 'te';
        break;
      case 4:
        if (name.toLowerCase() === 'host') {
          if (host !== null) return false;
          host = trimmedValue(head, colon + 1, end);
          drop = true;
        }
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return false;
        break;
      case 7: {
        const l = name.toLowerCase();
        if (l === 'upgrade') return false;
        drop = l === 'trailer';
        break;
      }
      case 10: {
        const l = name.toLowerCase();
        if (l === 'connection') {
          for (const token of trimmedValue(head, colon + 1, end).toLowerCase().split(',')) {
            const t = token.trim();
            if (t === 'close') close = true;
            else if (t !== 'keep-alive' && t !== '') return false; // names other hop-by-hop headers
          }
          drop = true;
        } else {
          drop = l === 'keep-alive';
        }
        break;
      }
      case 14: {
        const l = name.toLowerCase();
        if (l === 'content-length') {
          const v = trimmedValue(head, colon + 1, end);
          if (contentLength !== -1 || !DIGITS.test(v)) return false;
          contentLength = Number(v);
        } else {
          drop = l === 'http2-settings';
        }
        break;
      }
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return false;
        break;
      // Async invocation headers: the general path submits those (src/dataplane/async/).
      case 18:
        if (name.toLowerCase() === 'x-baton-invocation') return false;
        break;
      case 20:
        // Only the Lambda Invoke API sets it (headers.ts says why).
        drop = name.toLowerCase() === LAMBDA_EVENT_HEADER;
        break;
      case 21:
        if (name.toLowerCase() === 'x-amz-invocation-type') return false;
        break;
    }
    if (!drop && name.length > 6 && (name.charCodeAt(0) | 0x20) === 112 && name.slice(0, 6).toLowerCase() === 'proxy-') drop = true;
    if (drop) {
      if (pos > runStart) headers += head.slice(runStart, pos);
      runStart = end + 2;
    }
    pos = end + 2;
  }
  if (runStart < head.length) headers += head.slice(runStart) + '\r\n';
  out.method = method;
  out.target = target;
  out.host = host ?? '';
  out.contentLength = contentLength;
  out.close = close;
  out.headers = headers;
  return true;
}

/** How a response body is framed on the wire. */
export const enum BodyFraming {
  None,
  Length,
  Chunked,
  /** Until the sandbox closes the connection (no length, not chunked). */
  Close,
}

/** A sandbox's response head, as parseResponseHead fills it. */
export class ResponseHead {
  status = 0;
  reason = '';
  /** The header lines to forward, each ending in CRLF. */
  headers = '';
  framing = BodyFraming.None;
  contentLength = -1;
  /** The connection cannot carry another request afterwards. */
  close = false;
}

/**
 * Parses a sandbox's response head (bytes before the blank line, as latin1).
 * `isHead` is true for responses to HEAD. Returns false for a malformed or
 * unsupported head (the client gets 502).
 */
export function parseResponseHead(head: string, isHead: boolean, out: ResponseHead): boolean {
  if (BAD_CHAR.test(head) || BARE_CRLF.test(head)) return false;
  let lineEnd = head.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = head.length;
  if (lineEnd < 12 || !head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 32) return false;
  const minor = head.charCodeAt(7) - 48;
  if (minor !== 0 && minor !== 1) return false;
  const d0 = head.charCodeAt(9) - 48;
  const d1 = head.charCodeAt(10) - 48;
  const d2 = head.charCodeAt(11) - 48;
  // Exactly three digits (Number() would take '2e2' or ' 20').
  if (!(d0 >= 1 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9) || (lineEnd > 12 && head.charCodeAt(12) !== 32)) return false;
  const status = d0 * 100 + d1 * 10 + d2;
  const reason = lineEnd > 13 ? head.slice(13, lineEnd) : '';

  let headers = '';
  let contentLength = -1;
  let chunked = false;
  let close = minor === 0;
  let pos = lineEnd + 2;
  let runStart = pos;
  while (pos < head.length) {
    let end = head.indexOf('\r\n', pos);
    if (end === -1) end = head.length;
    const colon = head.indexOf(':', pos);
    if (colon <= pos || colon > end) return false;
    const name = head.slice(pos, colon);
    if (!TOKEN.test(name)) return false;
    let drop = false;
    switch (name.length) {
      case 7:
        drop = name.toLowerCase() === 'upgrade';
        break;
      case 10: {
        const l = name.toLowerCase();
        if (l === 'connection') {
          for (const token of trimmedValue(head, colon + 1, end).toLowerCase().split(',')) {
            const t = token.trim();
            if (t === 'close') close = true;
            else if (t === 'keep-alive' && minor === 0) close = false;
          }
          drop = true;
        } else {
          drop = l === 'keep-alive';
        }
        break;
      }
      case 14:
        if (name.toLowerCase() === 'content-length') {
          const v = trimmedValue(head, colon + 1, end);
          if (!DIGITS.test(v)) return false;
          const n = Number(v);
          if (contentLength !== -1) {
            if (contentLength !== n) return false;
            drop = true; // a repeat of the same length: forward it once
          }
          contentLength = n;
        }
        break;
      case 16:
        drop = name.toLowerCase() === 'proxy-connection';
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') {
          const codings = trimmedValue(head, colon + 1, end).toLowerCase();
          // Only chunked as the final coding frames a message; anything else we refuse.
          if (!/(^|,)\s*chunked$/.test(codings)) return false;
          chunked = true;
        }
        break;
    }
    if (drop) {
      if (pos > runStart) headers += head.slice(runStart, pos);
      runStart = end + 2;
    }
    pos = end + 2;
  }
  if (runStart < head.length) headers += head.slice(runStart) + '\r\n';
  if (chunked && contentLength !== -1) return false; // RFC 9112 §6.3: a smuggling signal

  out.status = status;
  out.reason = reason;
  out.headers = headers;
  out.contentLength = contentLength;
  out.close = close;
  if (isHead || status < 200 || status === 204 || status === 304) out.framing = BodyFraming.None;
  else if (chunked) out.framing = BodyFraming.Chunked;
  else if (contentLength >= 0) out.framing = contentLength === 0 ? BodyFraming.None : BodyFraming.Length;
  else {
    out.framing = BodyFraming.Close;
    out.close = true;
  }
  return true;
}

const enum Chunk {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
}

/** 13 hex digits: chunk sizes stay exact in a double. */
const MAX_SIZE_DIGITS = 13;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

/**
 * Finds the end of a chunked message in bytes fed as they arrive, without
 * copying or decoding them: chunk sizes, extensions, data, last chunk,
 * trailers and the final CRLF (RFC 9112 §7.1).
 */
export class ChunkedScanner {
  private state = Chunk.Size;
  private remaining = 0;
  private digits = 0;

  reset(): void {
    this.state = Chunk.Size;
    this.remaining = 0;
    this.digits = 0;
  }

  /**
   * Scans `b` from `start`. Returns the offset just past the end of the
   * message when it ends inside `b`, -1 when more bytes are needed, -2 when
   * the framing is malformed.
   */
  scan(b: Buffer, start: number): number {
    const n = b.length;
    let i = start;
    while (i < n) {
      switch (this.state) {
        case Chunk.Size: {
          const c = b[i] as number;
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return -2;
            this.remaining = this.remaining * 16 + v;
          } else if (this.digits === 0) {
            return -2;
          } else if (c === 13) {
            this.state = Chunk.SizeLf;
          } else if (c === 59 || c === 32 || c === 9) {
            this.state = Chunk.Extension;
          } else {
            return -2;
          }
          i++;
          break;
        }
        case Chunk.Extension: {
          const c = b[i] as number;
          if (c === 13) this.state = Chunk.SizeLf;
          else if (c === 10) return -2;
          i++;
          break;
        }
        case Chunk.SizeLf:
          if (b[i] !== 10) return -2;
          i++;
          this.digits = 0;
          this.state = this.remaining === 0 ? Chunk.TrailerStart : Chunk.Data;
          break;
        case Chunk.Data: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (b[i] !== 13) return -2;
          i++;
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (b[i] !== 10) return -2;
          i++;
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart:
          this.state = b[i] === 13 ? Chunk.EndLf : Chunk.Trailer;
          i++;
          break;
        case Chunk.Trailer: {
          const c = b[i] as number;
          if (c === 13) this.state = Chunk.TrailerLf;
          else if (c === 10) return -2;
          i++;
          break;
        }
        case Chunk.TrailerLf:
          if (b[i] !== 10) return -2;
          i++;
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.EndLf:
          if (b[i] !== 10) return -2;
          this.reset();
          return i + 1;
      }
    }
    return -1;
  }
}
