// What every open-loop mode of the load generator shares (`baton loadgen
// trace` and `baton loadgen rps`): sending a list of timed invocations through
// the data plane without waiting for answers, reading each answer into its
// InvocationRecord (status, Baton's error code, queue time, sandbox, cold
// start), deploying and deleting the generator's own functions, and writing
// the per-invocation CSV. Moved here from runner.ts so the modes cannot drift
// apart in how they measure.
import { createWriteStream } from 'node:fs';
import { Pool } from 'undici';
import type { AdminClient } from '../cli/client.js';
import { toBatonError } from '../shared/errors.js';
import { csvHeader, csvRow, type InvocationRecord } from './summary.js';

/** A warning line is printed when a send leaves later than this. */
export const LAG_WARNING_MS = 100;

/** One request of an invocation, as the sender puts it on the wire to the data plane. */
export interface OpenLoopRequest {
  readonly method: string;
  /** From the data plane's root, e.g. `/fn/<name>/?ms=5`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

export interface OpenLoopProgress {
  readonly sent: number;
  readonly answered: number;
  readonly total: number;
  /** Since the first send was due, ms. */
  readonly elapsedMs: number;
  /** The lag of the latest send, ms. */
  readonly lastLagMs: number;
  readonly maxLagMs: number;
}

export interface OpenLoopOptions {
  /** http://host:port, no trailing slash needed. */
  readonly dataPlane: string;
  /** Most connections to the data plane (default 4096). */
  readonly connections?: number;
  /** Warning lines, and progress lines unless `progress` is given. */
  readonly log: (line: string) => void;
  /** Progress interval, ms (default 1000; 0 for none). */
  readonly progressIntervalMs?: number;
  /** Called every progress interval and once at the end; default: a `sent X/Y, answered Z, max lag N ms` line to log. */
  readonly progress?: (p: OpenLoopProgress) => void;
  /**
   * Given once, as sending starts, a reader of the progress so far, for a
   * caller that draws its progress itself (then set progressIntervalMs 0).
   */
  readonly watch?: (read: () => OpenLoopProgress) => void;
  /**
   * Sandboxes already seen, as `function/sandbox`: an answer from one of them
   * is never a cold start. Shared across calls when a run sends in several parts.
   */
  readonly seenSandboxes?: Set<string>;
}

function parseNumber(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : Number.NaN;
  return Number.isFinite(n) ? n : -1;
}

/**
 * Sends every record's request at its `scheduledMs` (from the call's start),
 * never waiting for earlier answers, and fills in the record from its answer.
 * `records` must be sorted by scheduledMs. Resolves once every answer is in,
 * with the largest lag of any send.
 */
export async function sendOpenLoop(
  records: readonly InvocationRecord[],
  requestOf: (r: InvocationRecord) => OpenLoopRequest,
  options: OpenLoopOptions,
): Promise<{ maxLagMs: number }> {
  const log = options.log;
  const pool = new Pool(options.dataPlane.replace(/\/+$/, ''), {
    connections: options.connections ?? 4096,
    pipelining: 1,
    // Queueing for a cold start and a 60 s function both fit; the data plane's own timeout answers first.
    headersTimeout: 10 * 60_000,
    bodyTimeout: 10 * 60_000,
  });
  const seenSandboxes = options.seenSandboxes ?? new Set<string>();
  let start = 0;
  let sent = 0;
  let answered = 0;
  let maxLag = 0;
  let lastLag = 0;
  let lastWarning = -Infinity;

  const send = async (r: InvocationRecord): Promise<void> => {
    const req = requestOf(r);
    const t0 = performance.now();
    r.sentMs = t0 - start;
    try {
      const res = await pool.request({ method: req.method, path: req.path, headers: req.headers ?? {}, body: req.body });
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

  const intervalMs = options.progressIntervalMs ?? 1000;
  const report =
    options.progress ?? ((p: OpenLoopProgress) => log(`sent ${p.sent}/${p.total}, answered ${p.answered}, max lag ${Math.round(p.maxLagMs)} ms`));
  const snapshot = (): OpenLoopProgress => ({
    sent,
    answered,
    total: records.length,
    elapsedMs: performance.now() - start,
    lastLagMs: lastLag,
    maxLagMs: maxLag,
  });
  const inFlight: Promise<void>[] = [];
  const progress = intervalMs > 0 ? setInterval(() => report(snapshot()), intervalMs) : undefined;
  start = performance.now();
  options.watch?.(snapshot);
  try {
    let next = 0;
    while (next < records.length) {
      const now = performance.now() - start;
      const due = records[next]?.scheduledMs ?? 0;
      if (due > now) {
        // Sleep until the next send (timers fire ≥ 1 ms late; the lag column shows it).
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - now)));
        continue;
      }
      // Send everything that is due, without waiting for any answer.
      while (next < records.length && (records[next]?.scheduledMs ?? 0) <= performance.now() - start) {
        const r = records[next];
        next++;
        if (r === undefined) continue;
        const lag = performance.now() - start - r.scheduledMs;
        lastLag = lag;
        if (lag > maxLag) maxLag = lag;
        if (lag > LAG_WARNING_MS && performance.now() - lastWarning > 1000) {
          lastWarning = performance.now();
          log(`warning: behind schedule by ${Math.round(lag)} ms (invocation ${r.index} of ${r.function})`);
        }
        inFlight.push(send(r));
        sent++;
      }
    }
    await Promise.all(inFlight);
  } finally {
    if (progress) clearInterval(progress);
    if (intervalMs !== 0) report(snapshot());
    await pool.close();
  }
  return { maxLagMs: maxLag };
}

/** Creates a function; one left over from an earlier run (e.g. with --keep) is replaced, so the spec is this run's. */
export async function deployFunction(client: AdminClient, spec: Record<string, unknown>): Promise<void> {
  try {
    await client.call('POST', '/v1/functions', spec);
  } catch (err) {
    if (toBatonError(err).code !== 'FUNCTION_EXISTS') throw err;
    await client.call('DELETE', `/v1/functions/${encodeURIComponent(String(spec.name))}`);
    await client.call('POST', '/v1/functions', spec);
  }
}

/** Deletes the functions, logging (not throwing) what could not be deleted, so cleanup goes on. */
export async function deleteFunctions(client: AdminClient, names: readonly string[], log: (line: string) => void): Promise<void> {
  for (const name of names) {
    try {
      await client.call('DELETE', `/v1/functions/${encodeURIComponent(name)}`);
    } catch (err) {
      log(`warning: could not delete ${name}: ${toBatonError(err).message}`);
    }
  }
}

/**
 * Writes the records as CSV (CSV_COLUMNS), with `extra` columns after them
 * whose values `extraOf` gives per record.
 */
export async function writeCsv(
  path: string,
  records: readonly InvocationRecord[],
  extra: { columns: readonly string[]; of: (r: InvocationRecord) => readonly (string | number | boolean)[] } | undefined = undefined,
): Promise<void> {
  const out = createWriteStream(path);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  out.write(csvHeader(extra?.columns));
  for (const r of records) {
    if (!out.write(csvRow(r, extra?.of(r)))) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end();
  await done;
}
