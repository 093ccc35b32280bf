// Each component has its own prom-client Registry, so `baton up`, which runs
// every component in one process, serves each one's metrics on its own port.
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createMetricsRegistry(component: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: 'baton_' });
  return registry;
}
