// `baton loadgen rps`: an open-loop constant or stepped rate to one function,
// and the cold-start sweep (Dirigent's Fig. 7), against a running cluster.
// The plans are rps.ts's (pure); sending and measuring are the shared
// sender's, as for `baton loadgen trace`. See docs/loadgen.md.
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdminClient } from '../cli/client.js';
import { BatonError } from '../shared/errors.js';
import { RESOURCE_DEFAULTS } from '../shared/spec.js';
import { functionSpec, TRACE_RUNTIMES, type TraceRuntime } from './runner.js';
import {
  buildRpsSchedule,
  coldCooldownSec,
  COLD_SWEEP_DEFAULTS,
  COLD_SWEEP_SCALING,
  findSaturation,
  planColdStep,
  sandboxRoom,
  type ColdStepPlan,
  type Saturation,
  type WorkerRoom,
} from './rps.js';
import type { IatDistribution } from './schedule.js';
import { deleteFunctions, deployFunction, sendOpenLoop, writeCsv, type OpenLoopRequest } from './sender.js';
import { summarise, type InvocationRecord, type Percentiles, type Summary } from './summary.js';

/** What each invocation sends; the path is below the function's root. */
export interface RpsRequest {
  readonly method?: string;
  /** Default `/`. */
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

interface CommonOptions {
  readonly api: string;
  readonly token?: string | undefined;
  /** Default: the first data plane the control plane lists. */
  readonly dataPlane?: string | undefined;
  /** Runtime of the functions this run deploys (default emulated). */
  readonly runtime?: TraceRuntime;
  readonly request?: RpsRequest;
  /** Where to write invocations.csv and summary.json; nothing is written without it. */
  readonly outDir?: string | undefined;
  /** Progress and warning lines (default: stderr). */
  readonly log?: (line: string) => void;
  /** Progress line interval, ms (default 1000; 0 for none). */
  readonly progressIntervalMs?: number;
  readonly connections?: number;
}

export interface RpsOptions extends CommonOptions {
  /** The function to call; it must exist unless `deploy`. */
  readonly function: string;
  /** Deploy the function (runtime `runtime`, Baton's default scaling) first; replaced if it exists. */
  readonly deploy?: boolean;
  /** Keep a deployed function afterwards (default: delete it). */
  readonly keep?: boolean;
  /** Requests per second of each step. */
  readonly rates: readonly number[];
  readonly stepMs: number;
  readonly iat: IatDistribution;
  readonly seed: number;
}

export interface RpsStepReport {
  readonly step: number;
  readonly targetRps: number;
  /** From the start of the run. */
  readonly startMs: number;
  readonly endMs: number;
  readonly summary: Summary;
}

export interface RpsResult {
  readonly mode: 'rps';
  readonly function: string;
  readonly steps: readonly RpsStepReport[];
  readonly maxLagMs: number;
  readonly records: readonly InvocationRecord[];
  readonly csvPath?: string;
  readonly summaryPath?: string;
}

export interface ColdSweepOptions extends CommonOptions {
  /** Target cold starts per second, one step each. */
  readonly rates: readonly number[];
  readonly stepMs: number;
  /** Overrides of COLD_SWEEP_SCALING (e.g. a longer stable window). */
  readonly scaling?: Readonly<Record<string, number>>;
  /** Seconds between two calls of one function; default: stable window + grace + margin. */
  readonly cooldownSec?: number;
  /** Default COLD_SWEEP_DEFAULTS.marginSec. */
  readonly cooldownMarginSec?: number;
  readonly saturationColdFraction?: number;
  readonly saturationP99Multiple?: number;
}

export interface ColdStepReport {
  readonly step: number;
  /** Target cold starts per second. */
  readonly rate: number;
  readonly functions: number;
  /** Time between two calls of one function. */
  readonly periodMs: number;
  readonly calls: number;
  readonly ok: number;
  /** Successful calls that were cold starts (the sender's rule). */
  readonly coldStarts: number;
  /** coldStarts / calls. */
  readonly coldFraction: number;
  /** coldStarts per second of the step (or of the time the sending took, when longer). */
  readonly achievedColdPerSec: number;
  readonly latencyMs: Percentiles;
  readonly failures: Readonly<Record<string, number>>;
  readonly maxLagMs: number;
}

export interface ColdSweepResult {
  readonly mode: 'cold-sweep';
  readonly runtime: TraceRuntime;
  readonly cooldownSec: number;
  readonly scaling: Readonly<Record<string, number>>;
  readonly saturationRule: { readonly coldFraction: number; readonly p99Multiple: number };
  readonly steps: readonly ColdStepReport[];
  readonly saturation: Saturation | null;
  readonly records: readonly InvocationRecord[];
  readonly csvPath?: string;
  readonly summaryPath?: string;
}

const STEP_COLUMNS = ['step', 'targetRps'] as const;

function logOf(options: CommonOptions): (line: string) => void {
  return options.log ?? ((line: string) => void process.stderr.write(line + '\n'));
}

function runtimeOf(options: CommonOptions): TraceRuntime {
  const runtime = options.runtime ?? 'emulated';
  if (!TRACE_RUNTIMES.includes(runtime)) throw new BatonError('CONFIG_INVALID', `runtime: must be one of ${TRACE_RUNTIMES.join(', ')}, got ${String(runtime)}`);
  return runtime;
}

/** The request builder for the sender: the user's method, path, headers and body, to /fn/<function><path>. */
function requestBuilder(request: RpsRequest | undefined): (r: InvocationRecord) => OpenLoopRequest {
  const path = request?.path ?? '/';
  const suffix = path.startsWith('/') ? path : `/${path}`;
  const method = request?.method ?? (request?.body === undefined ? 'GET' : 'POST');
  return (r) => ({ method, path: `/fn/${encodeURIComponent(r.function)}${suffix}`, headers: request?.headers ?? {}, body: request?.body });
}

function newRecord(index: number, fn: string, scheduledMs: number): InvocationRecord {
  return {
    index,
    function: fn,
    scheduledMs,
    sentMs: -1,
    responseMs: -1,
    status: 0,
    code: '',
    requestedDurationMs: 0,
    measuredDurationMs: -1,
    memoryMb: 0,
    coldStart: false,
    queueMs: -1,
    sandbox: '',
    warmup: false,
  };
}

async function writeResults(
  outDir: string | undefined,
  records: readonly InvocationRecord[],
  stepOf: (r: InvocationRecord) => { step: number; rate: number },
  summary: unknown,
): Promise<{ csvPath?: string; summaryPath?: string }> {
  if (outDir === undefined) return {};
  await mkdir(outDir, { recursive: true });
  const csvPath = join(outDir, 'invocations.csv');
  const summaryPath = join(outDir, 'summary.json');
  await writeCsv(csvPath, records, {
    columns: STEP_COLUMNS,
    of: (r) => {
      const s = stepOf(r);
      return [s.step, s.rate];
    },
  });
  await writeFile(summaryPath, JSON.stringify(summary, null, 2) + '\n');
  return { csvPath, summaryPath };
}

/** A constant or stepped open-loop rate to one function. */
export async function runRps(options: RpsOptions): Promise<RpsResult> {
  const log = logOf(options);
  const runtime = runtimeOf(options);
  const client = new AdminClient({ api: options.api, token: options.token });
  const dataPlane = options.dataPlane ?? (await client.dataPlaneUrl());
  const schedule = buildRpsSchedule({ rates: options.rates, stepMs: options.stepMs, iat: options.iat, seed: options.seed });
  const name = options.function;
  // Fails with FUNCTION_NOT_FOUND before any load is sent.
  if (options.deploy) await deployFunction(client, functionSpec(name, runtime, undefined, 0));
  else await client.call('GET', `/v1/functions/${encodeURIComponent(name)}`);

  const records = schedule.invocations.map((inv, index) => newRecord(index, name, inv.atMs));
  const stepOfIndex = schedule.invocations.map((inv) => inv.step);
  let maxLagMs = 0;
  try {
    ({ maxLagMs } = await sendOpenLoop(records, requestBuilder(options.request), {
      dataPlane,
      connections: options.connections,
      log,
      progressIntervalMs: options.progressIntervalMs,
    }));
  } finally {
    if (options.deploy && !options.keep) await deleteFunctions(client, [name], log);
  }

  const steps = schedule.steps.map((step) => ({
    step: step.index,
    targetRps: step.rps,
    startMs: step.startMs,
    endMs: step.endMs,
    summary: summarise(
      records.filter((r) => stepOfIndex[r.index] === step.index),
      { startMs: step.startMs, endMs: step.endMs, timeScale: 1 },
    ),
  }));
  const files = await writeResults(
    options.outDir,
    records,
    (r) => {
      const step = stepOfIndex[r.index] ?? 0;
      return { step, rate: schedule.steps[step]?.rps ?? 0 };
    },
    { mode: 'rps', function: name, iat: options.iat, seed: options.seed, maxLagMs, steps },
  );
  return { mode: 'rps', function: name, steps, maxLagMs, records, ...files };
}

export function coldSweepFunctionName(step: number, i: number): string {
  return `coldsweep-${step}-${i}`;
}

/** Says so before the sweep when its largest step has more functions than the workers have room for sandboxes. */
async function warnIfNoRoom(client: AdminClient, runtime: TraceRuntime, plans: readonly ColdStepPlan[], log: (line: string) => void): Promise<void> {
  const { workers } = await client.call<{ workers: WorkerRoom[] }>('GET', '/v1/workers');
  const spec = functionSpec('probe', runtime, undefined, 0);
  const resources = { ...RESOURCE_DEFAULTS, ...(spec.resources as Partial<typeof RESOURCE_DEFAULTS> | undefined) };
  const room = sandboxRoom(workers, runtime, resources);
  const largest = Math.max(...plans.map((p) => p.functions));
  if (largest > room) {
    log(
      `warning: the largest step keeps up to ${largest} sandboxes (one per function) but the ${runtime} workers have room for ${room} ` +
        `(${resources.cpuMillis}m CPU, ${resources.memoryMb} MiB each): expect NO_CAPACITY failures there; add workers or lower the rates`,
    );
  }
}

/** Runs fn over the items, at most `width` at a time. */
async function inBatches<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

/**
 * The cold-start sweep: for each rate R, deploys ceil(R × cooldown) functions
 * (COLD_SWEEP_SCALING), calls them in turn at R per second so each is called
 * once per cooldown, deletes them, and reports latency against the cold starts
 * really achieved, with the saturation point.
 */
export async function runColdSweep(options: ColdSweepOptions): Promise<ColdSweepResult> {
  const log = logOf(options);
  const runtime = runtimeOf(options);
  const client = new AdminClient({ api: options.api, token: options.token });
  const dataPlane = options.dataPlane ?? (await client.dataPlaneUrl());
  const scaling: Record<string, number> = { ...COLD_SWEEP_SCALING, ...options.scaling };
  const cooldownSec =
    options.cooldownSec ??
    coldCooldownSec(
      { stableWindowSec: scaling.stableWindowSec ?? COLD_SWEEP_SCALING.stableWindowSec, scaleToZeroGraceSec: scaling.scaleToZeroGraceSec ?? 0 },
      options.cooldownMarginSec,
    );
  const saturationRule = {
    coldFraction: options.saturationColdFraction ?? COLD_SWEEP_DEFAULTS.coldFraction,
    p99Multiple: options.saturationP99Multiple ?? COLD_SWEEP_DEFAULTS.p99Multiple,
  };
  // Every plan first, so a bad rate fails before anything is deployed.
  const plans = options.rates.map((rate) => planColdStep(rate, options.stepMs, cooldownSec));
  // Checked now too, for the same reason (findSaturation validates its rule).
  findSaturation([], saturationRule);
  await warnIfNoRoom(client, runtime, plans, log);
  const send = requestBuilder(options.request);
  const seenSandboxes = new Set<string>();
  const records: InvocationRecord[] = [];
  const stepOfIndex: number[] = [];
  const steps: ColdStepReport[] = [];

  for (const [step, plan] of plans.entries()) {
    const names = Array.from({ length: plan.functions }, (_, i) => coldSweepFunctionName(step, i));
    log(`cold sweep step ${step + 1}/${plans.length}: ${plan.rate} cold starts/s over ${names.length} functions, each called every ${(plan.periodMs / 1000).toFixed(1)} s`);
    const stepRecords = plan.calls.map((call, k) => newRecord(records.length + k, names[call.fn] ?? coldSweepFunctionName(step, call.fn), call.atMs));
    let maxLagMs = 0;
    try {
      await inBatches(names, 16, (name) => deployFunction(client, { ...functionSpec(name, runtime, undefined, 0), scaling }));
      ({ maxLagMs } = await sendOpenLoop(stepRecords, send, {
        dataPlane,
        connections: options.connections,
        log,
        progressIntervalMs: options.progressIntervalMs,
        seenSandboxes,
      }));
    } finally {
      await deleteFunctions(client, names, log);
    }
    for (const r of stepRecords) {
      records.push(r);
      stepOfIndex.push(step);
    }
    const summary = summarise(stepRecords, { startMs: 0, endMs: options.stepMs, timeScale: 1 });
    const coldStarts = stepRecords.filter((r) => r.coldStart && r.status >= 200 && r.status < 300).length;
    const lastSent = stepRecords.reduce((m, r) => Math.max(m, r.sentMs), 0);
    steps.push({
      step,
      rate: plan.rate,
      functions: plan.functions,
      periodMs: plan.periodMs,
      calls: stepRecords.length,
      ok: summary.invocations.ok,
      coldStarts,
      coldFraction: stepRecords.length > 0 ? coldStarts / stepRecords.length : Number.NaN,
      achievedColdPerSec: coldStarts / (Math.max(options.stepMs, lastSent) / 1000),
      latencyMs: summary.latencyMs,
      failures: summary.failures,
      maxLagMs,
    });
  }

  const saturation =
    findSaturation(
      steps.map((s) => ({ rate: s.rate, achievedColdPerSec: s.achievedColdPerSec, p99Ms: s.latencyMs.p99 })),
      saturationRule,
    ) ?? null;
  const report = { mode: 'cold-sweep' as const, runtime, cooldownSec, scaling, saturationRule, steps, saturation };
  const files = await writeResults(
    options.outDir,
    records,
    (r) => {
      const step = stepOfIndex[r.index] ?? 0;
      return { step, rate: steps[step]?.rate ?? 0 };
    },
    report,
  );
  return { ...report, records, ...files };
}

// ---- printing ---------------------------------------------------------------------

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ')).join('\n') + '\n';
}

