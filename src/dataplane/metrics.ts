// The data plane's Prometheus metrics, served on the RPC port's /metrics.
//
// The hot path only bumps plain numbers on FunctionState (responses by
// status class, inFlight, the queue's length); prom-client reads them at
// scrape time through collect() callbacks. A prom-client counter updated per
// request hashes its labels on every inc(), which we would pay at 30k req/s.
// Only queued requests, which have already waited, touch prom-client
// directly (the cold-start wait histogram).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ErrorCode } from '../shared/errors.js';
import { createMetricsRegistry } from '../shared/metrics.js';
import type { FunctionState } from './function-table.js';

const STATUS_CLASS_LABELS = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'];

export class DataPlaneMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<'function' | 'status_class'>;
  private readonly unrouted: Counter<'status_class'>;
  private readonly upstreamErrors: Counter<'function' | 'code'>;
  private readonly coldStartWait: Histogram<'function'>;
  /** What the requests counter has already been told, per function. */
  private readonly counted = new WeakMap<FunctionState, number[]>();
  private readonly unroutedCounts = new Array<number>(STATUS_CLASS_LABELS.length).fill(0);
  private readonly unroutedCounted = new Array<number>(STATUS_CLASS_LABELS.length).fill(0);

  constructor(functions: () => Iterable<FunctionState>) {
    const registry = createMetricsRegistry('dataplane');
    this.registry = registry;
    const flushAll = (): void => {
      for (const fn of functions()) this.flush(fn);
      this.flushUnrouted();
    };
    this.requests = new Counter({
      name: 'baton_dataplane_requests_total',
      help: 'Requests answered, by function and HTTP status class.',
      labelNames: ['function', 'status_class'],
      registers: [registry],
      collect: flushAll,
    });
    this.unrouted = new Counter({
      name: 'baton_dataplane_unrouted_requests_total',
      help: 'Requests that named no known function (404) or were health checks, by status class.',
      labelNames: ['status_class'],
      registers: [registry],
      collect: () => this.flushUnrouted(),
    });
    this.upstreamErrors = new Counter({
      name: 'baton_dataplane_upstream_errors_total',
      help: 'Requests that failed between the data plane and a sandbox, by function and Baton error code.',
      labelNames: ['function', 'code'],
      registers: [registry],
    });
    new Gauge({
      name: 'baton_dataplane_queue_length',
      help: 'Requests waiting in the cold-start queue, by function.',
      labelNames: ['function'],
      registers: [registry],
      collect() {
        this.reset();
        for (const fn of functions()) this.set({ function: fn.name }, fn.queued);
      },
    });
    new Gauge({
      name: 'baton_dataplane_in_flight',
      help: 'Requests being served by a sandbox, by function.',
      labelNames: ['function'],
      registers: [registry],
      collect() {
        this.reset();
        for (const fn of functions()) this.set({ function: fn.name }, fn.inFlight);
      },
    });
    new Gauge({
      name: 'baton_dataplane_endpoints',
      help: 'Routable sandboxes, by function.',
      labelNames: ['function'],
      registers: [registry],
      collect() {
        this.reset();
        for (const fn of functions()) this.set({ function: fn.name }, fn.endpoints.length);
      },
    });
    this.coldStartWait = new Histogram({
      name: 'baton_dataplane_cold_start_wait_seconds',
      help: 'Time queued requests waited for a sandbox or a token.',
      labelNames: ['function'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
  }

  /** Moves a function's response counts into the counter (also when it is removed). */
  flush(fn: FunctionState): void {
    let seen = this.counted.get(fn);
    if (!seen) {
      seen = new Array<number>(fn.responses.length).fill(0);
      this.counted.set(fn, seen);
    }
    for (let c = 0; c < fn.responses.length; c++) {
      const delta = (fn.responses[c] as number) - (seen[c] as number);
      if (delta > 0) {
        this.requests.inc({ function: fn.name, status_class: STATUS_CLASS_LABELS[c] ?? 'other' }, delta);
        seen[c] = fn.responses[c] as number;
      }
    }
  }

  countUnrouted(status: number): void {
    const c = (status / 100) | 0;
    this.unroutedCounts[c < this.unroutedCounts.length ? c : 0]!++;
  }

  private flushUnrouted(): void {
    for (let c = 0; c < this.unroutedCounts.length; c++) {
      const delta = (this.unroutedCounts[c] as number) - (this.unroutedCounted[c] as number);
      if (delta > 0) {
        this.unrouted.inc({ status_class: STATUS_CLASS_LABELS[c] ?? 'other' }, delta);
        this.unroutedCounted[c] = this.unroutedCounts[c] as number;
      }
    }
  }

  observeColdStartWait(fn: FunctionState, waitedMs: number): void {
    this.coldStartWait.observe({ function: fn.name }, waitedMs / 1000);
  }

  countUpstreamError(fn: FunctionState, code: ErrorCode): void {
    this.upstreamErrors.inc({ function: fn.name, code });
  }
}
