// The control plane's Prometheus metrics.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { countPhases, type FunctionState } from './function-state.js';

export interface ControlPlaneMetrics {
  registry: Registry;
  sandboxCreateSeconds: Histogram<'function'>;
  sandboxCreateFailures: Counter<'function'>;
  desiredScale: Gauge<'function'>;
  readySandboxes: Gauge<'function'>;
  /** Sandboxes by phase (starting, ready, draining). */
  sandboxes: Gauge<'function' | 'phase'>;
  /** The autoscaler's window averages. */
  concurrency: Gauge<'function' | 'window'>;
  panicking: Gauge<'function'>;
  workers: Gauge<'status'>;
  dataPlanes: Gauge;
  /** Sets the per-function gauges from the function's state (on every scaling tick). */
  observeFunction(fn: FunctionState): void;
  /** Drops a deleted function's series. */
  forgetFunction(name: string): void;
}

export function createControlPlaneMetrics(registry: Registry): ControlPlaneMetrics {
  const m: Omit<ControlPlaneMetrics, 'observeFunction' | 'forgetFunction'> = {
    registry,
    sandboxCreateSeconds: new Histogram({
      name: 'baton_sandbox_create_seconds',
      help: 'Time from placement to a ready sandbox, as the control plane sees it',
      labelNames: ['function'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    sandboxCreateFailures: new Counter({
      name: 'baton_sandbox_create_failures_total',
      help: 'Sandbox creations that failed',
      labelNames: ['function'],
      registers: [registry],
    }),
    desiredScale: new Gauge({ name: 'baton_function_desired_scale', help: 'Desired sandboxes per function', labelNames: ['function'], registers: [registry] }),
    readySandboxes: new Gauge({ name: 'baton_function_ready_sandboxes', help: 'Ready sandboxes per function', labelNames: ['function'], registers: [registry] }),
    sandboxes: new Gauge({
      name: 'baton_function_sandboxes',
      help: 'Sandboxes per function by phase',
      labelNames: ['function', 'phase'],
      registers: [registry],
    }),
    concurrency: new Gauge({
      name: 'baton_function_concurrency',
      help: "Requests in flight or queued, averaged over the autoscaler's stable or panic window",
      labelNames: ['function', 'window'],
      registers: [registry],
    }),
    panicking: new Gauge({ name: 'baton_function_panic', help: '1 while the function\'s autoscaler is in panic mode', labelNames: ['function'], registers: [registry] }),
    workers: new Gauge({ name: 'baton_workers', help: 'Registered workers by status', labelNames: ['status'], registers: [registry] }),
    dataPlanes: new Gauge({ name: 'baton_data_planes', help: 'Registered data planes', registers: [registry] }),
  };
  return {
    ...m,
    observeFunction(fn) {
      const f = { function: fn.spec.name };
      const phases = countPhases(fn);
      m.desiredScale.set(f, fn.desired);
      m.readySandboxes.set(f, phases.ready);
      for (const [phase, n] of Object.entries(phases)) m.sandboxes.set({ ...f, phase }, n);
      const d = fn.decision;
      if (d) {
        m.concurrency.set({ ...f, window: 'stable' }, d.stableConcurrency);
        m.concurrency.set({ ...f, window: 'panic' }, d.panicConcurrency);
        m.panicking.set(f, d.panicking ? 1 : 0);
      }
    },
    forgetFunction(name) {
      // remove() matches a whole label set, so every combination is named.
      const f = { function: name };
      for (const g of [m.desiredScale, m.readySandboxes, m.panicking]) g.remove(f);
      for (const phase of ['starting', 'ready', 'draining']) m.sandboxes.remove({ ...f, phase });
      for (const window of ['stable', 'panic']) m.concurrency.remove({ ...f, window });
      m.sandboxCreateSeconds.remove(f);
      m.sandboxCreateFailures.remove(f);
    },
  };
}
