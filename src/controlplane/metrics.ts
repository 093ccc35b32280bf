// The control plane's Prometheus metrics.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ControlPlaneMetrics {
  registry: Registry;
  sandboxCreateSeconds: Histogram<'function'>;
  sandboxCreateFailures: Counter<'function'>;
  desiredScale: Gauge<'function'>;
  readySandboxes: Gauge<'function'>;
  workers: Gauge<'status'>;
  dataPlanes: Gauge;
}

export function createControlPlaneMetrics(registry: Registry): ControlPlaneMetrics {
  return {
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
    workers: new Gauge({ name: 'baton_workers', help: 'Registered workers by status', labelNames: ['status'], registers: [registry] }),
    dataPlanes: new Gauge({ name: 'baton_data_planes', help: 'Registered data planes', registers: [registry] }),
  };
}
