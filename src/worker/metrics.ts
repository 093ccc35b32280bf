// The worker's Prometheus metrics, served on its RPC port at GET /metrics.
// Counted once per sandbox event (create, failure, exit), never per request.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class WorkerMetrics {
  private readonly sandboxes: Gauge<'function'>;
  private readonly createSeconds: Histogram<'function' | 'runtime'>;
  private readonly createFailures: Counter<'function' | 'reason'>;
  private readonly exits: Counter<'function'>;
  private readonly readyByFunction = new Map<string, number>();

  constructor(registry: Registry) {
    this.sandboxes = new Gauge({
      name: 'baton_worker_sandboxes',
      help: 'Ready sandboxes on this worker, by function.',
      labelNames: ['function'],
      registers: [registry],
    });
    this.createSeconds = new Histogram({
      name: 'baton_worker_sandbox_create_seconds',
      help: 'Time from a create request to a passed readiness probe.',
      labelNames: ['function', 'runtime'],
      // Cold starts: busybox ~5 ms, Node ~30 ms, runc ~70 ms, slow runtimes seconds (DESIGN.md baselines).
      buckets: [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.createFailures = new Counter({
      name: 'baton_worker_sandbox_create_failures_total',
      help: 'Sandbox creations that failed, by function and reason.',
      labelNames: ['function', 'reason'],
      registers: [registry],
    });
    this.exits = new Counter({
      name: 'baton_worker_sandbox_exits_total',
      help: 'Ready sandboxes that exited without being deleted.',
      labelNames: ['function'],
      registers: [registry],
    });
  }

  sandboxReady(fn: string, runtime: string, seconds: number): void {
    this.createSeconds.observe({ function: fn, runtime }, seconds);
    this.setReady(fn, (this.readyByFunction.get(fn) ?? 0) + 1);
  }

  sandboxGone(fn: string): void {
    this.setReady(fn, Math.max(0, (this.readyByFunction.get(fn) ?? 0) - 1));
  }

  createFailed(fn: string, reason: string): void {
    this.createFailures.inc({ function: fn, reason });
  }

  sandboxExited(fn: string): void {
    this.exits.inc({ function: fn });
  }

  private setReady(fn: string, n: number): void {
    // A function with no sandbox left drops its series instead of reporting 0 forever.
    if (n === 0) {
      this.readyByFunction.delete(fn);
      this.sandboxes.remove({ function: fn });
    } else {
      this.readyByFunction.set(fn, n);
      this.sandboxes.set({ function: fn }, n);
    }
  }
}
