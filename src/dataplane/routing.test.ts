import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestHeaderScan, responseHeaders, scanRequestHeaders } from './headers.js';
import { functionFromHost, functionFromPath, isInvocationsPath, stripFunctionPrefix } from './routing.js';

test('a /fn/<name> prefix names the function and is stripped, keeping the query', () => {
  assert.equal(functionFromPath('/fn/hello/a/b?x=1'), 'hello');
  assert.equal(stripFunctionPrefix('/fn/hello/a/b?x=1'), '/a/b?x=1');
  assert.equal(functionFromPath('/fn/hello'), 'hello');
  assert.equal(stripFunctionPrefix('/fn/hello'), '/');
  assert.equal(stripFunctionPrefix('/fn/hello/'), '/');
  assert.equal(functionFromPath('/fn/hello?x=1'), 'hello');
  assert.equal(stripFunctionPrefix('/fn/hello?x=1'), '/?x=1');
  assert.equal(functionFromPath('/fn/'), '');
  assert.equal(functionFromPath('/fnx/hello'), '');
  assert.equal(functionFromPath('/other'), '');
});

test('the first Host label names the function', () => {
  assert.equal(functionFromHost('hello.example.com'), 'hello');
  assert.equal(functionFromHost('hello:8080'), 'hello');
  assert.equal(functionFromHost('hello'), 'hello');
  assert.equal(functionFromHost(''), '');
  assert.equal(functionFromHost('[::1]:8080'), '');
  assert.equal(functionFromHost('.example.com'), '');
});

test('request headers: hop-by-hop, host, expect and pseudo-headers are not forwarded', () => {
  const scan = scanRequestHeaders(
    [
      'Host', 'f.example.com',
      'Connection', 'keep-alive',
      'Keep-Alive', 'timeout=5',
      'TE', 'trailers',
      'Transfer-Encoding', 'chunked',
      'Upgrade', 'h2c',
      'Proxy-Authorization', 'secret',
      'Proxy-Connection', 'keep-alive',
      'Expect', '100-continue',
      'Trailer', 'x-t',
      'HTTP2-Settings', 'AAA',
      // Only the Lambda Invoke API may set it (raw-event mode shows stack traces).
      'X-Baton-Lambda-Event', '1',
      'User-Agent', 'test',
      'Content-Length', '12',
      'X-Custom', 'a',
      'x-custom', 'b',
      'Accept', '*/*',
    ],
    new RequestHeaderScan(),
  );
  assert.deepEqual(scan.forward, ['User-Agent', 'test', 'Content-Length', '12', 'X-Custom', 'a', 'x-custom', 'b', 'Accept', '*/*']);
  assert.equal(scan.host, 'f.example.com');
  assert.equal(scan.contentLength, '12');
  assert.equal(scan.chunked, true);
});

test('request headers: HTTP/2 :authority stands in for Host', () => {
  const scan = scanRequestHeaders([':method', 'GET', ':path', '/', ':authority', 'g:80', ':scheme', 'http', 'x', '1'], new RequestHeaderScan());
  assert.equal(scan.host, 'g:80');
  assert.deepEqual(scan.forward, ['x', '1']);
  assert.equal(scan.contentLength, '');
  assert.equal(scan.chunked, false);
});

test('response headers: hop-by-hop dropped, Baton headers appended', () => {
  const raw = ['Content-Type', 'text/plain', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'].map((s) =>
    Buffer.from(s, 'latin1'),
  );
  assert.deepEqual(responseHeaders(raw, 'x-a', '1', 'x-b', '2'), ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'x-a', '1', 'x-b', '2']);
});

test('request headers: x-baton-invocation: async and X-Amz-Invocation-Type: Event ask for async', () => {
  const scan = new RequestHeaderScan();
  assert.equal(scanRequestHeaders(['X-Baton-Invocation', ' Async '], scan).async, true);
  assert.equal(scanRequestHeaders(['x-amz-invocation-type', 'Event'], scan).async, true);
  assert.equal(scanRequestHeaders(['x-amz-invocation-type', 'RequestResponse'], scan).async, false);
  assert.equal(scanRequestHeaders(['x-baton-invocation', 'sync', 'x', '1'], scan).async, false);
  assert.equal(scanRequestHeaders(['x', '1'], scan).async, false);
});

test('/v1/invocations and below is reserved; look-alikes are not', () => {
  for (const t of ['/v1/invocations', '/v1/invocations/', '/v1/invocations/abc', '/v1/invocations?x']) assert.equal(isInvocationsPath(t), true, t);
  for (const t of ['/v1/invocationsX', '/v1/invocation', '/fn/f/v1/invocations/a', '/']) assert.equal(isInvocationsPath(t), false, t);
});
