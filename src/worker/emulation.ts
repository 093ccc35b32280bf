// Emulated nodes: many workers in one process (`baton worker --emulate N`,
// `baton up --emulate N`), each registering with the control plane as a node
// of its own, with its own RPC server and heartbeats, and offering only the
// `emulated` runtime. Dirigent's simulator_workers and Kubedirect's kwok
// nodes serve the same purpose: measuring the control plane, data plane and
// load generator at hundreds of nodes on one machine.
//
// Nothing is shared between the workers but the process: the control plane
// cannot tell them from workers on separate machines. They share one logger
// and only the first carries Node's process metrics (the others would report
// the same process again, each with a 10 ms event-loop timer).
import { BatonError } from '../shared/errors.js';
import { compileConfig, workerSchema, type WorkerConfig } from '../shared/config.js';
import { componentId } from '../shared/ids.js';
import type { Logger } from '../shared/logging.js';
import { Worker } from './index.js';

/**
 * What an emulated node advertises unless cpuMillis / memoryMb say otherwise:
 * a 16-core, 64 GiB machine, a common size of a cluster node in the papers'
 * testbeds (Dirigent's and Kubedirect's CloudLab nodes have 10–40 cores).
 */
export const EMULATED_NODE_CAPACITY = Object.freeze({ cpuMillis: 16_000, memoryMb: 65_536 });

export const MAX_EMULATED_WORKERS = 5000;

/**
 * The configs of `count` emulated workers from one worker config as written
 * (file and flags, before defaults). Worker i (1-based) is `<id>-emu-<i>`,
 * with id the configured one or a fresh component id; it listens on rpcPort
 * + i - 1 when rpcPort is given, else on an ephemeral port; it draws its
 * start delays from seed + i - 1, so nodes do not all draw the same
 * sequence and a run can be replayed.
 */
export function emulatedWorkerConfigs(input: Readonly<Record<string, unknown>>, count: number, source = 'config'): WorkerConfig[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_EMULATED_WORKERS) {
    throw new BatonError('CONFIG_INVALID', `emulate: must be a whole number from 1 to ${MAX_EMULATED_WORKERS}, got ${count}`);
  }
  if (input.runtimes !== undefined) {
    throw new BatonError('CONFIG_INVALID', `${source}: runtimes: is set by --emulate (emulated workers offer only "emulated")`);
  }
  // Validated once as written, so an error names the user's key, not a derived one.
  const base = compileConfig(workerSchema, { rpcPort: 0, logLevel: 'warn', ...input }, source);
  const baseId = base.id ?? componentId('worker');
  const width = String(count).length;
  const configs: WorkerConfig[] = [];
  for (let i = 0; i < count; i++) {
    const rpcPort = base.rpcPort === 0 ? 0 : base.rpcPort + i;
    if (rpcPort > 65535) {
      throw new BatonError('CONFIG_INVALID', `${source}: rpcPort: ${base.rpcPort} + ${count - 1} emulated workers runs past port 65535`);
    }
    configs.push(
      compileConfig(
        workerSchema,
        {
          ...base,
          id: `${baseId}-emu-${String(i + 1).padStart(width, '0')}`,
          rpcPort,
          runtimes: ['emulated'],
          cpuMillis: base.cpuMillis || EMULATED_NODE_CAPACITY.cpuMillis,
          memoryMb: base.memoryMb || EMULATED_NODE_CAPACITY.memoryMb,
          emulation: { ...base.emulation, startDelay: { ...base.emulation.startDelay, seed: base.emulation.startDelay.seed + i } },
        },
        source,
      ),
    );
  }
  return configs;
}

/**
 * Starts the workers, all at once. If one cannot start, those that did are
 * stopped again and the first error is thrown.
 */
export async function startEmulatedWorkers(configs: readonly WorkerConfig[], log: Logger): Promise<Worker[]> {
  const results = await Promise.allSettled(configs.map((config, i) => Worker.create(config, { log, processMetrics: i === 0 })));
  const workers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopWorkers(workers);
    throw failed.reason;
  }
  return workers;
}

/** Stops every worker at once; resolves when all have stopped, rejects with the first failure. */
export async function stopWorkers(workers: readonly Worker[]): Promise<void> {
  const results = await Promise.allSettled(workers.map((w) => w.stop()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
