import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { BatonError } from '../shared/errors.js';
import { EMULATED_NODE_CAPACITY, emulatedWorkerConfigs } from './emulation.js';

function configError(fn: () => unknown): BatonError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err;
  }
  assert.fail('expected CONFIG_INVALID');
}

describe('emulated worker configs', () => {
  it('numbers the workers, gives them ephemeral ports, the emulated runtime only and a node-sized capacity', () => {
    const configs = emulatedWorkerConfigs({ id: 'rack', controlPlaneUrl: 'http://10.0.0.1:9090' }, 12);
    assert.equal(configs.length, 12);
    assert.deepEqual(
      configs.slice(0, 2).map((c) => c.id),
      ['rack-emu-01', 'rack-emu-02'],
    );
    assert.equal(configs[11]?.id, 'rack-emu-12');
    for (const c of configs) {
      assert.equal(c.rpcPort, 0);
      assert.deepEqual(c.runtimes, ['emulated']);
      assert.equal(c.cpuMillis, EMULATED_NODE_CAPACITY.cpuMillis);
      assert.equal(c.memoryMb, EMULATED_NODE_CAPACITY.memoryMb);
      assert.equal(c.controlPlaneUrl, 'http://10.0.0.1:9090');
      assert.equal(c.logLevel, 'warn');
      assert.ok(Object.isFrozen(c));
    }
    assert.match(emulatedWorkerConfigs({}, 1)[0]?.id ?? '', /^worker-.+-emu-1$/);
  });

  it('takes consecutive ports from a given rpcPort, the given capacity, and seeds each start delay apart', () => {
    const configs = emulatedWorkerConfigs(
      { rpcPort: 20_000, cpuMillis: 4000, memoryMb: 8192, emulation: { startDelay: { distribution: 'exponential', ms: 40, seed: 7 } } },
      3,
    );
    assert.deepEqual(
      configs.map((c) => c.rpcPort),
      [20_000, 20_001, 20_002],
    );
    assert.deepEqual(
      configs.map((c) => c.emulation.startDelay.seed),
      [7, 8, 9],
    );
    assert.ok(configs.every((c) => c.cpuMillis === 4000 && c.memoryMb === 8192 && c.emulation.startDelay.distribution === 'exponential'));
  });

  it('refuses a count out of range, runtimes set by hand, ports past 65535 and invalid keys', () => {
    configError(() => emulatedWorkerConfigs({}, 0));
    configError(() => emulatedWorkerConfigs({}, 5001));
    assert.match(configError(() => emulatedWorkerConfigs({ runtimes: ['process'] }, 2)).message, /runtimes/);
    assert.match(configError(() => emulatedWorkerConfigs({ rpcPort: 65_535 }, 2)).message, /65535/);
    assert.match(configError(() => emulatedWorkerConfigs({ emulation: { startDelay: { distribution: 'gamma' } } }, 2)).message, /distribution/);
  });
});
