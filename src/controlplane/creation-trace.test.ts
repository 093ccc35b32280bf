import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreationLog, type CreationRecord } from './creation-trace.js';

function at(atMs: number, fn = 'f'): CreationRecord {
  return {
    atMs, decidedAtMs: atMs - 1, function: fn, sandboxId: `sb-${atMs}`, workerId: 'w', runtime: 'emulated', success: true, pooled: false,
    placementUs: 0, portAllocationUs: 0, runtimeCreateUs: 0, networkUs: 0, spawnUs: 0, readinessProbeUs: 0, workerTotalUs: 0,
    createRpcUs: 0, propagationUs: 0, totalUs: 0,
  };
}

test('the creation log returns the creations since a time, oldest first, of one function or all', () => {
  const log = new CreationLog(10);
  for (let t = 1; t <= 6; t++) log.push(at(t * 100, t % 2 ? 'odd' : 'even'));
  assert.deepEqual(log.since(300).records.map((r) => r.atMs), [300, 400, 500, 600]);
  assert.deepEqual(log.since(0, 'even').records.map((r) => r.atMs), [200, 400, 600]);
  assert.equal(log.since(0).complete, true);
  assert.equal(log.since(601).records.length, 0);
});

test('a full log overwrites its oldest and says when what was asked for is no longer whole', () => {
  const log = new CreationLog(3);
  for (let t = 1; t <= 5; t++) log.push(at(t * 100));
  assert.deepEqual(log.since(0).records.map((r) => r.atMs), [300, 400, 500]);
  // 100 and 200 were dropped: a query from before 200 is incomplete, one from after it is whole.
  assert.equal(log.since(0).complete, false);
  assert.equal(log.since(200).complete, false);
  assert.equal(log.since(201).complete, true);
  log.push(at(600));
  assert.deepEqual(log.since(0).records.map((r) => r.atMs), [400, 500, 600]);
});
