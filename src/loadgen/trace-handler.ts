// The built-in trace function for `baton loadgen trace --runtime node`: the
// same work as trace-function.ts (trace-work.ts), as a Lambda-style handler
// for the node runtime (docs/runtimes.md#node). `?ms=` and `?mem=` arrive in
// the API Gateway event's query; the result is the JSON body.
import { TRACE_MAX_MB, TRACE_MAX_MS, traceParam, traceWork, type TraceWorkResult } from './trace-work.js';

interface TraceEvent {
  readonly queryStringParameters?: Readonly<Record<string, string | undefined>>;
}

// async, as the runtime expects a handler to be; the work itself blocks the
// process, as the trace's function did (one request at a time with the
// default containerConcurrency of 1).
export async function handler(event: TraceEvent): Promise<TraceWorkResult> {
  const q = event.queryStringParameters ?? {};
  return traceWork(traceParam(q.ms, TRACE_MAX_MS), traceParam(q.mem, TRACE_MAX_MB));
}
