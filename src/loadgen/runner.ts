// The open-loop replay of a schedule against a cluster (`baton loadgen
// trace`): deploys one function per trace function (`trace-<i>`), sends every
// invocation at its time through the data plane without waiting for earlier
// answers, records each answer, polls the sandbox count, and summarises
// (summary.json, and report.html from report.ts). See docs/loadgen.md.
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient } from '../cli/client.js';
import { BatonError } from '../shared/errors.js';
import { Progress, type ProgressMode } from './progress.js';
import { renderReport, type SandboxSample } from './report.js';
import { pollIntervalMs, SandboxPoller } from './sandbox-poller.js';
import type { Schedule } from './schedule.js';
import { deleteFunctions, deployFunction, sendOpenLoop, writeCsv } from './sender.js';
import { summarise, type InvocationRecord, type Summary } from './summary.js';

export const TRACE_RUNTIMES = ['emulated', 'process', 'node', 'oci'] as const;
export type TraceRuntime = (typeof TRACE_RUNTIMES)[number];

/** The compiled built-in trace function, run by the process and oci runtimes. */
export const TRACE_FUNCTION_PATH = fileURLToPath(new URL('./trace-function.js', import.meta.url));
/** The same as a handler for the node runtime, `file.export` in TRACE_FUNCTION_PATH's directory. */
export const TRACE_HANDLER = 'trace-handler.handler';

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
  /** Where to write invocations.csv, summary.json and report.html; nothing is written without it. */
  readonly outDir?: string | undefined;
  /** Progress and warning lines (default: stderr). */
  readonly log?: (line: string) => void;
  /** Progress interval, ms (default 1000; 0 for none). */
  readonly progressIntervalMs?: number;
  /**
   * `bar`: a bar redrawn in place on stderr; `lines`: a line per interval
   * through `log`; `none`. Default: `bar` when stderr is a terminal and no
   * `log` is given, else `lines`.
   */
  readonly progress?: ProgressMode;
  /**
   * With the emulated runtime, make each request hold its drawn memory
   * (`x-baton-emulate-mb`, default false). Off by default because every
   * emulated sandbox lives in the worker's one process: hundreds of MiB
   * page-faulted there per request measure the machine's page faults (8-13
   * ms per MiB on these VMs) and stall the worker, not the cluster. The other
   * runtimes always allocate it, in the sandbox's own process.
   */
  readonly emulateMemory?: boolean;
  /** A line under the report's heading (the CLI puts the trace and options there). */
  readonly reportSubtitle?: string;
  /** Most connections to the data plane (default 4096). */
  readonly connections?: number;
}

export interface RunResult {
  readonly records: readonly InvocationRecord[];
  readonly summary: Summary;
  readonly functions: readonly string[];
  /** The trace functions' ready sandboxes as polled during the replay. */
  readonly sandboxes: readonly SandboxSample[];
  readonly csvPath?: string;
  readonly summaryPath?: string;
  readonly reportPath?: string;
}

export function traceFunctionName(index: number): string {
  return `trace-${index}`;
}

/** The directory of Baton's package.json above `from`: the root of the install (or the checkout). */
export function packageRoot(from: string): string {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new BatonError('INTERNAL', `no package.json above ${from}`);
  }
}

export function functionSpec(name: string, runtime: TraceRuntime, scaling: Record<string, number> | undefined, maxMemoryMb: number): Record<string, unknown> {
  const spec: Record<string, unknown> = { name, runtime };
  if (scaling && Object.keys(scaling).length > 0) spec.scaling = scaling;
  // The sandbox allocates up to this much per request, plus Node's own ~50 MiB.
  const withNode = { memoryMb: Math.max(128, Math.ceil(maxMemoryMb) + 64) };
  if (runtime === 'emulated') {
    // The emulated sandbox caps x-baton-emulate-mb at memoryMb; no Node of its own to add.
    spec.resources = { memoryMb: Math.max(128, Math.ceil(maxMemoryMb)) };
  } else if (runtime === 'process') {
    spec.command = [process.execPath, TRACE_FUNCTION_PATH];
    spec.resources = withNode;
  } else if (runtime === 'node') {
    spec.handler = TRACE_HANDLER;
    spec.workdir = dirname(TRACE_FUNCTION_PATH);
    spec.resources = withNode;
  } else {
    // oci binds the workdir at /function. The package root, not the script's
    // own directory: Node finds "type": "module" in its package.json, and the
    // script's imports beside it come along.
    const root = packageRoot(TRACE_FUNCTION_PATH);
    spec.command = [process.execPath, `/function/${relative(root, TRACE_FUNCTION_PATH)}`];
    spec.workdir = root;
    // The limit is enforced here (an OOM kill past it): room for two allocations, since a
    // dropped Buffer is freed at the next garbage collection, which may come after the next
    // request's allocation. A whole core: the default 100 millicores would stretch every spin tenfold.
    spec.resources = { memoryMb: Math.max(128, 2 * Math.ceil(maxMemoryMb) + 64), cpuMillis: 1000 };
  }
  return spec;
}

