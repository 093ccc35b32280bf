import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { empiricalPercentiles, readAzure2021, readAzure2021File } from './azure2021.js';

test('per-invocation rows become per-minute counts by start time (end − duration)', async () => {
  const trace = await readAzure2021(
    [
      'app,func,end_timestamp,duration',
      'a1,f1,10.5,0.5', // starts 10 s: minute 0
      'a1,f1,61.0,2.0', // ends in minute 1 but starts at 59 s: minute 0
      'a1,f1,125.0,1.0', // minute 2
      'a2,f2,200.0,0.25', // minute 3
    ],
    'trace.csv',
  );
  assert.equal(trace.format, 'azure2021');
  assert.equal(trace.minutes, 4);
  assert.equal(trace.firstMinuteLabel, 1);
  assert.deepEqual(trace.functions.map((f) => [f.hashApp, f.hashFunction, f.invocationsPerMinute]), [
    ['a1', 'f1', [2, 0, 1, 0]],
    ['a2', 'f2', [0, 0, 0, 1]],
  ]);
  assert.equal(trace.functions[0]?.memoryMb, undefined);
  // Observed durations 500, 1000, 2000 ms: quantiles at 0, 0.5, 1.
  assert.deepEqual(trace.functions[0]?.durationMs, [
    { q: 0, value: 500 },
    { q: 0.5, value: 1000 },
    { q: 1, value: 2000 },
  ]);
  assert.deepEqual(trace.functions[1]?.durationMs, [
    { q: 0, value: 250 },
    { q: 1, value: 250 },
  ]);
});

test('columns by name, any order; the window starts at the earliest start minute', async () => {
  const trace = await readAzure2021(['duration,end_timestamp,func,app', '1,600,f1,a1', '1,661,f1,a1'], 't.csv');
  assert.equal(trace.firstMinuteLabel, 10); // starts 599 s → minute 9 → label 10
  assert.deepEqual(trace.functions[0]?.invocationsPerMinute, [1, 0, 1]);
});

test('reads a file, and names file, line and column on malformed rows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-az2021-'));
  try {
    const path = join(dir, 'AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt');
    writeFileSync(path, 'app,func,end_timestamp,duration\na,f,61.5,1.5\na,f,oops,1\n');
    await assert.rejects(readAzure2021File(path, 'az2021.csv'), /^BatonError: az2021\.csv:3: column "end_timestamp": "oops" is not a timestamp in seconds$/);
    writeFileSync(path, 'app,func,end_timestamp,duration\na,f,61.5,1.5\n');
    const trace = await readAzure2021File(path);
    assert.deepEqual(trace.functions[0]?.invocationsPerMinute, [1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(readAzure2021(['app,func,end_timestamp,duration', 'a,f,1,-2'], 'x.csv'), /x\.csv:2: column "duration": "-2" is negative/);
  await assert.rejects(readAzure2021(['app,func,end_timestamp', 'a,f,1'], 'x.csv'), /x\.csv:1: missing column "duration"/);
  await assert.rejects(
    readAzure2021(['app,func,end_timestamp,duration', 'a,f,1,0', 'b,f,2,0'], 'x.csv'),
    /x\.csv:3: column "app": function f belongs to app a on an earlier line, b here/,
  );
});

test('empiricalPercentiles keeps at most 101 points, from the minimum to the maximum', () => {
  const values = Array.from({ length: 10_001 }, (_, i) => 10_000 - i);
  const table = empiricalPercentiles(values);
  assert.equal(table.length, 101);
  assert.deepEqual(table[0], { q: 0, value: 0 });
  assert.deepEqual(table[50], { q: 0.5, value: 5000 });
  assert.deepEqual(table[100], { q: 1, value: 10_000 });
});
