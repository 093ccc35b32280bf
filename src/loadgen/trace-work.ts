// What the built-in trace function does per request, shared by its two forms:
// the HTTP server for the process and oci runtimes (trace-function.ts) and the
// handler for the node runtime (trace-handler.ts). As InVitro's trace
// function: allocate the requested memory (touching every page, so it is
// really used), then spin the CPU until the requested time has passed in all
// (the allocation counts).

const PAGE = 4096;
export const TRACE_MAX_MS = 3_600_000;
export const TRACE_MAX_MB = 10_240;

/** A query parameter as a number in (0, max]; 0 when absent, not a number or not positive. */
export function traceParam(value: string | null | undefined, max: number): number {
  const n = Number(value ?? '0');
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : 0;
}

export interface TraceWorkResult {
  readonly requestedMs: number;
  /** From the start of the allocation to the end of the spin; above requestedMs when touching the memory took longer. */
  readonly measuredMs: number;
  readonly allocMs: number;
  readonly memoryMb: number;
  /** The spin's result, returned so the loop cannot be optimised away. */
  readonly spins: number;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Allocates memMb MiB, touches every page, spins until requestedMs have passed, then lets the memory go. Blocks the thread. */
export function traceWork(requestedMs: number, memMb: number): TraceWorkResult {
  const began = performance.now();
  let memory: Buffer | undefined = memMb > 0 ? Buffer.allocUnsafe(Math.round(memMb * 1024 * 1024)) : undefined;
  if (memory) for (let i = 0; i < memory.length; i += PAGE) memory[i] = 1;
  const allocMs = round3(performance.now() - began);
  // A busy loop, so the time is CPU time as the trace's function used it.
  let x = 0;
  while (performance.now() - began < requestedMs) x = (x + 1) % 1_000_003;
  memory = undefined;
  return { requestedMs, measuredMs: round3(performance.now() - began), allocMs, memoryMb: memMb, spins: x };
}