/**
 * Fails early, and says why, when no worker offers the runtime: the
 * functions would deploy and every invocation fail.
 */
async function requireRuntime(client: AdminClient, runtime: TraceRuntime, log: (line: string) => void): Promise<void> {
  const { workers } = await client.call<{ workers?: { runtimes?: unknown; status?: unknown }[] }>('GET', '/v1/workers');
  const offered = new Set((workers ?? []).flatMap((w) => (Array.isArray(w.runtimes) ? (w.runtimes as string[]) : [])));
  if (!offered.has(runtime)) {
    const how: Record<TraceRuntime, string> = {
      emulated: 'start emulated workers (`baton up --emulate N`)',
      process: 'start a worker with the process runtime',
      node: 'start a worker offering node (`runtimes: [node]`)',
      oci: 'oci needs a worker running as root with runc installed (docs/runtimes.md#oci)',
    };
    throw new BatonError(
      'UNSUPPORTED_RUNTIME',
      `--runtime ${runtime}: no worker of the cluster offers "${runtime}" (offered: ${[...offered].sort().join(', ') || 'none'}); ${how[runtime]}`,
    );
  }
  if (runtime === 'oci') {
    const node = realpathSync(process.execPath);
    // The container sees the host's /usr, and the prefix of the Node the worker runs on (docs/runtimes.md#oci).
    if (!node.startsWith('/usr/')) {
      log(`warning: --runtime oci: ${node} is not under /usr; it runs inside the container only if the worker runs on this same Node (it binds its own Node's prefix)`);
    }
  }
}

export async function runTrace(schedule: Schedule, options: RunOptions): Promise<RunResult> {
  const timeScale = options.timeScale ?? 1;
  if (!(timeScale > 0)) throw new BatonError('CONFIG_INVALID', `timeScale: must be above 0, got ${timeScale}`);
  const runtime = options.runtime ?? 'emulated';
  if (!TRACE_RUNTIMES.includes(runtime)) throw new BatonError('CONFIG_INVALID', `runtime: must be one of ${TRACE_RUNTIMES.join(', ')}, got ${String(runtime)}`);
  const log = options.log ?? ((line: string) => void process.stderr.write(line + '\n'));
  const client = new AdminClient({ api: options.api, token: options.token });
  const dataPlane = (options.dataPlane ?? (await client.dataPlaneUrl())).replace(/\/+$/, '');

  await requireRuntime(client, runtime, log);
  const emulateMemory = runtime === 'emulated' && options.emulateMemory === true;

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

  const progress = new Progress({
    mode: options.progress ?? (options.log === undefined && process.stderr.isTTY ? 'bar' : 'lines'),
    intervalMs: options.progressIntervalMs ?? 1000,
    log,
    terminal: process.stderr,
  });
  const scheduleEndMs = records[records.length - 1]?.scheduledMs ?? 0;
  // The poller's clock starts with the sender's (within a microsecond or so).
  let start = performance.now();
  const clock = (): number => performance.now() - start;
  const poller = new SandboxPoller(client, names, pollIntervalMs(timeScale), clock, (line) => progress.log(line));
  let sandboxes: SandboxSample[] = [];
  try {
    await sendOpenLoop(
      records,
      (r) => {
        const query = runtime === 'emulated' ? '' : `?ms=${r.requestedDurationMs}&mem=${r.memoryMb}`;
        const headers: Record<string, string> = {};
        if (runtime === 'emulated') headers['x-baton-emulate-ms'] = String(r.requestedDurationMs);
        if (emulateMemory) headers['x-baton-emulate-mb'] = String(Math.round(r.memoryMb));
        return { method: 'GET', path: `/fn/${r.function}/${query}`, headers };
      },
      {
        dataPlane,
        connections: options.connections,
        log: (line) => progress.log(line),
        progressIntervalMs: 0,
        watch: (read) => {
          start = performance.now();
          progress.start(() => {
            const p = read();
            return { total: p.total, sent: p.sent, answered: p.answered, elapsedMs: p.elapsedMs, scheduleEndMs, lagMs: p.lastLagMs, maxLagMs: p.maxLagMs };
          });
        },
      },
    );
  } finally {
    sandboxes = await poller.stop();
    progress.stop();
    if (!options.keep) await deleteFunctions(client, names, log);
  }

  const summary = summarise(records, { startMs: schedule.warmupMs * timeScale, endMs: schedule.durationMs * timeScale, timeScale });
  const result: { -readonly [K in keyof RunResult]: RunResult[K] } = { records, summary, functions: names, sandboxes };
  if (options.outDir !== undefined) {
    await mkdir(options.outDir, { recursive: true });
    result.csvPath = join(options.outDir, 'invocations.csv');
    result.summaryPath = join(options.outDir, 'summary.json');
    await writeCsv(result.csvPath, records);
    await writeFile(result.summaryPath, JSON.stringify(summary, null, 2) + '\n');
    result.reportPath = join(options.outDir, 'report.html');
    const subtitle = options.reportSubtitle;
    await writeFile(result.reportPath, renderReport({ records, summary, sandboxes, ...(subtitle === undefined ? {} : { subtitle }) }));
  }
  return result;
}
