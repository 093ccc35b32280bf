import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { BatonError } from '../../shared/errors.js';
import { readAzure2019, readAzure2019Folder, type Azure2019Sources } from './azure2019.js';

const SAMPLE = fileURLToPath(new URL('../../../../test/fixtures/traces/azure2019-example/', import.meta.url));
const sampleLines = (name: string) => readFileSync(SAMPLE + name, 'utf8').split('\n');

const DURATIONS_HEADER =
  'HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100';
const MEMORY_HEADER =
  'HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100';

/** A small valid trace: functions f1 (app a1) and f2 (app a2), 3 minutes. */
function small(overrides: Partial<Record<'invocations' | 'durations' | 'memory', string[]>> = {}): Azure2019Sources {
  return {
    invocations: overrides.invocations ?? ['HashOwner,HashApp,HashFunction,Trigger,1,2,3', 'o1,a1,f1,http,1,2,3', 'o2,a2,f2,timer,0,0,4'],
    durations: overrides.durations ?? [DURATIONS_HEADER, 'o1,a1,f1,10,6,1,20,1,2,5,10,15,19,20', 'o2,a2,f2,100,4,90,110,90,90,95,100,105,109,110'],
    memory: overrides.memory ?? [MEMORY_HEADER, 'o1,a1,f1,10,120,100,102,114,123,127,136,143,152', 'o2,a2,f2,10,50,40,41,42,50,55,60,61,62'],
  };
}

async function rejectsWith(sources: Azure2019Sources, message: string): Promise<void> {
  await assert.rejects(readAzure2019(sources), (err: unknown) => {
    assert.ok(err instanceof BatonError, `expected a BatonError, got ${String(err)}`);
    assert.equal(err.code, 'TRACE_INVALID');
    assert.equal(err.message, message);
    return true;
  });
}

/** Reorders every line's fields by `order` (a permutation of column positions). */
function shuffleColumns(lines: string[], order: (n: number) => number[]): string[] {
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.split(',');
      return order(f.length)
        .map((i) => f[i])
        .join(',');
    });
}

test('the real sample parses: 4 functions × 1440 minutes, joined on HashFunction', async () => {
  const trace = await readAzure2019Folder(SAMPLE);
  assert.equal(trace.format, 'azure2019');
  assert.equal(trace.minutes, 1440);
  assert.equal(trace.firstMinuteLabel, 1);
  assert.deepEqual(trace.dropped, []);
  assert.equal(trace.functions.length, 4);
  const total = (i: number) => trace.functions[i]?.invocationsPerMinute.reduce((a, b) => a + b, 0);
  assert.deepEqual([0, 1, 2, 3].map(total), [1150, 1125, 1125, 1125]);
  assert.deepEqual(trace.functions.map((f) => f.trigger), ['queue', 'queue', 'queue', 'timer']);
  const second = trace.functions[1];
  assert.ok(second);
  assert.equal(second.hashFunction, 'a2faad786b3c813b12ce57d349d5e62f6d0f22ceecfa86cd72a962853383b600');
  assert.deepEqual(second.invocationsPerMinute.slice(0, 7), [0, 0, 0, 0, 0, 5, 5]);
  // durations.csv row of this function: percentiles 500,500,500,500,501,501,501.
  assert.deepEqual(second.durationMs.map((p) => p.value), [500, 500, 500, 500, 501, 501, 501]);
  assert.deepEqual(second.durationMs.map((p) => p.q), [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1]);
  // memory.csv row: pct1..pct100 = 146,159,165,173,181,211,228,235; q=0 repeats pct1.
  assert.deepEqual(second.memoryMb?.map((p) => p.value), [146, 146, 159, 165, 173, 181, 211, 228, 235]);
  assert.deepEqual(second.memoryMb?.map((p) => p.q), [0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1]);
});

