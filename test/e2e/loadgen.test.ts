// `baton loadgen trace` end to end: a one-minute window of the Azure 2019
// sample, three functions, replayed 50× faster (time scale 0.02, so ~1.2 s)
// against a cluster with emulated workers.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildSchedule, readAzure2019Folder } from '../../src/loadgen/index.js';
import { runTrace } from '../../src/loadgen/runner.js';
import { CSV_COLUMNS } from '../../src/loadgen/summary.js';
import { fixture, startTestCluster, type TestCluster } from '../helpers/cluster.js';

describe('baton loadgen trace', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'baton-loadgen-'));
    c = await startTestCluster({
      emulate: 2,
      controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200, createBackoffInitialMs: 100 },
    });
  });
  after(async () => {
    await c.close();
    rmSync(out, { recursive: true, force: true });
  });

  test('replays a minute of the sample open-loop, one CSV row per invocation, and summarises it', async () => {
    const trace = await readAzure2019Folder(fixture('traces/azure2019-example'));
    // Minutes 5–6: all four functions are active there; sample three of them.
    const schedule = buildSchedule(trace, { seed: 7, iat: 'exponential', sampleFunctions: 3, minutes: { from: 5, to: 7 }, warmupMinutes: 1 });
    assert.ok(schedule.invocations.length > 10, `${schedule.invocations.length} invocations`);
    const lines: string[] = [];
    const t0 = performance.now();
    const result = await runTrace(schedule, {
      api: c.apiUrl,
      dataPlane: c.dataPlaneUrl,
      timeScale: 0.02,
      outDir: out,
      log: (line) => lines.push(line),
      progressIntervalMs: 500,
    });
    const tookMs = performance.now() - t0;
    assert.ok(tookMs < 15_000, `took ${tookMs} ms`);

    // Every invocation has a record, answered 200 by an emulated sandbox.
    assert.equal(result.records.length, schedule.invocations.length);
    for (const r of result.records) {
      assert.equal(r.status, 200, `${r.function} #${r.index}: ${r.status} ${r.code}`);
      assert.ok(r.sentMs >= r.scheduledMs, 'never sent early');
      assert.ok(r.responseMs >= r.requestedDurationMs - 1, `latency ${r.responseMs} under the requested ${r.requestedDurationMs}`);
      assert.equal(r.measuredDurationMs, r.requestedDurationMs, 'the emulated sandbox held it for the requested time');
      assert.ok(r.queueMs >= 0);
      assert.notEqual(r.sandbox, '');
      assert.match(r.function, /^trace-[0-2]$/);
    }
    // Every function's first answer came from a new sandbox after waiting for it: a cold start.
    for (const name of result.functions) {
      const first = result.records.filter((r) => r.function === name).sort((a, b) => a.sentMs - b.sentMs)[0];
      assert.ok(first?.coldStart, `${name}'s first invocation is cold`);
    }

    const s = result.summary;
    const warmup = schedule.invocations.filter((i) => i.warmup).length;
    assert.ok(warmup > 0);
    assert.equal(s.invocations.scheduled, schedule.invocations.length);
    assert.equal(s.invocations.warmup, warmup);
    assert.equal(s.invocations.measured, schedule.invocations.length - warmup);
    assert.equal(s.invocations.ok, s.invocations.measured);
    assert.equal(s.invocations.failed, 0);
    assert.deepEqual(s.failures, {});
    assert.equal(
      s.functions.reduce((n, f) => n + f.invocations, 0),
      s.invocations.measured,
    );
    assert.ok(s.latencyMs.p50 <= s.latencyMs.p90 && s.latencyMs.p90 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max);
    assert.ok(s.schedulingLatencyMs.p50 >= 0);
    assert.ok(s.sendLagMs.p50 >= 0);
    assert.ok(s.slowdown >= 0.9, `slowdown ${s.slowdown}`);
    assert.ok(s.coldStartFraction >= 0 && s.coldStartFraction <= 1);
    // The measured minute lasts 1.2 s at this scale.
    assert.ok(Math.abs(s.rate.scheduledPerSec - s.invocations.measured / 1.2) < 1e-6, `scheduled ${s.rate.scheduledPerSec}/s`);
    assert.ok(s.rate.achievedPerSec > 0.8 * s.rate.scheduledPerSec, `achieved ${s.rate.achievedPerSec}/s of ${s.rate.scheduledPerSec}/s`);
    assert.ok(s.rate.achievedPerSec <= s.rate.scheduledPerSec + 1e-9);

    // The files: a header and one row per invocation; the summary as JSON.
    const csv = readFileSync(join(out, 'invocations.csv'), 'utf8').trimEnd().split('\n');
    assert.equal(csv[0], CSV_COLUMNS.join(','));
    assert.equal(csv.length, schedule.invocations.length + 1);
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')), JSON.parse(JSON.stringify(s)));
    assert.ok(lines.some((l) => l.startsWith(`sent ${schedule.invocations.length}/${schedule.invocations.length}`)), lines.join('\n'));

    // Deleted afterwards (no keep).
    const { body } = await c.admin('GET', '/v1/functions');
    assert.deepEqual(
      (body.functions as { name: string }[]).filter((f) => f.name.startsWith('trace-')),
      [],
    );
  });
});
