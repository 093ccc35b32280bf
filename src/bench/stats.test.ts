import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CreationRecord } from '../controlplane/creation-trace.js';
import { BatonError } from '../shared/errors.js';
import { creationRate, formatScaleReport, parseEndpointGauge, parseSizeList, stageStatistics, stagesOf, STAGES, type ScalePoint } from './stats.js';

function record(over: Partial<CreationRecord> = {}): CreationRecord {
  return {
    atMs: 10_000,
    decidedAtMs: 9_000,
    function: 'f',
    sandboxId: 'sb',
    workerId: 'w',
    runtime: 'emulated',
    success: true,
    pooled: false,
    placementUs: 50,
    portAllocationUs: 0,
    runtimeCreateUs: 10,
    networkUs: 0,
    spawnUs: 100,
    readinessProbeUs: 0,
    workerTotalUs: 200,
    createRpcUs: 1200,
    propagationUs: 3000,
    totalUs: 4250,
    ...over,
  };
}

describe('parseSizeList', () => {
  test('reads comma-separated positive integers, with a k suffix for thousands', () => {
    assert.deepEqual(parseSizeList('100,1000, 5k', '--sandboxes'), [100, 1000, 5000]);
    assert.deepEqual(parseSizeList('7', '--nodes'), [7]);
  });
  test('refuses zero, negatives, fractions and words, naming the flag', () => {
    for (const bad of ['0', '-5', '1.5', 'ten', '100,', '']) {
      assert.throws(() => parseSizeList(bad, '--functions'), (err: unknown) => err instanceof BatonError && err.code === 'INVALID_REQUEST' && err.message.includes('--functions'));
    }
  });
});

describe('stage statistics', () => {
  test('one creation splits into decision, placement, the RPC without the worker, the worker, propagation', () => {
    const t = stagesOf(record(), 8_500);
    assert.deepEqual(t, { decision: 500, placement: 0.05, createRpc: 1, ready: 0.2, propagation: 3, total: 1500 });
  });
  test('a clock step never makes a stage negative', () => {
    const t = stagesOf(record({ decidedAtMs: 8_000, atMs: 8_100, workerTotalUs: 2000, createRpcUs: 1500 }), 8_500);
    assert.equal(t.decision, 0);
    assert.equal(t.total, 0);
    assert.equal(t.createRpc, 0);
  });
  test('p50, p99 and max over creations, each from its own function’s request time', () => {
    // 100 creations whose propagation is 1..100 ms, of two functions requested 1 s apart.
    const records = Array.from({ length: 100 }, (_, i) =>
      record({ function: i % 2 ? 'a' : 'b', propagationUs: (i + 1) * 1000, decidedAtMs: 5_000 + (i % 2 ? 0 : 1000) + 10 }),
    );
    const s = stageStatistics(records, (r) => (r.function === 'a' ? 5_000 : 6_000));
    assert.deepEqual(s.propagation, { p50: 50, p99: 99, max: 100 });
    assert.deepEqual(s.decision, { p50: 10, p99: 10, max: 10 });
    assert.deepEqual(Object.keys(s), [...STAGES]);
  });
  test('no creations: every statistic is NaN, not 0', () => {
    const s = stageStatistics([], () => 0);
    for (const st of STAGES) assert.ok(Number.isNaN(s[st].p50) && Number.isNaN(s[st].max));
  });
  test('creations per second', () => {
    assert.equal(creationRate(1000, 2), 500);
    assert.equal(creationRate(5, 0), 0);
  });
});

describe('parseEndpointGauge', () => {
  test('reads the endpoints gauge by function, whatever the label order, and nothing else', () => {
    const text = [
      '# HELP baton_dataplane_endpoints Routable sandboxes, by function.',
      '# TYPE baton_dataplane_endpoints gauge',
      'baton_dataplane_endpoints{function="x",component="dataplane"} 3',
      'baton_dataplane_endpoints{component="dataplane",function="bench-1"} 20',
      'baton_dataplane_endpoints{function="we\\"ird",component="dataplane"} 1',
      'baton_dataplane_in_flight{function="x",component="dataplane"} 7',
    ].join('\n');
    assert.deepEqual([...parseEndpointGauge(text)], [
      ['x', 3],
      ['bench-1', 20],
      ['we"ird', 1],
    ]);
  });
});

describe('formatScaleReport', () => {
  test('a summary line per point, then each point’s stages, N×k for scale-nodes', () => {
    const stages = stageStatistics([record()], () => 8_500);
    const point: ScalePoint = {
      test: 'scale-nodes',
      size: 5,
      nodes: 5,
      functions: 1,
      sandboxes: 10,
      readySandboxes: 10,
      visibleOnDataPlanes: 10,
      dataPlanes: 1,
      observedSeconds: 1.234,
      lastAckSeconds: 1.2,
      creationsPerSecond: 8.33,
      creations: 10,
      failedCreations: 0,
      recordsComplete: true,
      stages,
      perNode: { min: 2, max: 2 },
    };
    const out = formatScaleReport([point, { ...point, test: 'scale-sandboxes', size: 10, perNode: undefined, recordsComplete: false }]);
    const lines = out.split('\n');
    assert.match(lines[0] ?? '', /^test\s+N\s+nodes\s+sandboxes\s+ready\+visible s\s+last ack s\s+creations\/s\s+failed$/);
    assert.match(lines[1] ?? '', /^scale-nodes\s+5×2\s+5\s+10\/10\s+1\.23\s+1\.20\s+8\s+0$/);
    assert.match(lines[2] ?? '', /^scale-sandboxes\s+10\s+5/);
    assert.match(out, /scale-nodes N=5×2: stages over 10 creations, ms; 2–2 sandboxes per node/);
    assert.match(out, /scale-sandboxes N=10: stages over 10 creations, ms \(some records were dropped\)/);
    assert.match(out, /\ncreate RPC\s+1\.00\s+1\.00\s+1\.00\n/);
    assert.match(out, /\nrequest→routable\s+1500\.00\s+1500\.00\s+1500\.00\n/);
  });
});
