import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs, encodeBody, headerObject, nextStep } from './policy.js';

const p = { maxRetries: 2, backoffInitialMs: 100, backoffMaxMs: 250 };

test('2xx and 3xx succeed, 4xx fail at once, 5xx retry up to maxRetries', () => {
  assert.deepEqual(nextStep(200, 1, p), { kind: 'succeeded' });
  assert.deepEqual(nextStep(302, 1, p), { kind: 'succeeded' });
  assert.deepEqual(nextStep(404, 1, p), { kind: 'failed' });
  assert.deepEqual(nextStep(429, 1, p), { kind: 'failed' });
  assert.deepEqual(nextStep(500, 1, p), { kind: 'retry', delayMs: 100 });
  assert.deepEqual(nextStep(502, 2, p), { kind: 'retry', delayMs: 200 });
  assert.deepEqual(nextStep(503, 3, p), { kind: 'failed' }, 'the third attempt was the last (1 + 2 retries)');
  assert.deepEqual(nextStep(502, 1, p, true), { kind: 'failed' }, 'a final answer is not retried');
  assert.deepEqual(nextStep(500, 1, { ...p, maxRetries: 0 }), { kind: 'failed' });
});

test('the back-off doubles and is capped', () => {
  assert.deepEqual([1, 2, 3, 4, 60].map((n) => backoffMs(n, p)), [100, 200, 250, 250, 250]);
});

test('bodies are utf-8 when they decode, else base64', () => {
  assert.deepEqual(encodeBody(Buffer.from('héllo')), { body: 'héllo', encoding: 'utf-8' });
  assert.deepEqual(encodeBody(Buffer.from([0xff, 0x00, 0xc3])), { body: '/wDD', encoding: 'base64' });
  assert.deepEqual(encodeBody(new Uint8Array()), { body: '', encoding: 'utf-8' });
});

test('header pairs become one object with lower-case names', () => {
  assert.deepEqual(headerObject([['X-A', '1'], ['x-a', '2'], ['Set-Cookie', 'a=1'], ['set-cookie', 'b=2']]), { 'x-a': '1, 2', 'set-cookie': 'a=1\nb=2' });
});