test('columns are found by name: the sample with every file\'s columns reversed parses the same', async () => {
  const original = await readAzure2019Folder(SAMPLE);
  const reverse = (n: number) => Array.from({ length: n }, (_, i) => n - 1 - i);
  // Rotate too, so minute columns come first and hashes sit in the middle.
  const rotate = (n: number) => Array.from({ length: n }, (_, i) => (i + 7) % n);
  const shuffled = await readAzure2019({
    invocations: shuffleColumns(sampleLines('invocations.csv'), reverse),
    durations: shuffleColumns(sampleLines('durations.csv'), rotate),
    memory: shuffleColumns(sampleLines('memory.csv'), reverse),
  });
  assert.deepEqual(shuffled, original);
});

test('quoted fields: quoted hashes, a trigger containing a comma, quoted counts', async () => {
  const trace = await readAzure2019(
    small({ invocations: ['"HashOwner","HashApp","HashFunction","Trigger","1","2","3"', '"o1","a1","f1","http, queue","1","2","3"', 'o2,a2,f2,timer,0,0,4'] }),
  );
  assert.equal(trace.functions[0]?.trigger, 'http, queue');
  assert.deepEqual(trace.functions[0]?.invocationsPerMinute, [1, 2, 3]);
});

test('Trigger and HashOwner are optional; minute labels may start past 1 (InVitro excerpts)', async () => {
  const trace = await readAzure2019(small({ invocations: ['HashApp,HashFunction,540,541,542', 'a1,f1,1,0,2', 'a2,f2,0,0,1'] }));
  assert.equal(trace.firstMinuteLabel, 540);
  assert.equal(trace.minutes, 3);
  assert.equal(trace.functions[0]?.trigger, undefined);
  assert.equal(trace.functions[0]?.hashOwner, undefined);
  assert.deepEqual(trace.functions[0]?.invocationsPerMinute, [1, 0, 2]);
});

test('per-app memory (the raw Azure file, no HashFunction) is split evenly across the app\'s functions', async () => {
  const trace = await readAzure2019(
    small({
      invocations: ['HashOwner,HashApp,HashFunction,Trigger,1', 'o1,a1,f1,http,1', 'o1,a1,f3,http,1', 'o2,a2,f2,http,1'],
      durations: [DURATIONS_HEADER, 'o1,a1,f1,1,1,1,1,1,1,1,1,1,1,1', 'o1,a1,f3,1,1,1,1,1,1,1,1,1,1,1', 'o2,a2,f2,1,1,1,1,1,1,1,1,1,1,1'],
      memory: [
        MEMORY_HEADER.replace('HashFunction,', ''),
        'o1,a1,10,120,100,102,114,124,128,136,144,152',
        'o2,a2,10,50,40,41,42,50,55,60,61,62',
      ],
    }),
  );
  assert.deepEqual(trace.functions.map((f) => f.hashFunction), ['f1', 'f3', 'f2']);
  assert.deepEqual(trace.functions[0]?.memoryMb?.map((p) => p.value), [50, 50, 51, 57, 62, 64, 68, 72, 76]);
  assert.deepEqual(trace.functions[2]?.memoryMb?.map((p) => p.value), [40, 40, 41, 42, 50, 55, 60, 61, 62]);
});

test('a function without a durations or memory row is dropped and listed', async () => {
  const trace = await readAzure2019(
    small({
      durations: [DURATIONS_HEADER, 'o2,a2,f2,100,4,90,110,90,90,95,100,105,109,110'],
      memory: [MEMORY_HEADER, 'o1,a1,f1,10,120,100,102,114,123,127,136,143,152'],
    }),
  );
  assert.deepEqual(trace.functions, []);
  assert.deepEqual(trace.dropped, [
    { hashFunction: 'f1', reason: 'no row in durations.csv' },
    { hashFunction: 'f2', reason: 'no row in memory.csv for its function' },
  ]);
});

