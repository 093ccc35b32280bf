import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseChainSpec } from '../shared/chain-spec.js';
import { BatonError } from '../shared/errors.js';
import { Chain } from './chain.js';

const WORKDIR = fileURLToPath(new URL('../../../test/fixtures/chains/', import.meta.url));

function body(text = ''): AsyncIterable<Buffer> {
  return Readable.from(text ? [Buffer.from(text)] : []);
}

async function call(chain: Chain, url: string, text = '') {
  return chain.invoke({ method: 'POST', url, headers: { 'content-type': 'text/plain' } }, body(text), () => undefined);
}

/** Waits until the member `fragile` has been replaced and loaded its handler. */
async function fragileReady(chain: Chain): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const m = chain.metrics() as { members: { name: string; ready: boolean }[] };
    if (m.members.find((x) => x.name === 'fragile')?.ready) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('fragile was not replaced within 30 s');
}

for (const transport of ['threads', 'processes'] as const) {
  test(`${transport}: a static route visits its members in order; a header picks another route`, async () => {
    const chain = await Chain.create(
      parseChainSpec({
        transport,
        name: 'abc',
        workdir: WORKDIR,
        members: ['a', 'b', 'c'].map((n) => ({ name: n, handler: `members.${n}` })),
        routes: [
          { name: 'forward', path: 'fwd', sequence: ['a', 'b', 'c'] },
          { name: 'back', header: { name: 'X-Way', value: 'back' }, sequence: ['c', 'a'] },
        ],
        pool: { slots: 4 },
      }),
    );
    try {
      const r = await call(chain, '/fwd/x', 'hi');
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body.toString()), { trail: ['a', 'b', 'c'], input: 'hi' });
      const back = await chain.invoke({ method: 'GET', url: '/', headers: { 'x-way': 'back' } }, body(), () => undefined);
      assert.deepEqual(JSON.parse(back.body.toString()).trail, ['c', 'a']);
      await assert.rejects(call(chain, '/nowhere'), (e) => e instanceof BatonError && e.code === 'NOT_FOUND');
      assert.equal(chain.memory.inUse(), 0);
    } finally {
      await chain.stop();
    }
  });

  test(`${transport}: dynamic routing: RPC-style calls come back to the caller; a named next hop answers; an unknown member is CHAIN_UNKNOWN_MEMBER`, async () => {
    const chain = await Chain.create(
      parseChainSpec({
        transport,
        name: 'shop',
        workdir: WORKDIR,
        members: [
          { name: 'frontend', handler: 'members.frontend' },
          { name: 'cart', handler: 'members.cart' },
          { name: 'prices', handler: 'members.prices' },
          { name: 'router', handler: 'members.router' },
          { name: 'intruder', handler: 'members.intruderCall' },
        ],
        routes: [
          { name: 'hop', path: 'hop', sequence: ['router'] },
          { name: 'bad', path: 'bad', sequence: ['intruder'] },
        ],
        entry: 'frontend',
      }),
    );
    try {
      const r = await call(chain, '/?user=ann');
      assert.deepEqual(JSON.parse(r.body.toString()), { user: 'ann', items: ['book', 'pen'], total: 10, hops: 0 });
      assert.equal(r.headers['x-chain-frontend'], 'yes');
      const hop = await chain.invoke({ method: 'POST', url: '/hop?to=cart', headers: {} }, body('{"user":"bob"}'), () => undefined);
      assert.deepEqual(JSON.parse(hop.body.toString()), { items: ['book', 'pen'] });
      await assert.rejects(call(chain, '/bad?target=gateway'), (e) => e instanceof BatonError && e.code === 'CHAIN_UNKNOWN_MEMBER');
      const m = chain.metrics() as { members: { name: string; completed: number }[] };
      assert.equal(m.members.find((x) => x.name === 'cart')?.completed, 2);
      assert.equal(m.members.find((x) => x.name === 'prices')?.completed, 1);
      assert.equal(chain.memory.inUse(), 0);
    } finally {
      await chain.stop();
    }
  });

  test(`${transport}: a member that cannot be restarted fails the requests in flight (no hang, no leaked slot), refuses new ones and calls onFailed`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-chain-once-'));
    process.env.BATON_CHAIN_ONCE_MARKER = join(dir, 'loaded');
    const chain = await Chain.create(
      parseChainSpec({
        transport,
        name: 'brittle',
        workdir: WORKDIR,
        members: [
          { name: 'once', handler: 'once.once' },
          { name: 'hold', handler: 'members.hold' },
        ],
        routes: [
          { name: 'once', path: 'once', sequence: ['once'] },
          { name: 'hold', path: 'hold', sequence: ['hold'] },
        ],
        pool: { slots: 4 },
      }),
    );
    let failed: Error | undefined;
    chain.onFailed = (err) => (failed = err);
    try {
      // Held by the healthy member until the chain gives up.
      const held = call(chain, '/hold?ms=60000');
      held.catch(() => undefined); // asserted below; it may fail before then
      await assert.rejects(call(chain, '/once?fail=crash'), (e) => e instanceof BatonError && e.code === 'CHAIN_MEMBER_FAILED');
      for (let i = 0; i < 600 && chain.state === 'RUNNING'; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(chain.state, 'FAILED');
      assert.match(failed?.message ?? '', /loads only once/);
      await assert.rejects(held, (e) => e instanceof BatonError && e.code === 'CHAIN_MEMBER_FAILED');
      await assert.rejects(call(chain, '/hold'), (e) => e instanceof BatonError && e.code === 'UNAVAILABLE');
      assert.equal(chain.memory.inUse(), 0);
    } finally {
      await chain.stop();
      delete process.env.BATON_CHAIN_ONCE_MARKER;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`${transport}: a member that throws fails its request with CHAIN_MEMBER_FAILED; its caller can catch a crash; a crashed thread is replaced; no slot leaks`, async () => {
    const chain = await Chain.create(
      parseChainSpec({
        transport,
        name: 'frail',
        workdir: WORKDIR,
        members: [
          { name: 'fragile', handler: 'members.fragile' },
          { name: 'caller', handler: 'members.caller' },
        ],
        routes: [
          { name: 'direct', path: 'direct', sequence: ['fragile'] },
          { name: 'via', path: 'via', sequence: ['caller'] },
        ],
        pool: { slots: 8 },
      }),
    );
    try {
      await assert.rejects(call(chain, '/direct?fail=throw'), (e) => e instanceof BatonError && e.code === 'CHAIN_MEMBER_FAILED' && /asked to throw/.test(e.message));
      await assert.rejects(call(chain, '/direct?fail=crash'), (e) => e instanceof BatonError && e.code === 'CHAIN_MEMBER_FAILED' && /died/.test(e.message));
      assert.equal(chain.memory.inUse(), 0);
      // The replacement serves the next request.
      await fragileReady(chain);
      assert.equal((await call(chain, '/direct')).body.toString(), 'ok from thread');
      // A caller whose callee crashes: the request fails (the slot was the callee's), the caller is told.
      await assert.rejects(call(chain, '/via?fail=crash'), (e) => e instanceof BatonError && e.code === 'CHAIN_MEMBER_FAILED');
      await fragileReady(chain);
      const thrown = await call(chain, '/via?fail=throw');
      assert.equal(thrown.status, 500);
      assert.equal(JSON.parse(thrown.body.toString()).caught, 'CHAIN_MEMBER_FAILED');
      const m = chain.metrics() as { members: { name: string; restarts: number }[]; pool: { inUse: number } };
      assert.equal(m.members.find((x) => x.name === 'fragile')?.restarts, 2);
      assert.equal(chain.memory.inUse(), 0);
    } finally {
      await chain.stop();
    }
  });

  test(`${transport}: a full pool answers CHAIN_POOL_FULL at once, and takes requests again when slots come back`, async () => {
    const chain = await Chain.create(
      parseChainSpec({ transport, name: 'tiny', workdir: WORKDIR, members: [{ name: 'hold', handler: 'members.hold' }], entry: 'hold', pool: { slots: 2 } }),
    );
    try {
      const held = [call(chain, '/?ms=3000'), call(chain, '/?ms=3000')];
      const began = Date.now();
      await assert.rejects(call(chain, '/'), (e) => e instanceof BatonError && e.code === 'CHAIN_POOL_FULL');
      assert.ok(Date.now() - began < 2500, 'a full pool answers at once, not when a slot frees');
      assert.equal(chain.memory.freeCount(), 0);
      assert.deepEqual((await Promise.all(held)).map((r) => r.body.toString()), ['held', 'held']);
      assert.equal((await call(chain, '/')).body.toString(), 'held');
      assert.equal(chain.memory.inUse(), 0);
    } finally {
      await chain.stop();
    }
  });
}
