// WorkerService (proto/baton/v1/worker.proto) over the sandbox table: checks
// what arrives on the wire, converts protobuf to the table's types and back.
// The control plane is the only caller; errors are BatonErrors, which the
// RPC layer turns into a ConnectError carrying the same code.
import type { ServiceImpl } from '@connectrpc/connect';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { SandboxState, type SandboxSchema, type SandboxLatencyBreakdownSchema } from '../gen/baton/v1/common_pb.js';
import type { CreateSandboxRequest, CreateSandboxResponseSchema, WorkerService } from '../gen/baton/v1/worker_pb.js';
import { joinHostPort } from '../shared/config.js';
import { BatonError } from '../shared/errors.js';
import { fromFunctionSpecMessage } from '../shared/spec.js';
import type { SandboxLatency } from './runtime.js';
import type { SandboxInfo, SandboxPhase, SandboxTable } from './sandboxes.js';

/** Sandbox ids name log files, so they are kept to a safe alphabet. */
const SANDBOX_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

const STATE: Record<SandboxPhase, SandboxState> = {
  STARTING: SandboxState.STARTING,
  READY: SandboxState.READY,
  STOPPING: SandboxState.STOPPING,
};

export interface WorkerServiceContext {
  readonly workerId: string;
  /** The host sandboxes are reached on by peers: the worker's advertised host. */
  readonly sandboxHost: string;
  readonly table: SandboxTable;
}

export function workerServiceImpl(context: WorkerServiceContext): ServiceImpl<typeof WorkerService> {
  const { table, workerId, sandboxHost } = context;
  const toSandbox = (s: SandboxInfo): MessageInitShape<typeof SandboxSchema> => ({
    sandboxId: s.sandboxId,
    function: s.function,
    address: s.port > 0 ? joinHostPort(sandboxHost, s.port) : '',
    state: STATE[s.state],
    pid: s.pid,
    createdAtMs: BigInt(s.createdAtMs),
    functionRevision: s.functionRevision,
  });
  /** One create; `signal` is the caller's (undefined when the caller watches it for a whole batch). */
  const createOne = async (req: CreateSandboxRequest, signal: AbortSignal | undefined): Promise<MessageInitShape<typeof CreateSandboxResponseSchema>> => {
    checkSandboxId(req.sandboxId);
    const fn = req.function;
    if (!fn) throw new BatonError('INVALID_SPEC', 'function: is required', { details: { field: 'function' } });
    if (!fn.name) throw new BatonError('INVALID_SPEC', 'function.name: is required', { details: { field: 'name' } });
    const spec = fromFunctionSpecMessage(fn);
    if ((spec.runtime === 'process' || spec.runtime === 'oci') && !spec.command[0]) {
      throw new BatonError('INVALID_SPEC', `function "${fn.name}": command must name a program`, {
        details: { field: 'command' },
      });
    }
    if (spec.runtime === 'node' && !spec.handler) {
      throw new BatonError('INVALID_SPEC', `function "${fn.name}": runtime "node" needs a handler`, { details: { field: 'handler' } });
    }
    // A caller that gives up (its deadline passed, or it died) will never
    // learn of this sandbox, so nothing would ever delete it: stop it now.
    const abandon = (): void => void table.delete(req.sandboxId);
    signal?.addEventListener('abort', abandon, { once: true });
    try {
      const sandbox = await table.create(req.sandboxId, spec, fn.revision, spec.runtime);
      return { sandbox: toSandbox(sandbox), latency: toLatency(sandbox.latency, sandbox.runtime) };
    } finally {
      signal?.removeEventListener('abort', abandon);
    }
  };
  return {
    createSandbox: (req, ctx) => createOne(req, ctx.signal),

    async createSandboxes(req, ctx) {
      // A caller that gives up abandons the whole batch: one listener rather than one per create
      // (hundreds on one signal would also trip Node's listener-leak warning).
      const abandon = (): void => {
        for (const c of req.creates) if (SANDBOX_ID.test(c.sandboxId)) void table.delete(c.sandboxId);
      };
      ctx.signal.addEventListener('abort', abandon, { once: true });
      // Each create stands alone: one that fails does not fail the others.
      const results = await Promise.all(
        req.creates.map((c) =>
          createOne(c, undefined).then(
            (created) => ({ created }),
            (err: unknown) => {
              const e = err instanceof BatonError ? err : new BatonError('INTERNAL', err instanceof Error ? err.message : String(err));
              return { errorCode: e.code, errorMessage: e.message };
            },
          ),
        ),
      ).finally(() => ctx.signal.removeEventListener('abort', abandon));
      return { results };
    },

    async deleteSandbox(req) {
      checkSandboxId(req.sandboxId);
      await table.delete(req.sandboxId);
      return {};
    },

    listSandboxes() {
      return { workerId, sandboxes: table.list().map(toSandbox) };
    },
  };
}

function checkSandboxId(id: string): void {
  if (!SANDBOX_ID.test(id)) {
    throw new BatonError(
      'INVALID_REQUEST',
      `sandbox_id ${JSON.stringify(id.slice(0, 64))}: must be 1-200 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

function toLatency(l: SandboxLatency | undefined, runtime: string): MessageInitShape<typeof SandboxLatencyBreakdownSchema> {
  if (!l) return { runtime };
  return {
    runtime,
    totalUs: BigInt(l.totalUs),
    portAllocationUs: BigInt(l.portAllocationUs),
    spawnUs: BigInt(l.spawnUs),
    readinessProbeUs: BigInt(l.readinessProbeUs),
    runtimeCreateUs: BigInt(l.runtimeCreateUs),
    networkUs: BigInt(l.networkUs),
    pooled: l.pooled,
  };
}
