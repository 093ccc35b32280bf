import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from './errors.js';
import { fromFunctionSpecMessage, parseFunctionSpec, patchFunctionSpec, SCALING_DEFAULTS, toFunctionSpecMessage, toSpecInput } from './spec.js';

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

test('each runtime names its own code, and fields of other runtimes are refused', () => {
  invalid({ name: 'f' }, 'command');
  invalid({ name: 'f', runtime: 'oci' }, 'command');
  invalid({ name: 'f', runtime: 'node', workdir: '/srv/f' }, 'handler');
  invalid({ name: 'f', runtime: 'node', handler: 'index.handler' }, 'workdir');
  invalid({ name: 'f', runtime: 'node', handler: 'index', workdir: '/srv/f' }, 'handler');
  invalid({ name: 'f', runtime: 'node', handler: '../up.handler', workdir: '/srv/f' }, 'handler');
  invalid({ name: 'f', runtime: 'node', handler: 'index.handler', workdir: '/srv/f', command: ['node'] }, 'command');
  invalid({ name: 'f', command: ['x'], handler: 'index.handler' }, 'handler');
  invalid({ name: 'f', command: ['x'], network: 'isolated' }, 'network');
  invalid({ name: 'f', runtime: 'oci', command: ['x'], network: 'bridge' }, 'network');
  invalid({ name: 'f', command: ['x'], emulation: { durationMs: 5 } }, 'emulation');
  invalid({ name: 'f', runtime: 'wasm', command: ['x'] }, 'runtime');

  const node = parseFunctionSpec({ name: 'f', runtime: 'node', handler: 'lib/app.main', workdir: '/srv/f' });
  assert.deepEqual(node.command, []);
  assert.equal(node.handler, 'lib/app.main');
  const oci = parseFunctionSpec({ name: 'g', runtime: 'oci', command: ['/usr/bin/python3', '-m', 'http.server'], network: 'isolated' });
  assert.equal(oci.network, 'isolated');
  // oci defaults to its own network: on the host's it would share loopback with the worker's RPC.
  assert.equal(parseFunctionSpec({ name: 'g', runtime: 'oci', command: ['x'] }).network, 'isolated');
  assert.equal(parseFunctionSpec({ name: 'g', runtime: 'oci', command: ['x'], network: 'host' }).network, 'host');
  assert.equal(parseFunctionSpec({ name: 'g', command: ['x'] }).network, undefined);
  invalid({ name: 'g', runtime: 'oci', command: ['x'], workdir: '/' }, 'workdir');
  invalid({ name: 'g', runtime: 'oci', command: ['x'], workdir: '/proc/1' }, 'workdir');
  invalid({ name: 'g', runtime: 'oci', command: ['x'], workdir: '/run' }, 'workdir');
  assert.equal(parseFunctionSpec({ name: 'g', runtime: 'oci', command: ['x'], workdir: '/srv/g' }).workdir, '/srv/g');
  const emu = parseFunctionSpec({ name: 'h', runtime: 'emulated', emulation: { durationMs: 250 } });
  assert.deepEqual(emu.emulation, { durationMs: 250 });
  assert.equal(parseFunctionSpec({ name: 'i', runtime: 'emulated' }).emulation, undefined);
});

test('every runtime round-trips through protobuf and through the stored form', () => {
  const specs = [
    parseFunctionSpec({ name: 'a', runtime: 'node', handler: 'index.handler', workdir: '/srv/a' }),
    parseFunctionSpec({ name: 'b', runtime: 'oci', command: ['/bin/sh'], network: 'isolated', workdir: '/srv/b' }),
    parseFunctionSpec({ name: 'c', runtime: 'emulated', emulation: { durationMs: 0 } }),
    parseFunctionSpec({ name: 'd', runtime: 'emulated' }),
  ];
  for (const spec of specs) {
    assert.deepEqual(fromFunctionSpecMessage(toFunctionSpecMessage(spec, 1n)), spec);
    assert.deepEqual(parseFunctionSpec(JSON.parse(JSON.stringify(toSpecInput(spec)))), spec);
  }
  // A runtime this build does not know is refused, not taken for "process".
  const unknown = toFunctionSpecMessage(specs[1]!, 1n);
  unknown.runtime = 'firecracker';
  assert.throws(() => fromFunctionSpecMessage(unknown), (e: unknown) => e instanceof BatonError && e.code === 'UNSUPPORTED_RUNTIME');
  // So is a network mode it does not know: never the host's network by default.
  const net = toFunctionSpecMessage(specs[1]!, 1n);
  net.network = 'vpc';
  assert.throws(() => fromFunctionSpecMessage(net), (e: unknown) => e instanceof BatonError && e.code === 'INVALID_SPEC');
  net.network = '';
  assert.equal(fromFunctionSpecMessage(net).network, 'isolated');
});
