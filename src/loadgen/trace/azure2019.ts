// Reads a trace in the Azure Functions 2019 format, as InVitro's loader does
// (see ../shared/reference/workload-peers.md §1.1 and §2):
//
//   invocations.csv  HashOwner,HashApp,HashFunction,Trigger,<minute columns>  counts per minute
//   durations.csv    HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,
//                    percentile_Average_{0,1,25,50,75,99,100}                  milliseconds
//   memory.csv       HashOwner,HashApp,[HashFunction,]SampleCount,AverageAllocatedMb,
//                    AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}            MiB
//
// Columns are found by header name, never by position (column order differs
// between InVitro's files). Minute columns are the headers that are integers;
// they must be consecutive (InVitro's excerpts are labelled e.g. 540–689), and
// `Trigger` is optional. Durations join on HashFunction.
//
// Memory: the released Azure dataset (app_memory_percentiles.anon.d*.csv) is
// per *app* and has no HashFunction column; InVitro's `sampler preprocess`
// splits an app's memory evenly across its functions and writes a per-function
// memory.csv (which is what the sample in ../shared/traces has). So a memory
// file with HashFunction joins on it; one without joins on HashApp and divides
// each percentile by the number of the app's functions in invocations.csv, as
// the preprocessing does. There is no pct0 (dropped for a logging bug, per the
// dataset README); InVitro returns pct1 for quantiles ≤ 1 %, so the table gets
// a q=0 point equal to pct1.
//
// A function of invocations.csv without a durations or memory row is dropped
// and listed in `Trace.dropped`; real daily files do not cover the same
// functions, and a replay of the rest is still meaningful.

import { join } from 'node:path';
import {
  CsvHeader,
  type CsvRow,
  fileLines,
  numberField,
  readCsv,
  textField,
  traceError,
} from './csv.js';
import type { DroppedFunction, PercentileTable, Trace, TraceFunction } from './trace.js';

export const DURATION_PERCENTILES = [0, 1, 25, 50, 75, 99, 100] as const;
export const MEMORY_PERCENTILES = [1, 5, 25, 50, 75, 95, 99, 100] as const;

/** The three files' contents as line sources, and the names to report in errors. */
export interface Azure2019Sources {
  readonly invocations: AsyncIterable<string> | Iterable<string>;
  readonly durations: AsyncIterable<string> | Iterable<string>;
  readonly memory: AsyncIterable<string> | Iterable<string>;
  readonly names?: { invocations?: string; durations?: string; memory?: string };
}

/** Reads invocations.csv, durations.csv and memory.csv from a folder. */
export function readAzure2019Folder(dir: string): Promise<Trace> {
  return readAzure2019({
    invocations: fileLines(join(dir, 'invocations.csv')),
    durations: fileLines(join(dir, 'durations.csv')),
    memory: fileLines(join(dir, 'memory.csv')),
  });
}

interface InvocationRow {
  readonly hashOwner: string | undefined;
  readonly hashApp: string;
  readonly hashFunction: string;
  readonly trigger: string | undefined;
  readonly counts: number[];
}

export async function readAzure2019(sources: Azure2019Sources): Promise<Trace> {
  const invocationsName = sources.names?.invocations ?? 'invocations.csv';
  const durationsName = sources.names?.durations ?? 'durations.csv';
  const memoryName = sources.names?.memory ?? 'memory.csv';

  const { rows, minutes, firstMinuteLabel } = await readInvocations(sources.invocations, invocationsName);
  const durations = await readPercentileFile(sources.durations, durationsName, 'HashFunction', DURATION_PERCENTILES.map((p) => ({ q: p / 100, column: `percentile_Average_${p}` })));

  const functionsPerApp = new Map<string, number>();
  for (const row of rows) functionsPerApp.set(row.hashApp, (functionsPerApp.get(row.hashApp) ?? 0) + 1);
  const memory = await readMemory(sources.memory, memoryName);

  const functions: TraceFunction[] = [];
  const dropped: DroppedFunction[] = [];
  for (const row of rows) {
    const durationMs = durations.get(row.hashFunction);
    if (durationMs === undefined) {
      dropped.push({ hashFunction: row.hashFunction, reason: `no row in ${durationsName}` });
      continue;
    }
    let memoryMb: PercentileTable | undefined;
    if (memory.key === 'HashFunction') {
      memoryMb = memory.table.get(row.hashFunction);
    } else {
      const perApp = memory.table.get(row.hashApp);
      const share = functionsPerApp.get(row.hashApp) ?? 1;
      memoryMb = perApp?.map((point) => ({ q: point.q, value: point.value / share }));
    }
    if (memoryMb === undefined) {
      dropped.push({ hashFunction: row.hashFunction, reason: `no row in ${memoryName} for its ${memory.key === 'HashFunction' ? 'function' : 'app'}` });
      continue;
    }
    functions.push({
      hashOwner: row.hashOwner,
      hashApp: row.hashApp,
      hashFunction: row.hashFunction,
      trigger: row.trigger,
      invocationsPerMinute: row.counts,
      durationMs,
      // No pct0 in the data: InVitro's GenerateMemorySpec returns pct1 for quantiles ≤ 0.01.
      memoryMb: [{ q: 0, value: memoryMb[0]?.value ?? 0 }, ...memoryMb],
    });
  }
  return { format: 'azure2019', minutes, firstMinuteLabel, functions, dropped };
}

