// Each component has its own prom-client Registry, so `baton up`, which runs
// every component in one process, serves each one's metrics on its own port.
import { collectDefaultMetrics, Registry } from 'prom-client';

//
// Node's process metrics (CPU, memory, event-loop lag, GC) cost an event-loop
// timer every 10 ms and a GC observer per registry, for as long as the
// process lives; a process running many components of one kind (emulated
// workers) collects them in one registry only.
export function createMetricsRegistry(component: string, options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'baton_' });
  return registry;
}
