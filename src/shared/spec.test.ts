import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from './errors.js';
import { fromFunctionSpecMessage, parseFunctionSpec, patchFunctionSpec, SCALING_DEFAULTS, toFunctionSpecMessage } from './spec.js';

function invalid(input: unknown, field: string): void {
  assert.throws(
    () => parseFunctionSpec(input),
    (e: unknown) => e instanceof BatonError && e.code === 'INVALID_SPEC' && e.details?.field === field && e.message.startsWith(field),
    `expected INVALID_SPEC naming ${field}`,
  );
}

test('defaults follow Dirigent and Knative', () => {
  const spec = parseFunctionSpec({ name: 'f', command: ['node', 'x.js'] });
  assert.equal(spec.runtime, 'process');
  assert.deepEqual(spec.scaling, SCALING_DEFAULTS);
  assert.equal(spec.scaling.containerConcurrency, 1);
  assert.equal(spec.scaling.stableWindowSec, 60);
  assert.equal(spec.scaling.panicWindowSec, 6);
  assert.equal(spec.scaling.panicThresholdPct, 200);
  assert.equal(spec.scaling.maxScaleUpRate, 1000);
  assert.equal(spec.scaling.maxScaleDownRate, 2);
  assert.ok(Object.isFrozen(spec) && Object.isFrozen(spec.scaling), 'a parsed spec is frozen');
});

test('invalid specs name the field', () => {
  invalid({ command: ['x'] }, 'name');
  invalid({ name: 'UPPER', command: ['x'] }, 'name');
  invalid({ name: 'a'.repeat(64), command: ['x'] }, 'name');
  invalid({ name: 'f', command: [] }, 'command');
  invalid({ name: 'f', command: 'node x.js' }, 'command');
  invalid({ name: 'f', command: ['x'], runtime: 'docker' }, 'runtime');
  invalid({ name: 'f', command: ['x'], workdir: 'relative/dir' }, 'workdir');
  invalid({ name: 'f', command: ['x'], env: { 'BAD-NAME': 'v' } }, 'env.BAD-NAME');
  invalid({ name: 'f', command: ['x'], scaling: { containerConcurrency: -1 } }, 'scaling.containerConcurrency');
  invalid({ name: 'f', command: ['x'], scaling: { minScale: 3, maxScale: 2 } }, 'scaling.minScale');
  invalid({ name: 'f', command: ['x'], scaling: { bogus: 1 } }, 'scaling');
  invalid({ name: 'f', command: ['x'], timeoutMs: 0 }, 'timeoutMs');
  invalid({ name: 'f', command: ['x'], extra: true }, '');
});

test('a PATCH changes scaling and load balancing only, and re-validates', () => {
  const spec = parseFunctionSpec({ name: 'f', command: ['x'], scaling: { maxScale: 5 } });
  const patched = patchFunctionSpec(spec, { scaling: { minScale: 2 } });
  assert.equal(patched.scaling.minScale, 2);
  assert.equal(patched.scaling.maxScale, 5);
  assert.equal(spec.scaling.minScale, 0, 'the original is untouched');
  const isInvalid = (field: string) => (e: unknown) => e instanceof BatonError && e.code === 'INVALID_SPEC' && e.details?.['field'] === field;
  assert.throws(() => patchFunctionSpec(spec, { scaling: { minScale: 6 } }), isInvalid('scaling.minScale'));
  assert.throws(() => patchFunctionSpec(spec, { scaling: { stableWindowSec: 2 } }), isInvalid('scaling.stableWindowSec'));
  assert.throws(() => patchFunctionSpec(spec, { command: ['y'] }), isInvalid('command'));
  assert.throws(
    () => patchFunctionSpec(spec, { scaling: { stableWindow: 30 } }),
    (e: unknown) => e instanceof BatonError && e.details?.['field'] === 'scaling' && !/only scaling/.test(e.message),
    'a typo inside scaling is reported as such',
  );
  assert.throws(() => patchFunctionSpec(spec, { loadBalancing: 'fastest' }), isInvalid('loadBalancing'));

  const lb = patchFunctionSpec(spec, { loadBalancing: 'least-inflight' });
  assert.equal(lb.loadBalancing, 'least-inflight');
  assert.equal(patchFunctionSpec(lb, { scaling: { minScale: 1 } }).loadBalancing, 'least-inflight', 'kept when not named');
  assert.equal('loadBalancing' in patchFunctionSpec(lb, { loadBalancing: null }), false, 'null returns to the default');
});

test('loadBalancing is validated and round-trips through protobuf', () => {
  const spec = parseFunctionSpec({ name: 'f', command: ['x'], loadBalancing: 'power-of-two' });
  assert.deepEqual(fromFunctionSpecMessage(toFunctionSpecMessage(spec, 1n)), spec);
  invalid({ name: 'f', command: ['x'], loadBalancing: 'weighted' }, 'loadBalancing');
});

test('the protobuf form round-trips', () => {
  const spec = parseFunctionSpec({ name: 'f', command: ['node', 'x.js'], env: { A: 'b' }, workdir: '/srv', scaling: { maxScale: 9 } });
  assert.deepEqual(fromFunctionSpecMessage(toFunctionSpecMessage(spec, 3n)), spec);
});
