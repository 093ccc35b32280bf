// `baton loadgen trace` end to end: a one-minute window of the Azure 2019
// sample, three functions, replayed 50× faster (time scale 0.02, so ~1.2 s)
// against a cluster with emulated workers and one real worker (process and
// node runtimes); the report; memory emulation; the node runtime.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildSchedule, readAzure2019Folder, type Schedule } from '../../src/loadgen/index.js';
import { runTrace } from '../../src/loadgen/runner.js';
import { CSV_COLUMNS } from '../../src/loadgen/summary.js';
import { ociUnavailable } from '../../src/worker/runtimes/oci.js';
import { fixture, startTestCluster, type TestCluster } from '../helpers/cluster.js';

/** The schedule with every invocation's memory set to memoryMb. */
function withMemory(schedule: Schedule, memoryMb: number): Schedule {
  return { ...schedule, invocations: schedule.invocations.map((i) => ({ ...i, memoryMb })) };
}

describe('baton loadgen trace', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'baton-loadgen-'));
    c = await startTestCluster({
      emulate: 2,
      // Not oci, even where it would work (root with runc): the refusal test below needs a runtime nobody offers.
      worker: { runtimes: ['process', 'node'] },
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
      // Memory emulation is off by default and has a test of its own below: writing the sample's
      // 100–235 MiB per request costs ~12 ms per MiB of page faults on these VMs, in this process.
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
    assert.ok(lines.some((l) => l.startsWith(`sent ${schedule.invocations.length}/${schedule.invocations.length} (100%)`)), lines.join('\n'));

    // The sandbox count was polled from the control plane while the replay ran: it rose from
    // where it started (scale from zero) while the replay ran, in time order.
    assert.ok(result.sandboxes.length >= 5, `${result.sandboxes.length} samples`);
    const peak = Math.max(...result.sandboxes.map((p) => p.ready));
    assert.ok((result.sandboxes[0]?.ready ?? 0) < peak, 'scaled up from where it started');
    assert.ok(result.sandboxes.some((p) => p.ready >= 1), JSON.stringify(result.sandboxes));
    for (let i = 1; i < result.sandboxes.length; i++) assert.ok((result.sandboxes[i]?.atMs ?? 0) >= (result.sandboxes[i - 1]?.atMs ?? 0));

    // The report: one page beside the CSV, four plots with data, nothing to fetch.
    assert.equal(result.reportPath, join(out, 'report.html'));
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.match(html, /^<!DOCTYPE html>/);
    assert.equal((html.match(/<svg /g) ?? []).length, 4);
    for (const title of ['Latency CDF', 'Per-function slowdown CDF', 'Requests per second and ready sandboxes', 'Cold starts per second']) {
      assert.ok(html.includes(title), title);
    }
    assert.equal((html.match(/<path class="series"/g) ?? []).length >= 5, true, 'every plot has a line');
    assert.ok(!html.includes('no data'));
    const y2 = /<g class="y2-axis" data-min="0" data-max="(\d+)">/.exec(html);
    assert.ok(Number(y2?.[1]) >= 1, 'the sandbox count is on the right axis');
    assert.ok(!/<script|src=|href=/.test(html));

    // Deleted afterwards (no keep).
    const { body } = await c.admin('GET', '/v1/functions');
    assert.deepEqual(
      (body.functions as { name: string }[]).filter((f) => f.name.startsWith('trace-')),
      [],
    );
  });

  test('with the emulated runtime and emulateMemory each request holds its drawn memory in the worker for its duration', async () => {
    const trace = await readAzure2019Folder(fixture('traces/azure2019-example'));
    const one = buildSchedule(trace, { seed: 7, iat: 'equidistant', sampleFunctions: 1, minutes: { from: 5, to: 6 } });
    // One invocation of 64 MiB held 1.5 s; the emulated workers run in this process, so its memory shows it.
    const schedule: Schedule = { ...one, invocations: [{ fn: 0, atMs: 0, durationMs: 1500, memoryMb: 64, warmup: false }], durationMs: 1500 };
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - before)), 20);
    try {
      const result = await runTrace(schedule, { api: c.apiUrl, dataPlane: c.dataPlaneUrl, progressIntervalMs: 0, emulateMemory: true });
      assert.equal(result.records[0]?.status, 200, result.records[0]?.code);
      assert.equal(result.records[0]?.measuredDurationMs, 1500);
    } finally {
      clearInterval(sampler);
    }
    // 48, not 64: other buffers of this process (the cluster's, undici's) may be
    // collected during the hold and lower the baseline; a run without the
    // allocation stays near 0.
    assert.ok(peak >= 48 * 2 ** 20, `${(peak / 2 ** 20).toFixed(1)} MiB more at the peak`);
  });

  test('replays on the node runtime with the built-in handler', async () => {
    const trace = await readAzure2019Folder(fixture('traces/azure2019-example'));
    // 2 MiB: the trace function writes every page, ~12 ms per MiB on these VMs.
    const schedule = withMemory(buildSchedule(trace, { seed: 3, iat: 'equidistant', sampleFunctions: 2, minutes: { from: 5, to: 6 } }), 2);
    assert.ok(schedule.invocations.length > 5, `${schedule.invocations.length} invocations`);
    const nodeOut = join(out, 'node');
    const result = await runTrace(schedule, { api: c.apiUrl, dataPlane: c.dataPlaneUrl, runtime: 'node', timeScale: 0.02, outDir: nodeOut, progressIntervalMs: 0 });
    for (const r of result.records) {
      assert.equal(r.status, 200, `${r.function} #${r.index}: ${r.status} ${r.code}`);
      // The handler spun for at least the requested time and said so.
      assert.ok(r.measuredDurationMs >= r.requestedDurationMs, `measured ${r.measuredDurationMs} of ${r.requestedDurationMs}`);
      assert.match(r.sandbox, /^sb-trace-[01]-/);
    }
    assert.equal(result.summary.invocations.failed, 0);
    assert.ok(readFileSync(join(nodeOut, 'report.html'), 'utf8').includes('Latency CDF'));
  });

  test('a runtime no worker offers fails before deploying anything, and says why', async () => {
    const trace = await readAzure2019Folder(fixture('traces/azure2019-example'));
    const schedule = buildSchedule(trace, { seed: 3, iat: 'equidistant', sampleFunctions: 1, minutes: { from: 5, to: 6 } });
    await assert.rejects(runTrace(schedule, { api: c.apiUrl, dataPlane: c.dataPlaneUrl, runtime: 'oci', progressIntervalMs: 0 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'UNSUPPORTED_RUNTIME');
      assert.match(err.message, /^--runtime oci: no worker of the cluster offers "oci" \(offered: emulated, node, process\); oci needs a worker running as root with runc/);
      return true;
    });
    const after = await c.admin('GET', '/v1/functions');
    assert.deepEqual((after.body.functions as { name: string }[]).filter((f) => f.name.startsWith('trace-')), []);
  });
});

