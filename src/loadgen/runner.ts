// The open-loop replay of a schedule against a cluster (`baton loadgen
// trace`): deploys one function per trace function (`trace-<i>`), sends every
// invocation at its time through the data plane without waiting for earlier
// answers, records each answer, and summarises. See docs/loadgen.md.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient } from '../cli/client.js';
import { BatonError } from '../shared/errors.js';
import type { Schedule } from './schedule.js';
import { deleteFunctions, deployFunction, sendOpenLoop, writeCsv } from './sender.js';
import { summarise, type InvocationRecord, type Summary } from './summary.js';

export const TRACE_RUNTIMES = ['emulated', 'process'] as const;
export type TraceRuntime = (typeof TRACE_RUNTIMES)[number];

/** The compiled built-in trace function, run by the process runtime. */
export const TRACE_FUNCTION_PATH = fileURLToPath(new URL('./trace-function.js', import.meta.url));

export { LAG_WARNING_MS } from './sender.js';

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

export function functionSpec(name: string, runtime: TraceRuntime, scaling: Record<string, number> | undefined, maxMemoryMb: number): Record<string, unknown> {
  const spec: Record<string, unknown> = { name, runtime };
  if (scaling && Object.keys(scaling).length > 0) spec.scaling = scaling;
  if (runtime === 'process') {
    spec.command = [process.execPath, TRACE_FUNCTION_PATH];
    // The sandbox allocates up to this much per request, plus Node's own ~50 MiB.
    spec.resources = { memoryMb: Math.max(128, Math.ceil(maxMemoryMb) + 64) };
  }
  return spec;
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
  for (const [i, name] of names.entries()) await deployFunction(client, functionSpec(name, runtime, options.scaling, maxMemory[i] ?? 0));

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

  try {
    await sendOpenLoop(
      records,
      (r) => {
        const query = runtime === 'process' ? `?ms=${r.requestedDurationMs}&mem=${r.memoryMb}` : '';
        const headers: Record<string, string> = runtime === 'emulated' ? { 'x-baton-emulate-ms': String(r.requestedDurationMs) } : {};
        return { method: 'GET', path: `/fn/${r.function}/${query}`, headers };
      },
      { dataPlane, connections: options.connections, log, progressIntervalMs: options.progressIntervalMs },
    );
  } finally {
    if (!options.keep) await deleteFunctions(client, names, log);
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
