// The registry, and the rules every policy keeps whatever it prefers: never a
// worker without room, -1 when nothing fits. Run over every registered policy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PLACEMENT_POLICIES } from '../../shared/config.js';
import { createPlacementPolicy, fits, PLACEMENT_POLICY_FACTORIES } from './index.js';
import { mulberry32, request, worker } from './fixtures.js';

test('every configurable policy name has a policy that bears that name', () => {
  assert.deepEqual(Object.keys(PLACEMENT_POLICY_FACTORIES).sort(), [...PLACEMENT_POLICIES].sort());
  for (const name of PLACEMENT_POLICIES) assert.equal(createPlacementPolicy(name, mulberry32(1)).name, name);
});

test('createPlacementPolicy gives each caller its own state', () => {
  const ws = [worker('a'), worker('b')];
  const first = createPlacementPolicy('round-robin');
  first.place(ws, request(100, 128));
  assert.equal(createPlacementPolicy('round-robin').place(ws, request(100, 128)), 0);
});

for (const name of PLACEMENT_POLICIES) {
  const req = request(500, 1024);

  test(`${name}: returns -1 with no candidates`, () => {
    assert.equal(createPlacementPolicy(name, mulberry32(1)).place([], req), -1);
  });

  test(`${name}: never picks a worker short of CPU only`, () => {
    const policy = createPlacementPolicy(name, mulberry32(2));
    // The CPU-short workers are the emptiest by memory, so a scorer that looked at memory alone would pick them.
    const ws = [
      worker('cpu-short-1', { cpuMillis: 4000, reservedCpuMillis: 3600 }),
      worker('ok', { reservedCpuMillis: 2000, reservedMemoryMb: 6000 }),
      worker('cpu-short-2', { cpuMillis: 499 }),
    ];
    for (let r = 0; r < 50; r++) assert.equal(policy.place(ws, req), 1);
  });

  test(`${name}: never picks a worker short of memory only`, () => {
    const policy = createPlacementPolicy(name, mulberry32(3));
    const ws = [
      worker('mem-short-1', { memoryMb: 8192, reservedMemoryMb: 7300 }),
      worker('mem-short-2', { memoryMb: 1023 }),
      worker('ok', { reservedCpuMillis: 3000, reservedMemoryMb: 4000 }),
    ];
    for (let r = 0; r < 50; r++) assert.equal(policy.place(ws, req), 2);
  });

  test(`${name}: never picks a worker with zero capacity`, () => {
    const policy = createPlacementPolicy(name, mulberry32(4));
    const ws = [worker('no-cpu', { cpuMillis: 0 }), worker('no-mem', { memoryMb: 0 })];
    assert.equal(policy.place(ws, request(0, 0)), -1);
    assert.equal(policy.place([...ws, worker('ok')], request(0, 0)), 2);
  });

  test(`${name}: returns -1 when no worker fits`, () => {
    const policy = createPlacementPolicy(name, mulberry32(5));
    const ws = [worker('a', { reservedCpuMillis: 3600 }), worker('b', { reservedMemoryMb: 7300 }), worker('c', { cpuMillis: 100 })];
    for (let r = 0; r < 10; r++) assert.equal(policy.place(ws, req), -1);
  });

  test(`${name}: on random clusters, the choice always fits, and -1 only when nothing does`, () => {
    const rand = mulberry32(6);
    const policy = createPlacementPolicy(name, mulberry32(7));
    const int = (max: number) => Math.floor(rand() * (max + 1));
    for (let round = 0; round < 2000; round++) {
      const ws = Array.from({ length: int(6) }, (_, i) =>
        worker(`w${i}`, {
          cpuMillis: int(4) * 1000,
          memoryMb: int(4) * 1024,
          reservedCpuMillis: int(5) * 1000,
          reservedMemoryMb: int(5) * 1024,
        }),
      );
      const r = request(int(8) * 250, int(8) * 256);
      const chosen = policy.place(ws, r);
      const anyFits = ws.some((w) => fits(w, r));
      if (chosen === -1) assert.equal(anyFits, false, `round ${round}: returned -1 although a worker fits`);
      else assert.equal(fits(ws[chosen]!, r), true, `round ${round}: chose ${chosen}, which has no room`);
    }
  });
}
