// The open-loop replay of a schedule against a cluster (`baton loadgen
// trace`): deploys one function per trace function (`trace-<i>`), sends every
// invocation at its time through the data plane without waiting for earlier
// answers, records each answer, and summarises. See docs/loadgen.md.
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { AdminClient } from '../cli/client.js';
import { BatonError, toBatonError } from '../shared/errors.js';
import type { Schedule, ScheduledInvocation } from './schedule.js';
import { csvHeader, csvRow, summarise, type InvocationRecord, type Summary } from './summary.js';

export const TRACE_RUNTIMES = ['emulated', 'process'] as const;
export type TraceRuntime = (typeof TRACE_RUNTIMES)[number];

/** The compiled built-in trace function, run by the process runtime. */
export const TRACE_FUNCTION_PATH = fileURLToPath(new URL('./trace-function.js', import.meta.url));

/** A warning line is printed when a send leaves later than this. */
export const LAG_WARNING_MS = 100;

export interface RunOptions {
  readonly api: string;
  readonly token?: string | undefined;
  /** The data plane to send through, http://host:port. Default: the first one the control plane lists. */
  readonly dataPlane?: string | undefined;
  readonly runtime?: TraceRuntime;
  /**
   * Multiplies every time of the schedule (arrival times and durations): 0.01
   * replays a minute in 0.6 s. A test and debugging aid; 1 (default) is the real trace.
   */
  readonly timeScale?: number;
  /** Scaling settings for every deployed function (merged over Baton's defaults). */
  readonly scaling?: Record<string, number>;
  /** Keep the functions after the run (default: delete them). */
  readonly keep?: boolean;
  /** Where to write invocations.csv and summary.json; nothing is written without it. */
  readonly outDir?: string | undefined;
  /** Progress and warning lines (default: stderr). */
  readonly log?: (line: string) => void;
  /** Progress line interval, ms (default 1000; 0 for none). */
  readonly progressIntervalMs?: number;
  /** Most connections to the data plane (default 4096). */
  readonly connections?: number;
}

export interface RunResult {
  readonly records: readonly InvocationRecord[];
  readonly summary: Summary;
  readonly functions: readonly string[];
  readonly csvPath?: string;
  readonly summaryPath?: string;
}

export function traceFunctionName(index: number): string {
  return `trace-${index}`;
}

function functionSpec(name: string, runtime: TraceRuntime, scaling: Record<string, number> | undefined, maxMemoryMb: number): Record<string, unknown> {
  const spec: Record<string, unknown> = { name, runtime };
  if (scaling && Object.keys(scaling).length > 0) spec.scaling = scaling;
  if (runtime === 'process') {
    spec.command = [process.execPath, TRACE_FUNCTION_PATH];
    // The sandbox allocates up to this much per request, plus Node's own ~50 MiB.
    spec.resources = { memoryMb: Math.max(128, Math.ceil(maxMemoryMb) + 64) };
  }
  return spec;
}

async function deploy(client: AdminClient, spec: Record<string, unknown>): Promise<void> {
  try {
    await client.call('POST', '/v1/functions', spec);
  } catch (err) {
    if (toBatonError(err).code !== 'FUNCTION_EXISTS') throw err;
    // Left over from an earlier run with --keep: replace it, so the spec is this run's.
    await client.call('DELETE', `/v1/functions/${encodeURIComponent(String(spec.name))}`);
    await client.call('POST', '/v1/functions', spec);
  }
}

function parseNumber(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : Number.NaN;
  return Number.isFinite(n) ? n : -1;
}