function failureLines(steps: readonly { step: number; failures: Readonly<Record<string, number>> }[]): string {
  const lines = steps.flatMap((s) => Object.entries(s.failures).map(([key, n]) => `  step ${s.step + 1}: ${key}: ${n}`));
  return lines.length > 0 ? `\nfailures:\n${lines.join('\n')}\n` : '';
}

/** The per-step table of an rps run. */
export function formatRps(result: Pick<RpsResult, 'function' | 'steps' | 'maxLagMs'>): string {
  const rows = [['STEP', 'TARGET/s', 'SENT', 'ACHIEVED/s', 'OK', 'FAILED', 'P50 ms', 'P90 ms', 'P99 ms', 'COLD %']];
  for (const s of result.steps) {
    const m = s.summary;
    rows.push([
      String(s.step + 1),
      fmt(s.targetRps, 2),
      String(m.invocations.measured),
      fmt(m.rate.achievedPerSec, 2),
      String(m.invocations.ok),
      String(m.invocations.failed),
      fmt(m.latencyMs.p50),
      fmt(m.latencyMs.p90),
      fmt(m.latencyMs.p99),
      fmt(m.coldStartFraction * 100),
    ]);
  }
  return (
    `${result.function}: ${result.steps.length} step(s), max lag ${fmt(result.maxLagMs)} ms\n\n` +
    table(rows) +
    failureLines(result.steps.map((s) => ({ step: s.step, failures: s.summary.failures })))
  );
}