const noOci = ociUnavailable('runc');

describe('baton loadgen trace --runtime oci', { skip: noOci ? `needs root and runc: ${noOci}` : false }, () => {
  let c: TestCluster;
  before(async () => {
    c = await startTestCluster({ worker: { runtimes: ['oci'] }, controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200, createBackoffInitialMs: 100 } });
  });
  after(async () => {
    await c.close();
  });

  test('the trace function runs in a container, from Baton\'s package root bound at /function', async () => {
    const trace = await readAzure2019Folder(fixture('traces/azure2019-example'));
    // 2 MiB: writing memory costs ~17 ms per MiB in a container on these VMs.
    const schedule = withMemory(buildSchedule(trace, { seed: 3, iat: 'equidistant', sampleFunctions: 1, minutes: { from: 5, to: 6 } }), 2);
    const result = await runTrace(schedule, { api: c.apiUrl, dataPlane: c.dataPlaneUrl, runtime: 'oci', timeScale: 0.05, progressIntervalMs: 0 });
    assert.ok(result.records.length > 0);
    for (const r of result.records) {
      assert.equal(r.status, 200, `${r.function} #${r.index}: ${r.status} ${r.code}`);
      assert.ok(r.measuredDurationMs >= r.requestedDurationMs, `measured ${r.measuredDurationMs} of ${r.requestedDurationMs}`);
    }
  });
});
