import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { BatonError } from '../../shared/errors.js';
import { ChainMemory } from './pool.js';
import { DescriptorRing, ringBytes } from './ring.js';

const code = (err: unknown): string => (err instanceof BatonError ? err.code : String(err));

test('alloc hands out distinct slots until the pool is empty, then answers "full" at once; free makes a slot usable again', () => {
  const m = ChainMemory.create({ slots: 4, slotBytes: 256, nodes: 2 });
  const got = [m.alloc(), m.alloc(), m.alloc(), m.alloc()];
  assert.deepEqual(new Set(got.map((d) => d?.slot)).size, 4);
  assert.equal(m.inUse(), 4);
  assert.equal(m.freeCount(), 0);
  const began = Date.now();
  assert.equal(m.alloc(), undefined);
  assert.ok(Date.now() - began < 1000, 'an empty pool must not block');
  const first = got[0];
  assert.ok(first);
  m.free(first);
  assert.equal(m.freeCount(), 1);
  const again = m.alloc();
  assert.equal(again?.slot, first.slot);
  assert.notEqual(again?.generation, first.generation);
});

test('a stale descriptor is detected: a double free, a use after free, a slot out of range, another pool\'s descriptor', () => {
  const a = ChainMemory.create({ slots: 2, slotBytes: 256, nodes: 1 });
  const b = ChainMemory.create({ slots: 2, slotBytes: 256, nodes: 1 });
  assert.notEqual(a.poolId, b.poolId);
  const d = a.alloc();
  assert.ok(d);
  a.free(d);
  assert.throws(() => a.free(d), (e) => code(e) === 'CHAIN_STALE_DESCRIPTOR');
  assert.throws(() => a.check(d), (e) => code(e) === 'CHAIN_STALE_DESCRIPTOR');
  assert.equal(a.freeCount(), 2, 'the double free freed nothing');
  assert.throws(() => a.check({ poolId: a.poolId, slot: 7, generation: 1 }), (e) => code(e) === 'CHAIN_STALE_DESCRIPTOR');
  // Same slot number and generation in b: only the pool id tells them apart.
  const inB = b.alloc();
  assert.ok(inB);
  const fromA = a.alloc();
  assert.ok(fromA);
  assert.throws(() => b.check({ ...fromA, slot: inB.slot, generation: inB.generation }), /belongs to pool/);
  assert.equal(b.isCurrent({ ...inB, poolId: a.poolId }), false);
});

test('a ring keeps order across many wraparounds, reports full without blocking, and empty as undefined', () => {
  const sab = new SharedArrayBuffer(ringBytes(4));
  const ring = new DescriptorRing(sab, 0, 4, true);
  assert.equal(ring.dequeue(), undefined);
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 1000; round++) {
    const n = 1 + (round % 4);
    for (let i = 0; i < n; i++) assert.equal(ring.enqueue(9, next++, round), true);
    if (n === 4) assert.equal(ring.enqueue(9, -1, 0), false, 'a full ring refuses');
    for (let i = 0; i < n; i++) assert.equal(ring.dequeue()?.slot, expect++);
    assert.equal(ring.dequeue(), undefined);
  }
  assert.equal(ring.size(), 0);
});

test('a consumer asleep in waitAsync wakes on an enqueue, and an enqueue before the wait is not missed', async () => {
  const sab = new SharedArrayBuffer(ringBytes(8));
  const ring = new DescriptorRing(sab, 0, 8, true);
  const seen = ring.signal();
  ring.enqueue(1, 5, 1);
  // The signal moved since `seen`: this must return at once rather than wait for the timeout.
  await ring.waitAsync(seen, 60_000);
  assert.equal(ring.dequeue()?.slot, 5);
  const idle = ring.signal();
  const woke = ring.waitAsync(idle, 60_000).then(() => ring.dequeue()?.slot);
  setTimeout(() => ring.enqueue(1, 6, 1), 20);
  assert.equal(await woke, 6);
});

test('two threads pass slots back and forth through rings; the pool is whole after 20,000 round trips', async () => {
  const m = ChainMemory.create({ slots: 8, slotBytes: 256, nodes: 2 });
  // The echo thread: takes descriptors off ring 1, adds one to the slot's first data word, sends them to ring 0.
  const echo = new Worker(
    `
    const { workerData } = require('node:worker_threads');
    import(workerData.url).then(({ ChainMemory }) => {
      const m = ChainMemory.attach(workerData.sab);
      const rx = m.rings[1];
      for (;;) {
        const seen = rx.signal();
        const d = rx.dequeue();
        if (!d) { rx.waitSync(seen); continue; }
        if (d.slot === -1) break;
        m.check(d);
        const data = m.data(d.slot);
        data[0] += 1;
        m.rings[0].enqueue(d.poolId, d.slot, d.generation);
      }
    });
    `,
    { eval: true, workerData: { sab: m.buffer, url: new URL('./pool.js', import.meta.url).href } },
  );
  try {
    const rounds = 20_000;
    let sent = 0;
    let received = 0;
    const rx = m.rings[0];
    assert.ok(rx);
    const send = (): void => {
      const d = m.alloc();
      if (!d) return;
      m.data(d.slot)[0] = 41;
      m.rings[1]?.enqueue(d.poolId, d.slot, d.generation);
      sent++;
    };
    for (let i = 0; i < 8; i++) send();
    while (received < rounds) {
      const seen = rx.signal();
      const d = rx.dequeue();
      if (!d) {
        await rx.waitAsync(seen, 10_000);
        continue;
      }
      assert.equal(m.data(d.slot)[0], 42);
      m.free(d);
      received++;
      if (sent < rounds) send();
    }
    assert.equal(m.inUse(), 0);
    assert.equal(m.freeCount(), 8);
  } finally {
    m.rings[1]?.enqueue(m.poolId, -1, 0);
    await echo.terminate();
  }
});

test('several producer threads enqueue into one ring at once: every descriptor arrives exactly once, in each producer\'s order', async () => {
  const capacity = 64;
  const sab = new SharedArrayBuffer(ringBytes(capacity));
  const ring = new DescriptorRing(sab, 0, capacity, true);
  const producers = 3;
  const each = 20_000;
  const threads = Array.from(
    { length: producers },
    (_, p) =>
      new Worker(
        `
        const { workerData } = require('node:worker_threads');
        import(workerData.url).then(({ DescriptorRing }) => {
          const ring = new DescriptorRing(workerData.sab, 0, workerData.capacity);
          const stall = new Int32Array(new SharedArrayBuffer(4));
          for (let i = 0; i < workerData.each; i++) {
            // A full ring refuses; the producer backs off briefly and retries.
            while (!ring.enqueue(workerData.p, i, 1)) Atomics.wait(stall, 0, 0, 1);
          }
        });
        `,
        { eval: true, workerData: { sab, capacity, each, p, url: new URL('./ring.js', import.meta.url).href } },
      ),
  );
  try {
    const next = new Array<number>(producers).fill(0);
    let received = 0;
    while (received < producers * each) {
      const seen = ring.signal();
      const d = ring.dequeue();
      if (!d) {
        await ring.waitAsync(seen, 10_000);
        continue;
      }
      assert.equal(d.slot, next[d.poolId], `producer ${d.poolId}: out of order or duplicated`);
      next[d.poolId] = d.slot + 1;
      received++;
    }
    assert.deepEqual(next, new Array<number>(producers).fill(each));
    assert.equal(ring.dequeue(), undefined);
  } finally {
    await Promise.all(threads.map((t) => t.terminate()));
  }
});
