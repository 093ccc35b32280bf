// `baton loadgen rps` end to end against a cluster with emulated workers: a
// two-step open-loop run to one function, and a tiny cold-start sweep (1 and
// 2 cold starts/s) whose functions go back to zero between calls. The control
// plane ticks every 200 ms so scale to zero takes ~ the 6 s stable window.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BatonError } from '../../src/shared/errors.js';
import { findSaturation } from '../../src/loadgen/rps.js';
import { formatColdSweep, formatRps, runColdSweep, runRps } from '../../src/loadgen/rps-runner.js';
import { CSV_COLUMNS } from '../../src/loadgen/summary.js';
import { echoSpec, REPO_ROOT, startTestCluster, type TestCluster } from '../helpers/cluster.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Runs the CLI as a child (asynchronously: the cluster runs in this process and must keep serving). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('baton loadgen rps', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'baton-loadgen-rps-'));
    c = await startTestCluster({
      emulate: 2,
      controlplane: { scalingPeriodMs: 200, metricsIntervalMs: 200, createBackoffInitialMs: 100 },
      worker: { emulation: { startDelay: { distribution: 'constant', ms: 20 } } },
    });
  });
  after(async () => {
    await c.close();
    rmSync(out, { recursive: true, force: true });
  });

  async function functionNames(): Promise<string[]> {
    const { body } = await c.admin('GET', '/v1/functions');
    return (body.functions as { name: string }[]).map((f) => f.name);
  }

  test('a missing function fails before any load', async () => {
    await assert.rejects(
      runRps({ api: c.apiUrl, dataPlane: c.dataPlaneUrl, function: 'no-such-fn', rates: [5], stepMs: 1000, iat: 'equidistant', seed: 1, progressIntervalMs: 0 }),
      (err: unknown) => err instanceof BatonError && err.code === 'FUNCTION_NOT_FOUND',
    );
  });

  test('two steps at 20 and 40 req/s: every request answered, per-step counts and rates, CSV and summary', async () => {
    const dir = join(out, 'rps');
    const lines: string[] = [];
    const result = await runRps({
      api: c.apiUrl,
      dataPlane: c.dataPlaneUrl,
      function: 'rps-e2e',
      deploy: true,
      rates: [20, 40],
      stepMs: 1500,
      iat: 'exponential',
      seed: 5,
      request: { method: 'POST', path: '/work', headers: { 'x-baton-emulate-ms': '5' }, body: 'hello' },
      outDir: dir,
      log: (l) => lines.push(l),
      progressIntervalMs: 500,
    });
    assert.equal(result.records.length, 30 + 60);
    for (const r of result.records) {
      assert.equal(r.status, 200, `#${r.index}: ${r.status} ${r.code}`);
      assert.equal(r.function, 'rps-e2e');
      // The header reached the sandbox: the emulated sandbox held the request 5 ms.
      assert.equal(r.measuredDurationMs, 5);
      assert.ok(r.sentMs >= r.scheduledMs);
    }
    assert.deepEqual(
      result.steps.map((s) => [s.step, s.targetRps, s.summary.invocations.measured, s.summary.invocations.ok]),
      [
        [0, 20, 30, 30],
        [1, 40, 60, 60],
      ],
    );
    for (const s of result.steps) {
      // Every record of the step is inside its window.
      assert.ok(s.summary.rate.achievedPerSec > 0.8 * s.targetRps, `step ${s.step}: ${s.summary.rate.achievedPerSec}/s`);
      assert.ok(s.summary.rate.achievedPerSec <= s.targetRps + 1e-9);
      assert.ok(s.summary.latencyMs.p50 <= s.summary.latencyMs.p99);
    }
    // The function starts at zero: the first request is a cold start.
    assert.equal(result.records[0]?.coldStart, true);

    const csv = readFileSync(join(dir, 'invocations.csv'), 'utf8').trimEnd().split('\n');
    assert.equal(csv[0], [...CSV_COLUMNS, 'step', 'targetRps'].join(','));
    assert.equal(csv.length, 91);
    assert.match(csv[1] ?? '', /,0,20$/);
    assert.match(csv[90] ?? '', /,1,40$/);
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { mode: string; steps: unknown[] };
    assert.equal(summary.mode, 'rps');
    assert.equal(summary.steps.length, 2);
    assert.match(formatRps(result), /^2\s+40\.00\s+60\s/m);
    assert.ok(lines.some((l) => l.startsWith('sent 90/90')), lines.join('\n'));
    // Deployed by the run, so deleted by it.
    assert.ok(!(await functionNames()).includes('rps-e2e'));
  });

  test('the CLI: a rate list to an existing process function, with path, method, header and body file; bad combinations refused', async () => {
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('rps-echo'))).status, 201);
    const dir = join(out, 'cli');
    const bodyFile = join(out, 'body.json');
    writeFileSync(bodyFile, '{"x":1}');
    const run = await cli([
      '--api', c.apiUrl, 'loadgen', 'rps', '--dataplane', c.dataPlaneUrl, '--function', 'rps-echo',
      '--rps', '10,20', '--step-seconds', '1', '--path', '/sleep?ms=30', '-X', 'POST', '--body-file', bodyFile, '-H', 'x-test: 1', '--out', dir,
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^1\s+10\.00\s+10\s/m);
    assert.match(run.stdout, /^2\s+20\.00\s+20\s/m);
    const rows = readFileSync(join(dir, 'invocations.csv'), 'utf8').trimEnd().split('\n').slice(1).map((l) => l.split(','));
    assert.equal(rows.length, 30);
    const col = (name: string): number => [...CSV_COLUMNS, 'step', 'targetRps'].indexOf(name);
    for (const row of rows) {
      assert.equal(row[col('status')], '200', row.join(','));
      // The path and its query reached the function: /sleep?ms=30 held every answer 30 ms.
      assert.ok(Number(row[col('responseMs')]) >= 29, row.join(','));
    }
    // An existing function is not deleted afterwards.
    assert.ok((await functionNames()).includes('rps-echo'));

    const refused = await cli(['--api', c.apiUrl, 'loadgen', 'rps', '--cold-sweep', '--function', 'rps-echo', '--rps', '1']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /CONFIG_INVALID/);
  });

  test('cold sweep at 1 and 2 cold starts/s: the functions are back at zero when called again; both points reported', async () => {
    const dir = join(out, 'cold');
    const lines: string[] = [];
    const stepMs = 10_000;
    const result = await runColdSweep({
      api: c.apiUrl,
      dataPlane: c.dataPlaneUrl,
      rates: [1, 2],
      stepMs,
      // Stable window 6 s + grace 0 + 3 s for the 200 ms reports and ticks and the drain.
      cooldownMarginSec: 3,
      outDir: dir,
      log: (l) => lines.push(l),
      progressIntervalMs: 0,
    });
    assert.equal(result.cooldownSec, 9);
    assert.deepEqual(
      result.steps.map((s) => [s.rate, s.functions, s.calls]),
      [
        [1, 9, 10],
        [2, 18, 20],
      ],
    );
    for (const s of result.steps) {
      const records = result.records.filter((r) => r.function.startsWith(`coldsweep-${s.step}-`));
      assert.equal(records.length, s.calls);
      for (const r of records) assert.equal(r.status, 200, `${r.function}: ${r.status} ${r.code}`);
      assert.equal(s.ok, s.calls);
      assert.equal(s.coldStarts, records.filter((r) => r.coldStart).length);
      assert.ok(s.coldFraction >= 0.8, `step ${s.step}: ${s.coldStarts}/${s.calls} cold`);
      assert.ok(s.achievedColdPerSec > 0 && s.achievedColdPerSec <= s.rate + 1e-9);
      assert.ok(s.latencyMs.p50 <= s.latencyMs.p99);
      // The calls that came back to a function after its cooldown found it at zero: a new sandbox.
      const byFunction = new Map<string, string[]>();
      for (const r of records) byFunction.set(r.function, [...(byFunction.get(r.function) ?? []), r.sandbox]);
      const repeats = [...byFunction.values()].filter((sandboxes) => sandboxes.length > 1);
      assert.equal(repeats.length, s.calls - s.functions, `step ${s.step}: functions called twice`);
      for (const sandboxes of repeats) assert.notEqual(sandboxes[0], sandboxes[1], `step ${s.step}: the second call reused sandbox ${sandboxes[0]}`);
    }
    const expected = findSaturation(
      result.steps.map((s) => ({ rate: s.rate, achievedColdPerSec: s.achievedColdPerSec, p99Ms: s.latencyMs.p99 })),
      result.saturationRule,
    );
    assert.deepEqual(result.saturation, expected ?? null);
    const table = formatColdSweep(result);
    assert.match(table, /^1\.00\s+9\s+10\s+10\s/m);
    assert.match(table, /^2\.00\s+18\s+20\s+20\s/m);
    assert.match(table, /saturat/);
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { mode: string; steps: { rate: number }[] };
    assert.equal(summary.mode, 'cold-sweep');
    assert.deepEqual(
      summary.steps.map((s) => s.rate),
      [1, 2],
    );
    assert.equal(readFileSync(join(dir, 'invocations.csv'), 'utf8').trimEnd().split('\n').length, 31);
    assert.ok(lines.some((l) => l.includes('step 2/2: 2 cold starts/s over 18 functions')), lines.join('\n'));
    assert.deepEqual(
      (await functionNames()).filter((n) => n.startsWith('coldsweep-')),
      [],
    );
  });
});
