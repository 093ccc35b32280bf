// The ClusterStore conformance suite. Every backend runs it (sqlite.test.ts;
// later Redis), so they all keep the same promises.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../shared/errors.js';
import { parseFunctionSpec } from '../shared/spec.js';
import type { ClusterStore, StoredFunction } from './store.js';

function fn(name: string, revision = 1, minScale = 0): StoredFunction {
  return {
    spec: parseFunctionSpec({ name, command: ['node', 'server.js'], scaling: { minScale } }),
    revision,
    createdAtMs: 1000,
    updatedAtMs: 1000 + revision,
  };
}

/** Registers the conformance tests for a backend. `open` gives a fresh, empty store. */
export function clusterStoreConformance(kind: string, open: () => Promise<ClusterStore>): void {
  test(`${kind}: functions round-trip with every default applied`, async () => {
    const store = await open();
    try {
      await store.createFunction(fn('alpha'));
      const got = await store.getFunction('alpha');
      assert.ok(got);
      assert.deepEqual(got.spec, fn('alpha').spec);
      assert.equal(got.revision, 1);
      assert.equal(await store.getFunction('missing'), undefined);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: a duplicate name is FUNCTION_EXISTS`, async () => {
    const store = await open();
    try {
      await store.createFunction(fn('alpha'));
      await assert.rejects(store.createFunction(fn('alpha')), (e: unknown) => e instanceof BatonError && e.code === 'FUNCTION_EXISTS');
    } finally {
      await store.close();
    }
  });

  test(`${kind}: update is compare-and-set on the revision`, async () => {
    const store = await open();
    try {
      await store.createFunction(fn('alpha'));
      assert.equal(await store.updateFunction(fn('alpha', 2, 3), 1), true);
      assert.equal(await store.updateFunction(fn('alpha', 3, 4), 1), false, 'a stale revision must not win');
      const got = await store.getFunction('alpha');
      assert.equal(got?.revision, 2);
      assert.equal(got?.spec.scaling.minScale, 3);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: list is ordered by name and delete removes`, async () => {
    const store = await open();
    try {
      for (const n of ['gamma', 'alpha', 'beta']) await store.createFunction(fn(n));
      assert.deepEqual((await store.listFunctions()).map((f) => f.spec.name), ['alpha', 'beta', 'gamma']);
      assert.equal(await store.deleteFunction('beta'), true);
      assert.equal(await store.deleteFunction('beta'), false);
      assert.deepEqual((await store.listFunctions()).map((f) => f.spec.name), ['alpha', 'gamma']);
    } finally {
      await store.close();
    }
  });

  test(`${kind}: workers and data planes are upserted by id`, async () => {
    const store = await open();
    try {
      await store.putWorker({ id: 'w1', address: '10.0.0.1:10010', registeredAtMs: 1 });
      await store.putWorker({ id: 'w1', address: '10.0.0.2:10010', registeredAtMs: 2 });
      await store.putWorker({ id: 'w2', address: '10.0.0.3:10010', registeredAtMs: 3 });
      assert.deepEqual(await store.listWorkers(), [
        { id: 'w1', address: '10.0.0.2:10010', registeredAtMs: 2 },
        { id: 'w2', address: '10.0.0.3:10010', registeredAtMs: 3 },
      ]);
      await store.deleteWorker('w1');
      assert.deepEqual((await store.listWorkers()).map((w) => w.id), ['w2']);

      await store.putDataPlane({ id: 'd1', address: 'a:1', proxyAddress: 'a:2', registeredAtMs: 1 });
      await store.putDataPlane({ id: 'd1', address: 'b:1', proxyAddress: 'b:2', registeredAtMs: 2 });
      assert.deepEqual(await store.listDataPlanes(), [{ id: 'd1', address: 'b:1', proxyAddress: 'b:2', registeredAtMs: 2 }]);
      await store.deleteDataPlane('d1');
      assert.deepEqual(await store.listDataPlanes(), []);
    } finally {
      await store.close();
    }
  });
}
