import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../shared/errors.js';
import { parseFunctionSpec } from '../shared/spec.js';
import { dirigentAnswer, dirigentSpec, isTraceImage } from './dirigent-registration.js';

const form = (fields: Record<string, string | string[]>): URLSearchParams => {
  const f = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const one of Array.isArray(v) ? v : [v]) f.append(k, one);
  return f;
};

test('InVitro\'s and Dirigent\'s workload images are the trace function; other images are not', () => {
  for (const image of ['empty', 'trace', 'TRACE', 'docker.io/cvetkovic/dirigent_trace_function:latest', 'docker.io/cvetkovic/dirigent_empty_function:latest']) {
    assert.ok(isTraceImage(image), image);
  }
  for (const image of ['', 'nginx', 'docker.io/library/python:3', 'tracer']) assert.ok(!isTraceImage(image), image);
});

test('the form maps to a valid spec: names lower-cased, Dirigent\'s unset upper bound (MaxInt32) is unlimited', () => {
  const spec = parseFunctionSpec(dirigentSpec(form({ name: 'TAbC-1', image: 'trace', scaling_upper_bound: '2147483647', requested_cpu: '0' })));
  assert.equal(spec.name, 'tabc-1');
  assert.equal(spec.scaling.maxScale, 0);
  assert.equal(spec.scaling.scaleToZeroGraceSec, 0);
  // Dirigent's default request is 1; Baton's smallest is 1 milli-CPU.
  assert.equal(spec.resources.cpuMillis, 1);
});

test('cold_start_sweep gives the sweep profile, and explicit bounds still win (InVitro\'s RPS warm function)', () => {
  const cold = dirigentSpec(form({ name: 'c', image: 'empty', cold_start_sweep: 'true' }));
  assert.deepEqual(cold.scaling, { scaleToZeroGraceSec: 0, maxScale: 1, stableWindowSec: 6, panicWindowSec: 2 });
  const warm = dirigentSpec(form({ name: 'w', image: 'empty', cold_start_sweep: 'true', scaling_lower_bound: '1', scaling_upper_bound: '1024' }));
  assert.equal(warm.scaling?.maxScale, 1024);
  assert.equal(warm.scaling?.minScale, 1);
});

test('bad fields are 400s naming the field', () => {
  const field = (fields: Record<string, string | string[]>): unknown => {
    try {
      dirigentSpec(form(fields));
    } catch (err) {
      assert.ok(err instanceof BatonError && err.code === 'INVALID_REQUEST', String(err));
      return err.details?.field;
    }
    return undefined;
  };
  assert.equal(field({ image: 'trace' }), 'name');
  assert.equal(field({ name: 'a', image: 'trace', requested_cpu: 'lots' }), 'requested_cpu');
  assert.equal(field({ name: 'a', image: 'trace', port_forwarding: '80' }), 'port_forwarding');
  assert.equal(field({ name: 'a', image: 'trace', scaling_upper_bound: '0' }), 'scaling_upper_bound');
  assert.equal(field({ name: 'a', image: 'trace', port_forwarding: ['80', 'tcp'] }), undefined);
});

test('the answer is every data plane\'s host:port joined by ";"', () => {
  assert.equal(dirigentAnswer(['10.0.0.2:8080', '10.0.0.1:8080']), '10.0.0.1:8080;10.0.0.2:8080');
  assert.equal(dirigentAnswer([]), '');
});