test('every malformed input names the file, the line and the column', async () => {
  const inv = (row: string) => small({ invocations: ['HashOwner,HashApp,HashFunction,Trigger,1,2,3', 'o1,a1,f1,http,1,2,3', row] });
  await rejectsWith(inv('o2,a2,f2,timer,0,x,4'), 'invocations.csv:3: column "2": "x" is not a count');
  await rejectsWith(inv('o2,a2,f2,timer,0,-1,4'), 'invocations.csv:3: column "2": "-1" is not a count');
  await rejectsWith(inv('o2,a2,f2,timer,0,1.5,4'), 'invocations.csv:3: column "2": "1.5" is not a count');
  await rejectsWith(inv('o2,a2,f2,timer,0,,4'), 'invocations.csv:3: column "2": "" is not a count');
  await rejectsWith(inv('o2,a2,,timer,0,0,4'), 'invocations.csv:3: column "HashFunction": empty');
  await rejectsWith(inv('o2,a2,f1,timer,0,0,4'), 'invocations.csv:3: column "HashFunction": f1 already appears on line 2');
  await rejectsWith(inv('o2,a2,f2,timer,0,0'), 'invocations.csv:3: 6 fields where the header has 7');
  await rejectsWith(
    small({ invocations: ['HashOwner,HashApp,Trigger,1,2,3', 'o1,a1,http,1,2,3'] }),
    'invocations.csv:1: missing column "HashFunction" (header: HashOwner,HashApp,Trigger,1,2,3)',
  );
  await rejectsWith(small({ invocations: ['HashOwner,HashApp,HashFunction,1,2,4', 'o1,a1,f1,1,2,3'] }), 'invocations.csv:1: minute columns are not consecutive: "3" is missing');
  await rejectsWith(small({ invocations: ['HashOwner,HashApp,HashFunction,Trigger', 'o1,a1,f1,http'] }), 'invocations.csv:1: no minute columns (headers "1", "2", …)');
  await rejectsWith(small({ invocations: ['HashOwner,HashApp,HashFunction,1', 'o1,"a1,f1,1'] }), 'invocations.csv:2: unterminated quoted field in field 2');

  const dur = (row: string) => small({ durations: [DURATIONS_HEADER, 'o1,a1,f1,10,6,1,20,1,2,5,10,15,19,20', row] });
  await rejectsWith(dur('o2,a2,f2,100,4,90,110,90,90,95,abc,105,109,110'), 'durations.csv:3: column "percentile_Average_50": "abc" is not a number');
  await rejectsWith(dur('o2,a2,f2,100,4,90,110,90,90,95,100,99,109,110'), 'durations.csv:3: column "percentile_Average_75": 99 is below the previous percentile 100');
  await rejectsWith(dur('o2,a2,f2,100,4,90,110,-1,90,95,100,105,109,110'), 'durations.csv:3: column "percentile_Average_0": "-1" is negative');
  await rejectsWith(dur('o2,a2,f1,100,4,90,110,90,90,95,100,105,109,110'), 'durations.csv:3: column "HashFunction": f1 already appears on line 2');
  await rejectsWith(
    small({ durations: [DURATIONS_HEADER.replace(',percentile_Average_99', ''), 'o1,a1,f1,10,6,1,20,1,2,5,10,15,20'] }),
    `durations.csv:1: missing column "percentile_Average_99" (header: ${DURATIONS_HEADER.replace(',percentile_Average_99', '')})`,
  );

  await rejectsWith(small({ memory: [MEMORY_HEADER.replace(',AverageAllocatedMb_pct5', '')] }), `memory.csv:1: missing column "AverageAllocatedMb_pct5" (header: ${MEMORY_HEADER.replace(',AverageAllocatedMb_pct5', '')})`);

  const mem = (row: string) => small({ memory: [MEMORY_HEADER, row, 'o2,a2,f2,10,50,40,41,42,50,55,60,61,62'] });
  await rejectsWith(mem('o1,a1,f1,10,120,100,102,114,123,127,136,143,NaN'), 'memory.csv:2: column "AverageAllocatedMb_pct100": "NaN" is not a number');
  await rejectsWith(mem('o1,a1,f1,10,120,100,102,114,123,127,136,143,1e999'), 'memory.csv:2: column "AverageAllocatedMb_pct100": "1e999" is not a number');
});

test('file names in errors can be set (for a CLI passing paths)', async () => {
  await rejectsWith(
    { ...small({ memory: [MEMORY_HEADER, 'o1,a1,f1,10,120,100,102,114,123,127,136,143,x'] }), names: { memory: 'day1/memory.csv' } },
    'day1/memory.csv:2: column "AverageAllocatedMb_pct100": "x" is not a number',
  );
});