export async function runTrace(schedule: Schedule, options: RunOptions): Promise<RunResult> {
  const timeScale = options.timeScale ?? 1;
  if (!(timeScale > 0)) throw new BatonError('CONFIG_INVALID', `timeScale: must be above 0, got ${timeScale}`);
  const runtime = options.runtime ?? 'emulated';
  if (!TRACE_RUNTIMES.includes(runtime)) throw new BatonError('CONFIG_INVALID', `runtime: must be one of ${TRACE_RUNTIMES.join(', ')}, got ${String(runtime)}`);
  const log = options.log ?? ((line: string) => void process.stderr.write(line + '\n'));
  const client = new AdminClient({ api: options.api, token: options.token });
  const dataPlane = (options.dataPlane ?? (await client.dataPlaneUrl())).replace(/\/+$/, '');

  const names = schedule.functions.map((_, i) => traceFunctionName(i));
  const maxMemory = new Array<number>(names.length).fill(0);
  for (const inv of schedule.invocations) maxMemory[inv.fn] = Math.max(maxMemory[inv.fn] ?? 0, inv.memoryMb);
  for (const [i, name] of names.entries()) await deploy(client, functionSpec(name, runtime, options.scaling, maxMemory[i] ?? 0));

  const pool = new Pool(dataPlane, {
    connections: options.connections ?? 4096,
    pipelining: 1,
    // Queueing for a cold start and a 60 s function both fit; the data plane's own timeout answers first.
    headersTimeout: 10 * 60_000,
    bodyTimeout: 10 * 60_000,
  });
  const seenSandboxes = new Set<string>();
  const records: InvocationRecord[] = schedule.invocations.map((inv, index) => ({
    index,
    function: names[inv.fn] ?? traceFunctionName(inv.fn),
    scheduledMs: inv.atMs * timeScale,
    sentMs: -1,
    responseMs: -1,
    status: 0,
    code: '',
    requestedDurationMs: Math.round(inv.durationMs * timeScale),
    measuredDurationMs: -1,
    memoryMb: inv.memoryMb,
    coldStart: false,
    queueMs: -1,
    sandbox: '',
    warmup: inv.warmup,
  }));

  let start = 0;
  let sent = 0;
  let answered = 0;
  let maxLag = 0;
  let lastWarning = -Infinity;

  const send = async (inv: ScheduledInvocation, r: InvocationRecord): Promise<void> => {
    const query = runtime === 'process' ? `?ms=${r.requestedDurationMs}&mem=${inv.memoryMb}` : '';
    const headers: Record<string, string> = runtime === 'emulated' ? { 'x-baton-emulate-ms': String(r.requestedDurationMs) } : {};
    const t0 = performance.now();
    r.sentMs = t0 - start;
    try {
      const res = await pool.request({ method: 'GET', path: `/fn/${r.function}/${query}`, headers });
      const text = await res.body.text();
      r.responseMs = performance.now() - t0;
      r.status = res.statusCode;
      r.queueMs = parseNumber(res.headers['x-baton-queue-ms']);
      const sandbox = res.headers['x-baton-sandbox'];
      r.sandbox = typeof sandbox === 'string' ? sandbox : '';
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        /* not JSON: nothing to read from it */
      }
      if (res.statusCode >= 200 && res.statusCode < 300) {
        const measured = body.measuredMs ?? body.heldMs;
        if (typeof measured === 'number') r.measuredDurationMs = measured;
      } else if (typeof body.code === 'string') {
        r.code = body.code;
      }
      if (r.sandbox !== '') {
        const key = `${r.function}/${r.sandbox}`;
        // Cold: it waited in the data plane's queue and was the first answer of a sandbox new to this run.
        r.coldStart = r.queueMs > 0 && !seenSandboxes.has(key);
        seenSandboxes.add(key);
      }
    } catch (err) {
      r.responseMs = performance.now() - t0;
      r.status = 0;
      r.code = (err as NodeJS.ErrnoException).code ?? (err as Error).name;
    } finally {
      answered++;
    }
  };

  const inFlight: Promise<void>[] = [];
  const progress =
    (options.progressIntervalMs ?? 1000) > 0
      ? setInterval(() => {
          log(`sent ${sent}/${records.length}, answered ${answered}, max lag ${Math.round(maxLag)} ms`);
        }, options.progressIntervalMs ?? 1000)
      : undefined;
  start = performance.now();
  try {
    const invocations = schedule.invocations;
    let next = 0;
    while (next < invocations.length) {
      const now = performance.now() - start;
      const due = records[next]?.scheduledMs ?? 0;
      if (due > now) {
        // Sleep until the next send (timers fire ≥ 1 ms late; the lag column shows it).
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - now)));
        continue;
      }
      // Send everything that is due, without waiting for any answer.
      while (next < invocations.length && (records[next]?.scheduledMs ?? 0) <= performance.now() - start) {
        const inv = invocations[next];
        const r = records[next];
        next++;
        if (inv === undefined || r === undefined) continue;
        const lag = performance.now() - start - r.scheduledMs;
        if (lag > maxLag) maxLag = lag;
        if (lag > LAG_WARNING_MS && performance.now() - lastWarning > 1000) {
          lastWarning = performance.now();
          log(`warning: behind schedule by ${Math.round(lag)} ms (invocation ${r.index} of ${r.function})`);
        }
        inFlight.push(send(inv, r));
        sent++;
      }
    }
    await Promise.all(inFlight);
  } finally {
    if (progress) clearInterval(progress);
    if (options.progressIntervalMs !== 0) log(`sent ${sent}/${records.length}, answered ${answered}, max lag ${Math.round(maxLag)} ms`);
    await pool.close();
    if (!options.keep) {
      for (const name of names) {
        try {
          await client.call('DELETE', `/v1/functions/${encodeURIComponent(name)}`);
        } catch (err) {
          log(`warning: could not delete ${name}: ${toBatonError(err).message}`);
        }
      }
    }
  }

  const summary = summarise(records, { startMs: schedule.warmupMs * timeScale, endMs: schedule.durationMs * timeScale, timeScale });
  const result: { records: InvocationRecord[]; summary: Summary; functions: string[]; csvPath?: string; summaryPath?: string } = {
    records,
    summary,
    functions: names,
  };
  if (options.outDir !== undefined) {
    await mkdir(options.outDir, { recursive: true });
    result.csvPath = join(options.outDir, 'invocations.csv');
    result.summaryPath = join(options.outDir, 'summary.json');
    await writeCsv(result.csvPath, records);
    await writeFile(result.summaryPath, JSON.stringify(summary, null, 2) + '\n');
  }
  return result;
}

async function writeCsv(path: string, records: readonly InvocationRecord[]): Promise<void> {
  const out = createWriteStream(path);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  out.write(csvHeader());
  for (const r of records) {
    if (!out.write(csvRow(r))) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end();
  await done;
}