async function readInvocations(
  lines: AsyncIterable<string> | Iterable<string>,
  file: string,
): Promise<{ rows: InvocationRow[]; minutes: number; firstMinuteLabel: number }> {
  let header: CsvHeader | undefined;
  let columns: { owner: number | undefined; app: number; fn: number; trigger: number | undefined; minutes: number[] } | undefined;
  let firstMinuteLabel = 1;
  const rows: InvocationRow[] = [];
  const seen = new Map<string, number>();
  for await (const item of readCsv(lines, file)) {
    if (item instanceof CsvHeader) {
      header = item;
      const labelled = item.names
        .map((name, column) => ({ name, column }))
        .filter(({ name }) => /^\d+$/.test(name))
        .map(({ name, column }) => ({ label: Number(name), column }))
        .sort((a, b) => a.label - b.label);
      if (labelled.length === 0) throw traceError(file, 1, 'no minute columns (headers "1", "2", …)');
      labelled.forEach(({ label }, i) => {
        const expected = (labelled[0]?.label ?? 0) + i;
        if (label !== expected) throw traceError(file, 1, `minute columns are not consecutive: "${expected}" is missing`);
      });
      firstMinuteLabel = labelled[0]?.label ?? 1;
      columns = {
        owner: item.find('HashOwner'),
        app: item.require('HashApp'),
        fn: item.require('HashFunction'),
        trigger: item.find('Trigger'),
        minutes: labelled.map(({ column }) => column),
      };
      continue;
    }
    if (header === undefined || columns === undefined) continue;
    const h = header;
    const row: CsvRow = item;
    const hashFunction = textField(h, row, columns.fn);
    const earlier = seen.get(hashFunction);
    if (earlier !== undefined) {
      throw traceError(file, row.line, `column "HashFunction": ${hashFunction} already appears on line ${earlier}`);
    }
    seen.set(hashFunction, row.line);
    const counts = columns.minutes.map((column) => {
      const n = numberField(h, row, column, 'a count');
      if (!Number.isInteger(n) || n < 0) {
        throw traceError(file, row.line, `column "${h.names[column] ?? column}": "${row.fields[column] ?? ''}" is not a count`);
      }
      return n;
    });
    rows.push({
      hashOwner: columns.owner === undefined ? undefined : textField(h, row, columns.owner),
      hashApp: textField(h, row, columns.app),
      hashFunction,
      trigger: columns.trigger === undefined ? undefined : (row.fields[columns.trigger] ?? '').trim() || undefined,
      counts,
    });
  }
  return { rows, minutes: columns?.minutes.length ?? 0, firstMinuteLabel };
}

/** Reads a file of percentile rows keyed by `key`, checking each row's percentiles are numbers in order. */
async function readPercentileFile(
  lines: AsyncIterable<string> | Iterable<string>,
  file: string,
  key: string | ((header: CsvHeader) => string),
  points: readonly { q: number; column: string }[],
): Promise<Map<string, PercentileTable>> {
  const table = new Map<string, PercentileTable>();
  const firstLine = new Map<string, number>();
  let header: CsvHeader | undefined;
  let columns: { key: number; keyName: string; points: { q: number; column: number }[] } | undefined;
  for await (const item of readCsv(lines, file)) {
    if (item instanceof CsvHeader) {
      // Checked on the header itself, so a file with a missing column fails even without rows.
      header = item;
      const keyName = typeof key === 'string' ? key : key(item);
      columns = { key: item.require(keyName), keyName, points: points.map((p) => ({ q: p.q, column: item.require(p.column) })) };
      continue;
    }
    if (header === undefined || columns === undefined) continue;
    const h = header;
    const row = item;
    const id = textField(h, row, columns.key);
    const earlier = firstLine.get(id);
    if (earlier !== undefined) throw traceError(file, row.line, `column "${columns.keyName}": ${id} already appears on line ${earlier}`);
    firstLine.set(id, row.line);
    let previous = -Infinity;
    const percentiles = columns.points.map(({ q, column }) => {
      const value = numberField(h, row, column, 'a number');
      if (value < 0) throw traceError(file, row.line, `column "${h.names[column] ?? column}": "${row.fields[column] ?? ''}" is negative`);
      if (value < previous) {
        throw traceError(file, row.line, `column "${h.names[column] ?? column}": ${value} is below the previous percentile ${previous}`);
      }
      previous = value;
      return { q, value };
    });
    table.set(id, percentiles);
  }
  return table;
}

async function readMemory(
  lines: AsyncIterable<string> | Iterable<string>,
  file: string,
): Promise<{ key: 'HashFunction' | 'HashApp'; table: Map<string, PercentileTable> }> {
  let keyName: 'HashFunction' | 'HashApp' = 'HashApp';
  const table = await readPercentileFile(
    lines,
    file,
    (header) => (keyName = header.find('HashFunction') === undefined ? 'HashApp' : 'HashFunction'),
    MEMORY_PERCENTILES.map((p) => ({ q: p / 100, column: `AverageAllocatedMb_pct${p}` })),
  );
  return { key: keyName, table };
}
