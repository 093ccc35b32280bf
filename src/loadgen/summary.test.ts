import assert from 'node:assert/strict';
import { test } from 'node:test';
import { csvHeader, csvRow, geometricMean, percentile, summarise } from './summary.js';
import { invocationRecord } from './test-support.js';

const rec = invocationRecord;

test('percentile is nearest-rank; geometric mean', () => {
  const s = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(s, 50), 50);
  assert.equal(percentile(s, 99), 99);
  assert.equal(percentile([7], 90), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.ok(Math.abs(geometricMean([1, 4, 16]) - 4) < 1e-12);
});

test('summarise leaves warm-up out and counts failures, slowdown, cold starts and rates', () => {
  const records = [
    rec({ index: 0, warmup: true, status: 503, code: 'QUEUE_FULL', sentMs: 500, scheduledMs: 0 }),
    rec({ index: 1, scheduledMs: 1000, sentMs: 1002, responseMs: 40, requestedDurationMs: 10, coldStart: true }),
    rec({ index: 2, function: 'trace-1', scheduledMs: 1500, sentMs: 1501, responseMs: 10, requestedDurationMs: 10 }),
    rec({ index: 3, function: 'trace-1', scheduledMs: 1900, sentMs: 1904, status: 504, code: 'QUEUE_TIMEOUT' }),
  ];
  const s = summarise(records, { startMs: 1000, endMs: 2000, timeScale: 1 });
  assert.deepEqual(s.invocations, { scheduled: 4, warmup: 1, measured: 3, ok: 2, failed: 1 });
  assert.deepEqual(s.failures, { '504 QUEUE_TIMEOUT': 1 });
  assert.equal(s.latencyMs.p50, 10);
  assert.equal(s.latencyMs.max, 40);
  assert.equal(s.sendLagMs.max, 4);
  // response − measured execution: 40 − 10 and 10 − 10.
  assert.deepEqual([s.schedulingLatencyMs.p50, s.schedulingLatencyMs.max], [0, 30]);
  assert.equal(s.maxLagMs, 500, 'max lag counts warm-up too');
  assert.ok(Math.abs(s.slowdown - 2) < 1e-12, 'geomean of 4 and 1');
  assert.deepEqual(
    s.functions.map((f) => [f.function, f.invocations, f.ok, f.coldStarts, f.slowdown]),
    [
      ['trace-0', 1, 1, 1, 4],
      ['trace-1', 2, 1, 0, 1],
    ],
  );
  assert.equal(s.coldStartFraction, 1 / 3);
  assert.equal(s.rate.scheduledPerSec, 3);
  assert.equal(s.rate.achievedPerSec, 3);
  // Sending that ran past the window stretches it.
  const late = summarise([rec({ scheduledMs: 1000, sentMs: 2999 })], { startMs: 1000, endMs: 2000, timeScale: 1 });
  assert.ok(Math.abs(late.rate.achievedPerSec - 1 / 1.999) < 1e-12);
});

test('CSV quotes fields that need it', () => {
  assert.match(csvHeader(), /^index,function,scheduledMs,sentMs,responseMs,status,code,/);
  assert.equal(csvRow(rec({ code: 'a,"b"', responseMs: 1.23456 })).split(',')[4], '1.235');
  assert.ok(csvRow(rec({ code: 'a,"b"' })).includes('"a,""b"""'));
});