/** The sweep's table: latency against achieved cold starts per second, and the saturation point. */
export function formatColdSweep(result: Pick<ColdSweepResult, 'runtime' | 'cooldownSec' | 'steps' | 'saturation' | 'saturationRule'>): string {
  const r = result.saturationRule;
  const rows = [['TARGET cold/s', 'FUNCTIONS', 'CALLS', 'OK', 'COLD %', 'ACHIEVED cold/s', 'P50 ms', 'P99 ms', 'MAX LAG ms']];
  for (const s of result.steps) {
    rows.push([
      fmt(s.rate, 2),
      String(s.functions),
      String(s.calls),
      String(s.ok),
      fmt(s.coldFraction * 100),
      fmt(s.achievedColdPerSec, 2),
      fmt(s.latencyMs.p50),
      fmt(s.latencyMs.p99),
      fmt(s.maxLagMs),
    ]);
  }
  const verdict = result.saturation
    ? `saturates at ${result.saturation.rate} cold starts/s: ${result.saturation.reason}`
    : `no saturation up to ${Math.max(...result.steps.map((s) => s.rate))} cold starts/s`;
  // A call that found its sandbox still up is warm: the sweep then measures less than it claims.
  const warm = result.steps
    .filter((s) => s.ok > 0 && s.coldStarts < r.coldFraction * s.ok)
    .map(
      (s) =>
        `note: at ${s.rate}/s only ${fmt(s.coldFraction * 100)}% of the calls were cold starts; ` +
        'if functions were still up when called again, raise --cooldown (or --cooldown-margin)\n',
    )
    .join('');
  return (
    `cold-start sweep, ${result.runtime} runtime, each function called every ≥ ${fmt(result.cooldownSec)} s\n\n` +
    table(rows) +
    failureLines(result.steps) +
    (warm === '' ? '' : `\n${warm}`) +
    `\n${verdict} (rule: achieved < ${Math.round(r.coldFraction * 100)}% of target, or p99 > ${r.p99Multiple}× the lowest rate's)\n`
  );
}

/** --body-file's content, read once. */
export function readBody(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BatonError('CONFIG_INVALID', `--body-file ${path}: ${(err as Error).message}`);
  }
}
