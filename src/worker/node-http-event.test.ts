// The node runtime's event and result mapping, without a process: the edge
// cases the process-level tests (node-runtime.test.ts) do not reach.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { buildContext, buildEvent, InvalidResultError, isTextContentType, mapResult, requestTime } from './runtimes/node-runtime/http-event.js';

const site = { functionName: 'fn', sandboxId: 'sb-1', memoryMb: 256, timeoutMs: 1000 };
const request = (over: Partial<Parameters<typeof buildEvent>[0]> = {}): Parameters<typeof buildEvent>[0] => ({
  method: 'GET',
  url: '/',
  httpVersion: '1.1',
  headers: {},
  remoteAddress: '10.0.0.9',
  body: Buffer.alloc(0),
  ...over,
});

describe('node runtime: events', () => {
  it('formats requestContext.time as API Gateway does', () => {
    assert.equal(requestTime(Date.UTC(2020, 2, 12, 19, 3, 58)), '12/Mar/2020:19:03:58 +0000');
    assert.equal(requestTime(Date.UTC(2026, 0, 5, 4, 7, 9)), '05/Jan/2026:04:07:09 +0000');
  });

  it('tells text bodies from binary ones by content type', () => {
    for (const type of [undefined, '', 'text/plain; charset=utf-8', 'application/json', 'application/vnd.api+json', 'application/xml', 'application/x-www-form-urlencoded', 'application/javascript']) {
      assert.equal(isTextContentType(type), true, String(type));
    }
    for (const type of ['application/octet-stream', 'image/png', 'application/pdf', 'multipart/form-data; boundary=x', 'application/jsonx']) {
      assert.equal(isTextContentType(type), false, type);
    }
  });

  it('keeps an empty query and path as they are, and leaves out what is absent', () => {
    const event = buildEvent(request({ url: '/a%2Fb?' }), site, 'r1', 0);
    assert.equal(event.rawPath, '/a%2Fb');
    assert.equal(event.rawQueryString, '');
    assert.equal('queryStringParameters' in event, false);
    assert.equal('cookies' in event, false);
    assert.equal('body' in event, false);
    assert.equal(event.requestContext.domainName, '');
    assert.equal(event.requestContext.http.sourceIp, '10.0.0.9');
  });

  it('splits every Cookie header into cookies', () => {
    const event = buildEvent(request({ headers: { cookie: ['a=1; b=2', 'c=3;'], host: ['api.example.com'] } }), site, 'r1', 0);
    assert.deepEqual(event.cookies, ['a=1', 'b=2', 'c=3']);
    assert.equal(event.requestContext.domainPrefix, 'api');
  });

  it('counts down the remaining time from the request', () => {
    const context = buildContext(site, 'r1', Date.now() - 400);
    const left = context.getRemainingTimeInMillis();
    assert.ok(left <= 600 && left > 400, `${left} ms left`);
    assert.equal(buildContext(site, 'r1', Date.now() - 5000).getRemainingTimeInMillis(), 0);
  });
});

describe('node runtime: results', () => {
  it('decodes a base64 body and lets a handler omit the body', () => {
    const binary = mapResult({ statusCode: 200, body: Buffer.from([1, 2, 255]).toString('base64'), isBase64Encoded: true });
    assert.deepEqual(binary.body, Buffer.from([1, 2, 255]));
    const empty = mapResult({ statusCode: 302, headers: { location: '/elsewhere' } });
    assert.equal(empty.statusCode, 302);
    assert.equal(empty.body.length, 0);
    assert.deepEqual(empty.headers, { location: '/elsewhere' }, 'no content type without a body');
  });

  it('serialises a non-string body and null', () => {
    assert.equal(mapResult({ statusCode: 200, body: { a: 1 } }).body.toString(), '{"a":1}');
    assert.equal(mapResult(null).body.toString(), 'null');
    assert.equal(mapResult(undefined).body.length, 0);
    assert.equal(mapResult(42).body.toString(), '42');
  });

  it('merges headers, multiValueHeaders and cookies, names lower-cased', () => {
    const r = mapResult({ statusCode: 200, headers: { 'Set-Cookie': 'a=1', 'X-One': true }, multiValueHeaders: { 'x-two': [1, 2] }, cookies: ['b=2'] });
    assert.deepEqual(r.headers, { 'set-cookie': ['a=1', 'b=2'], 'x-one': 'true', 'x-two': ['1', '2'] });
  });

  it('refuses results it cannot send, saying why', () => {
    const bad: [unknown, RegExp][] = [
      [{ statusCode: 99 }, /statusCode must be an integer from 200 to 599, got 99/],
      [{ statusCode: 101 }, /from 200 to 599, got 101/],
      [{ statusCode: 200.5 }, /got 200.5/],
      [{ statusCode: 200, headers: ['x'] }, /headers must be an object/],
      [{ statusCode: 200, multiValueHeaders: { x: 'y' } }, /multiValueHeaders\.x must be an array/],
      [{ statusCode: 200, cookies: 'a=1' }, /cookies must be an array/],
      [{ statusCode: 200, headers: { x: () => 1 } }, /header x: a value must be a string, a number or a boolean, not a function/],
      // What node:http would refuse when writing: a crash of the whole sandbox if it got that far.
      [{ statusCode: 200, headers: { 'x-echo': 'a\r\nset-cookie: evil=1' } }, /header "x-echo"/],
      [{ statusCode: 200, headers: { 'X Foo': 'bar' } }, /header "X Foo"/],
      [{ circular: {} }, /cannot be serialised as JSON/],
    ];
    (bad[9]?.[0] as { circular: Record<string, unknown> }).circular.self = bad[9]?.[0];
    for (const [result, message] of bad) {
      assert.throws(() => mapResult(result), (err: unknown) => err instanceof InvalidResultError && message.test(err.message));
    }
  });
});
