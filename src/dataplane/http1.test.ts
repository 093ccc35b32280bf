import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BodyFraming, ChunkedScanner, parseRequestHead, parseResponseHead, RequestHead, ResponseHead } from './http1.js';

const req = (head: string): RequestHead | null => {
  const out = new RequestHead();
  return parseRequestHead(head, out) ? out : null;
};
const res = (head: string, isHead = false): ResponseHead | null => {
  const out = new ResponseHead();
  return parseResponseHead(head, isHead, out) ? out : null;
};

test('request head: a plain request is parsed, hop-by-hop headers dropped, the rest kept in order', () => {
  const r = req(
    'POST /fn/f/x?y=1 HTTP/1.1\r\nHost: f.example.com\r\nUser-Agent: t\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 12\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-A: 1\r\nx-a: 2',
  );
  assert.ok(r);
  assert.equal(r.method, 'POST');
  assert.equal(r.target, '/fn/f/x?y=1');
  assert.equal(r.host, 'f.example.com');
  assert.equal(r.contentLength, 12);
  assert.equal(r.close, false);
  assert.equal(r.headers, 'User-Agent: t\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n');
});

test('request head: a client cannot put a node handler into Lambda raw-event mode (x-baton-lambda-event is dropped)', () => {
  const r = req('GET /fn/f/ HTTP/1.1\r\nHost: x\r\nX-Baton-Lambda-Event: 1\r\nX-A: 1');
  assert.ok(r);
  assert.equal(r.headers, 'X-A: 1\r\n');
});

test('request head: no headers at all, and Connection: close', () => {
  const bare = req('GET / HTTP/1.1');
  assert.ok(bare);
  assert.equal(bare.headers, '');
  assert.equal(bare.host, '');
  assert.equal(bare.contentLength, -1);
  const closing = req('GET / HTTP/1.1\r\nhost: a\r\nconnection: Close');
  assert.equal(closing?.close, true);
  assert.equal(closing?.headers, '');
});

test('request head: anything unusual goes to node:http', () => {
  const fallbacks = [
    'GET / HTTP/1.0\r\nHost: a',
    'GET http://a/ HTTP/1.1\r\nHost: a',
    'GET * HTTP/1.1',
    'CONNECT a:443 HTTP/1.1\r\nHost: a',
    'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1',
    'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue',
    'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: x-private',
    'GET / HTTP/1.1\r\nHost: a\r\nHost: b',
    'GET / HTTP/1.1\r\nHost: a\r\n folded',
    'GET / HTTP/1.1\r\nHost : a',
    'GET / HTTP/1.1\r\nHost: a\nX: b',
    'GET / HTTP/1.1\r\nHost: a\rX: b',
    'GET / HTTP/1.1\r\nX: a\x00b',
    'GET /a b HTTP/1.1',
    'G@T / HTTP/1.1',
    'GET / HTTP/1.1\r\nNoColon',
  ];
  for (const h of fallbacks) assert.equal(req(h), null, JSON.stringify(h));
});

test('response head: framing by Content-Length, chunked, close, and no body', () => {
  const len = res('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5');
  assert.ok(len);
  assert.equal(len.status, 200);
  assert.equal(len.reason, 'OK');
  assert.equal(len.framing, BodyFraming.Length);
  assert.equal(len.contentLength, 5);
  assert.equal(len.close, false);
  assert.equal(len.headers, 'Content-Type: text/plain\r\nContent-Length: 5\r\n');

  const chunked = res('HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked');
  assert.equal(chunked?.framing, BodyFraming.Chunked);
  assert.equal(chunked?.headers, 'Transfer-Encoding: chunked\r\n', 'passed through as is');

  const close = res('HTTP/1.0 200 OK\r\nContent-Type: text/plain');
  assert.equal(close?.framing, BodyFraming.Close);
  assert.equal(close?.close, true);

  const keptAlive10 = res('HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive');
  assert.equal(keptAlive10?.close, false);
  assert.equal(keptAlive10?.framing, BodyFraming.None);

  assert.equal(res('HTTP/1.1 204 No Content\r\nContent-Length: 10')?.framing, BodyFraming.None);
  assert.equal(res('HTTP/1.1 304 Not Modified')?.framing, BodyFraming.None);
  assert.equal(res('HTTP/1.1 200 OK\r\nContent-Length: 10', true)?.framing, BodyFraming.None, 'HEAD');
  assert.equal(res('HTTP/1.1 100 Continue')?.status, 100);
  assert.equal(res('HTTP/1.1 200')?.reason, '', 'a status line without a reason');
  assert.equal(res('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1')?.close, true);
});

