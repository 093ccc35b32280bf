// The load generator: trace readers, the scheduler that turns a trace into
// timed invocations, and the HTML report of a replay. The CLI (`baton loadgen
// trace`) and the open-loop sender (runner.ts) build on these; see docs/loadgen.md.

export { readAzure2019, readAzure2019Folder, type Azure2019Sources } from './trace/azure2019.js';
export { readAzure2021, readAzure2021File } from './trace/azure2021.js';
export type { DroppedFunction, PercentilePoint, PercentileTable, Trace, TraceFunction } from './trace/trace.js';
export {
  buildSchedule,
  IAT_DISTRIBUTIONS,
  SCHEDULE_DEFAULTS,
  type IatDistribution,
  type Schedule,
  type ScheduledInvocation,
  type ScheduleOptions,
} from './schedule.js';
export { renderReport, type ReportInput, type SandboxSample } from './report.js';
