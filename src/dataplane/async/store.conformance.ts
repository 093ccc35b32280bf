// The async queue conformance suite: every backend (store-sqlite.test.ts,
// store-redis.test.ts) runs it, so both keep the same promises.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AsyncQueueStore, InvocationResult, NewInvocation } from './queue-store.js';

function inv(id: string, submittedAt: number, body: Uint8Array = Buffer.from(`body of ${id}`)): NewInvocation {
  return { id, function: 'fn', method: 'POST', path: `/p?id=${id}`, headers: { 'content-type': 'text/plain', 'x-k': id }, body, submittedAt };
}

const BINARY = Buffer.from([0, 255, 1, 254, 0x80, 0xc3]);
const failed: InvocationResult = { status: 502, headers: [['content-type', 'application/json']], body: Buffer.from('{"code":"SANDBOX_CRASHED"}'), errorCode: 'SANDBOX_CRASHED' };
const ok: InvocationResult = { status: 200, headers: [['x-a', '1'], ['X-B', 'two']], body: BINARY };

/**
 * Registers the conformance tests for a backend. `open(name)` opens the
 * store called `name`: the same name reaches the same data again (a restart),
 * a new name starts empty.
 */
export function asyncQueueConformance(kind: string, open: (name: string) => Promise<AsyncQueueStore>): void {
  let n = 0;
  const fresh = (): string => `${kind}-${process.pid}-${n++}`;

  test(`${kind}: an added invocation reads back queued, with its binary body`, async () => {
    const s = await open(fresh());
    try {
      await s.add(inv('a', 1000, BINARY));
      const got = await s.get('a');
      assert.ok(got);
      assert.equal(got.state, 'queued');
      assert.equal(got.attempts, 0);
      assert.deepEqual(Buffer.from(got.body), BINARY);
      assert.deepEqual(got.headers, { 'content-type': 'text/plain', 'x-k': 'a' });
      assert.equal(got.path, '/p?id=a');
      assert.equal(got.method, 'POST');
      assert.equal(got.submittedAt, 1000);
      assert.equal(got.result, null);
      assert.equal(got.finishedAt, null);
      assert.equal(await s.get('missing'), undefined);
      assert.equal(await s.unfinished(), 1);
    } finally {
      await s.close();
    }
  });

  test(`${kind}: concurrent adds, claims and finishes all land once`, async () => {
    const s = await open(fresh());
    try {
      await Promise.all(Array.from({ length: 50 }, (_, i) => s.add(inv(`c${i}`, 1000 + i))));
      assert.equal(await s.unfinished(), 50);
      const claims = await Promise.all([s.claim(20, 5000), s.claim(20, 5000), s.claim(20, 5000)]);
      const ids = claims.flat().map((i) => i.id);
      assert.equal(ids.length, 50);
      assert.equal(new Set(ids).size, 50, 'no invocation is claimed twice');
      await Promise.all(ids.map((id) => s.finish(id, 'succeeded', ok, 6000, 9000)));
      assert.equal(await s.unfinished(), 0);
      await assert.rejects(s.add(inv('c0', 1)), 'an id is unique');
    } finally {
      await s.close();
    }
  });

  test(`${kind}: claim takes at most max, oldest first, and marks them running`, async () => {
    const s = await open(fresh());
    try {
      for (const [id, t] of [['c', 3000], ['a', 1000], ['b', 2000]] as const) await s.add(inv(id, t));
      const first = await s.claim(2, 5000);
      assert.deepEqual(first.map((i) => [i.id, i.state, i.attempts]), [['a', 'running', 1], ['b', 'running', 1]]);
      assert.equal(Buffer.from(first[0]?.body ?? []).toString(), 'body of a');
      const second = await s.claim(5, 5000);
      assert.deepEqual(second.map((i) => i.id), ['c'], 'a claimed invocation is not claimed again');
      assert.deepEqual(await s.claim(5, 5000), []);
      assert.equal((await s.get('a'))?.state, 'running');
      assert.equal(await s.unfinished(), 3, 'running ones are unfinished');
    } finally {
      await s.close();
    }
  });

  test(`${kind}: a requeued invocation waits for notBefore and keeps the failed attempt's result`, async () => {
    const s = await open(fresh());
    try {
      await s.add(inv('a', 1000));
      await s.claim(1, 1000);
      await s.requeue('a', 9000, failed);
      const waiting = await s.get('a');
      assert.equal(waiting?.state, 'queued');
      assert.equal(waiting?.result?.status, 502);
      assert.equal(waiting?.result?.errorCode, 'SANDBOX_CRASHED');
      assert.deepEqual(await s.claim(1, 8999), [], 'not before its back-off');
      const again = await s.claim(1, 9000);
      assert.deepEqual(again.map((i) => [i.id, i.attempts]), [['a', 2]]);
    } finally {
      await s.close();
    }
  });

  test(`${kind}: finish keeps the result until it expires; sweep deletes only expired finished ones`, async () => {
    const s = await open(fresh());
    try {
      for (const [id, t] of [['a', 1000], ['b', 1000], ['q', 1000]] as const) await s.add(inv(id, t));
      await s.claim(2, 1000);
      await s.finish('a', 'succeeded', ok, 2000, 5000);
      await s.finish('b', 'failed', failed, 2000, 7000);
      const a = await s.get('a');
      assert.equal(a?.state, 'succeeded');
      assert.equal(a?.finishedAt, 2000);
      assert.equal(a?.expiresAt, 5000);
      assert.deepEqual(a?.result?.headers, [['x-a', '1'], ['X-B', 'two']]);
      assert.deepEqual(Buffer.from(a?.result?.body ?? []), BINARY);
      assert.equal(a?.result?.errorCode, undefined);
      assert.equal((await s.get('b'))?.state, 'failed');
      assert.equal(await s.unfinished(), 1);

      assert.equal(await s.sweep(4999), 0);
      assert.equal(await s.sweep(5000), 1);
      assert.equal(await s.get('a'), undefined, 'expired');
      assert.equal((await s.get('b'))?.state, 'failed', 'not yet expired');
      assert.equal(await s.sweep(1e15), 1);
      assert.equal((await s.get('q'))?.state, 'queued', 'unfinished invocations never expire');
    } finally {
      await s.close();
    }
  });

  test(`${kind}: recover puts running invocations back, without counting the lost attempt; all survives a reopen`, async () => {
    const name = fresh();
    const s = await open(name);
    try {
      for (const [id, t] of [['a', 1000], ['b', 2000], ['c', 3000], ['d', 4000]] as const) await s.add(inv(id, t));
      await s.claim(3, 5000); // a, b, c running
      await s.finish('a', 'succeeded', ok, 6000, 1e12);
      await s.requeue('b', 3500, failed);
      assert.deepEqual((await s.claim(1, 60_000)).map((i) => [i.id, i.attempts]), [['b', 2]], 'b is due before d');
    } finally {
      await s.close();
    }
    const r = await open(name);
    try {
      assert.equal((await r.get('a'))?.state, 'succeeded', 'a finished result survives the reopen');
      assert.equal(await r.recover(), 2);
      const states = await Promise.all(['a', 'b', 'c', 'd'].map(async (id) => [id, (await r.get(id))?.state, (await r.get(id))?.attempts]));
      assert.deepEqual(states, [
        ['a', 'succeeded', 1],
        ['b', 'queued', 1],
        ['c', 'queued', 0],
        ['d', 'queued', 0],
      ]);
      const claimed = await r.claim(10, 7000);
      assert.deepEqual(claimed.map((i) => i.id).sort(), ['b', 'c', 'd'], 'recovered ones are claimable at once');
      assert.equal(await r.recover(), 3);
      assert.equal(await r.unfinished(), 3);
    } finally {
      await r.close();
    }
  });
}