test('response head: malformed or ambiguous heads are refused', () => {
  const bad = [
    'HTTP/2 200 OK',
    'HTTP/1.1 2000 OK',
    'HTTP/1.1 abc OK',
    'ICY 200 OK',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip',
    'HTTP/1.1 200 OK\r\nX: a\nY: b',
    'HTTP/1.1 200 OK\r\nBad Name: a',
    'HTTP/1.1 200 OK\r\n folded',
  ];
  for (const h of bad) assert.equal(res(h), null, JSON.stringify(h));
  assert.equal(res('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3')?.contentLength, 3, 'equal duplicates are fine');
});

test('chunked scanner: finds the end however the bytes are split', () => {
  const body = Buffer.from('5\r\nhello\r\n1;ext=1\r\n!\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n');
  const next = Buffer.from('NEXT');
  const all = Buffer.concat([body, next]);
  const s = new ChunkedScanner();
  assert.equal(s.scan(all, 0), body.length);
  for (let cut = 1; cut < body.length; cut++) {
    s.reset();
    assert.equal(s.scan(all.subarray(0, cut), 0), -1, `cut at ${cut}`);
    const rest = all.subarray(cut);
    assert.equal(s.scan(rest, 0), body.length - cut, `cut at ${cut}`);
  }
  s.reset();
  assert.equal(s.scan(Buffer.from('0\r\n\r\n'), 0), 5);
  s.reset();
  assert.equal(s.scan(Buffer.from('xx0\r\n\r\n'), 2), 7, 'scanning from an offset');
});

test('chunked scanner: malformed framing is reported', () => {
  for (const bad of ['g\r\n', '\r\n', '5\r\nhelloX', '5\nhello', '1\r\na\r\n0\r\nX\n', 'fffffffffffffff\r\n']) {
    const s = new ChunkedScanner();
    assert.equal(s.scan(Buffer.from(bad), 0), -2, JSON.stringify(bad));
  }
});

test('response head: a repeated equal Content-Length is forwarded once', () => {
  const r = res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\ncontent-length: 2\r\nX-B: 2');
  assert.ok(r);
  assert.equal(r.contentLength, 2);
  assert.equal(r.headers, 'Content-Length: 2\r\nX-A: 1\r\nX-B: 2\r\n');
  assert.equal(res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3'), null);
});

test('response head: the status code is exactly three digits', () => {
  for (const bad of ['HTTP/1.1 2e2 OK', 'HTTP/1.1  20 OK', 'HTTP/1.1 +20 OK', 'HTTP/1.1 0x1 OK', 'HTTP/1.1 099 OK', 'HTTP/1.1 20. OK']) {
    assert.equal(res(`${bad}\r\nContent-Length: 0`), null, bad);
  }
  assert.equal(res('HTTP/1.1 200 OK\r\nContent-Length: 0')?.status, 200);
  assert.equal(res('HTTP/1.1 599\r\nContent-Length: 0')?.status, 599);
});

test('request head: async invocations and their results go to node:http, which submits and serves them', () => {
  for (const h of [
    'POST /fn/f/ HTTP/1.1\r\nHost: a\r\nX-Baton-Invocation: async',
    'POST /fn/f/ HTTP/1.1\r\nHost: a\r\nx-amz-invocation-type: Event',
    'GET /v1/invocations/abc HTTP/1.1\r\nHost: f.example.com',
    'GET /v1/invocations HTTP/1.1\r\nHost: a',
    'GET /v1/invocations?x=1 HTTP/1.1\r\nHost: a',
  ]) {
    assert.equal(req(h), null, JSON.stringify(h));
  }
  // Paths that only look alike stay on the fast path.
  assert.ok(req('GET /v1/invocationsX HTTP/1.1\r\nHost: a'));
  assert.ok(req('GET /fn/f/v1/invocations/abc HTTP/1.1\r\nHost: a'));
});
