// The `chain` runtime: a sandbox is a function chain's gateway process
// (src/chains/gateway-main.ts), which runs every member of the chain as a
// worker thread sharing one SharedArrayBuffer pool (docs/chains.md). So the
// gateway and all members of a chain are on one node by construction, and
// the chain scales as a unit: the pool and the rings are per process.
//
// The process is started, probed and stopped exactly as a `process` sandbox
// is (runtimes/process.ts); only the command is fixed: this worker's Node
// and its own copy of the gateway. The chain's spec is in the function's
// environment (BATON_CHAIN_SPEC), which the process runtime passes on.
import { fileURLToPath } from 'node:url';
import type { RuntimeSandbox, SandboxRuntime, SandboxStartRequest } from '../runtime.js';
import { ProcessRuntime, type ProcessRuntimeOptions } from './process.js';

const GATEWAY_MAIN = fileURLToPath(new URL('../../chains/gateway-main.js', import.meta.url));

export interface ChainRuntimeOptions extends ProcessRuntimeOptions {
  /** The Node that runs the gateway (the node runtime's nodePath, else the worker's own). */
  readonly nodePath: string;
}

export class ChainRuntime implements SandboxRuntime {
  readonly name = 'chain';
  private readonly processes: ProcessRuntime;

  constructor(private readonly options: ChainRuntimeOptions) {
    this.processes = new ProcessRuntime(options);
  }

  create(request: SandboxStartRequest): Promise<RuntimeSandbox> {
    return this.processes.create({ ...request, spec: { ...request.spec, command: [this.options.nodePath, GATEWAY_MAIN] } });
  }

  killAllNow(): void {
    this.processes.killAllNow();
  }
}
