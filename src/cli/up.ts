// `baton up`: a whole single-machine cluster in one process: a control plane
// with the embedded SQLite store, a data plane and one or more workers with
// the process runtime (and with --emulate N, N emulated workers). They still
// talk only through their RPC services, over loopback, exactly as they would
// across machines. With --demo it deploys the demo function. SIGINT or
// SIGTERM stops everything; no sandbox outlives it.
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ControlPlane } from '../controlplane/index.js';
import { DataPlane } from '../dataplane/index.js';
import { compileConfig, controlPlaneSchema, dataPlaneSchema, joinHostPort, type UpConfig, workerSchema } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import { createLogger } from '../shared/logging.js';
import { setInProcessCalls } from '../shared/rpc.js';
import { emulatedWorkerConfigs, startEmulatedWorkers, stopWorkers, Worker } from '../worker/index.js';

export const DEMO_FUNCTION = 'hello';

export function demoSpec(): Record<string, unknown> {
  const script = fileURLToPath(new URL('../../../demo/hello.js', import.meta.url));
  return {
    name: DEMO_FUNCTION,
    command: [process.execPath, script],
    scaling: { containerConcurrency: 0, scaleToZeroGraceSec: 60 },
  };
}

export interface RunningCluster {
  controlPlane: ControlPlane;
  dataPlane: DataPlane;
  /** The first worker. */
  worker: Worker;
  workers: Worker[];
  /** The emulated workers (`emulate`), apart from `workers`. */
  emulatedWorkers: Worker[];
  apiUrl: string;
  dataPlaneUrl: string;
  stop(): Promise<void>;
}

/**
 * Several workers on one machine split it between them, so that placement
 * does not count the machine twice; a configured capacity wins.
 */
function shareOfMachine(workers: number): { cpuMillis?: number; memoryMb?: number } {
  if (workers === 1) return {};
  return {
    cpuMillis: Math.max(1, Math.floor((availableParallelism() * 1000) / workers)),
    memoryMb: Math.max(1, Math.floor(totalmem() / 1024 / 1024 / workers)),
  };
}

/** Starts the three components and waits until the worker and data plane have registered. */
export async function startCluster(cfg: UpConfig): Promise<RunningCluster> {
  setInProcessCalls(cfg.inProcessRpc);
  const token = cfg.token ?? process.env.BATON_TOKEN ?? undefined;
  const logLevel = cfg.logLevel;
  // Section values win over the cluster-wide log level; the addresses and ports are up's own.
  const cpConfig = compileConfig(controlPlaneSchema, {
    logLevel,
    // Its workers start with it, so none comes back with sandboxes to take back.
    recoveryWindowMs: 0,
    // A one-machine cluster takes InVitro's registrations (behind the token, if one is set).
    compat: { dirigentRegistration: 'on' },
    ...cfg.controlplane,
    host: cfg.host,
    apiPort: cfg.apiPort,
    dataDir: cfg.dataDir,
    token,
  });
  const controlPlane = await ControlPlane.create(cpConfig, { log: createLogger('controlplane', { level: cpConfig.logLevel }) });
  const stops: (() => Promise<void>)[] = [() => controlPlane.stop()];
  const stopAll = async (): Promise<void> => {
    // The control plane stops first, so it starts nothing new while the worker kills its sandboxes.
    for (const stop of stops) await stop();
  };
  try {
    const dpConfig = compileConfig(dataPlaneSchema, {
      logLevel,
      rpcPort: 0,
      ...cfg.dataplane,
      host: cfg.host,
      port: cfg.dataplanePort,
      controlPlaneUrl: controlPlane.url,
      token,
      // The async queue's file sits beside the control plane's store.
      dataDir: cfg.dataDir,
    });
    const dataPlane = await DataPlane.create(dpConfig, { log: createLogger('dataplane', { level: dpConfig.logLevel }) });
    stops.push(() => dataPlane.stop());
    const workers: Worker[] = [];
    for (let i = 0; i < cfg.workers; i++) {
      const workerConfig = compileConfig(workerSchema, {
        logLevel,
        rpcPort: 0,
        ...shareOfMachine(cfg.workers),
        ...cfg.worker,
        // A configured id would be shared by every worker: number them.
        ...(cfg.workers > 1 && typeof cfg.worker.id === 'string' ? { id: `${cfg.worker.id}-${i + 1}` } : {}),
        host: cfg.host,
        controlPlaneUrl: controlPlane.url,
        token,
        dataDir: cfg.dataDir,
      });
      const worker = await Worker.create(workerConfig, { log: createLogger('worker', { level: workerConfig.logLevel }) });
      workers.push(worker);
      stops.push(() => worker.stop());
    }
    let emulatedWorkers: Worker[] = [];
    if (cfg.emulate > 0) {
      // They take the worker section's settings (heartbeats, start delays, stopGraceMs) but not what describes
      // a real worker: its runtimes, its share of the machine (they advertise EMULATED_NODE_CAPACITY), its port.
      const { runtimes: _runtimes, cpuMillis: _cpu, memoryMb: _memory, rpcPort: _rpcPort, ...shared } = cfg.worker;
      const configs = emulatedWorkerConfigs(
        { logLevel, ...shared, host: cfg.host, controlPlaneUrl: controlPlane.url, token, dataDir: cfg.dataDir },
        cfg.emulate,
        'worker',
      );
      emulatedWorkers = await startEmulatedWorkers(configs, createLogger('worker', { level: configs[0]?.logLevel ?? logLevel }));
      const started = emulatedWorkers;
      stops.push(() => stopWorkers(started));
    }
    // Hundreds of emulated workers take seconds to register (docs/runtimes.md, "What it costs").
    const deadline = Date.now() + 15_000 + 20 * cfg.emulate;
    for (;;) {
      const m = controlPlane.membershipCounts();
      if (m.workers >= cfg.workers + cfg.emulate && m.dataPlanes >= 1) break;
      if (Date.now() > deadline) throw new BatonError('UNAVAILABLE', 'the workers or the data plane did not register in time');
      await new Promise((r) => setTimeout(r, 10));
    }
    return {
      controlPlane,
      dataPlane,
      worker: workers[0] as Worker,
      workers,
      emulatedWorkers,
      apiUrl: controlPlane.url,
      dataPlaneUrl: `http://${joinHostPort(cfg.host, dataPlane.proxyPort)}`,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Runs `baton up` until a signal, printing where everything is. */
export async function runUp(cfg: UpConfig, demo: boolean): Promise<void> {
  // The handlers go in before the start: a signal while it runs waits for it, then stops it all.
  const starting = startCluster(cfg);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping Baton…\n`);
    starting
      .then((cluster) => cluster.stop())
      .then(() => {
        process.stdout.write('Baton stopped.\n');
        process.exit(0);
      })
      .catch((err: unknown) => {
        process.stderr.write(`error while stopping: ${String(err)}\n`);
        process.exit(1);
      });
  };
  // SIGHUP too: a closed terminal must not leave sandboxes behind (Node exits on it without 'exit').
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
  const cluster = await starting;

  if (demo) {
    try {
      await cluster.controlPlane.createFunction(demoSpec());
    } catch (err) {
      if (!(err instanceof BatonError && err.code === 'FUNCTION_EXISTS')) throw err;
    }
  }
  const lines = [
    'Baton is up.',
    `  admin API:   ${cluster.apiUrl}`,
    `  data plane:  ${cluster.dataPlaneUrl}`,
  ];
  if (cluster.emulatedWorkers.length > 0) {
    lines.push(`  ${cluster.emulatedWorkers.length} emulated workers: deploy functions with runtime: emulated to use them`);
  }
  if (demo) {
    lines.push(
      '',
      `The demo function "${DEMO_FUNCTION}" is deployed. Invoke it:`,
      `  curl ${cluster.dataPlaneUrl}/fn/${DEMO_FUNCTION}/?name=you`,
      `  npx baton invoke ${DEMO_FUNCTION} --api ${cluster.apiUrl}`,
    );
  }
  lines.push('', 'Stop with Ctrl-C.');
  process.stdout.write(lines.join('\n') + '\n');
}
