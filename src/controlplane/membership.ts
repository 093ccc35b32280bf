// Worker and data-plane membership: who is registered, where they are
// reached, whether they are alive, and the RPC clients to call them.
//
// Workers heartbeat every few seconds; one silent past the timeout is marked
// lost and the caller replaces its sandboxes. Data planes re-register as
// their heartbeat; a new incarnation (a restarted data plane) is reported to
// the caller so it pushes the whole state again (Dirigent's restart gap).
import type { Client } from '@connectrpc/connect';
import { DataPlaneService } from '../gen/baton/v1/dataplane_pb.js';
import { WorkerService } from '../gen/baton/v1/worker_pb.js';
import { createRpcClient } from '../shared/rpc.js';

export type WorkerStatus = 'ready' | 'lost';

export interface WorkerMember {
  readonly id: string;
  address: string;
  status: WorkerStatus;
  capacity: { cpuMillis: number; memoryMb: number };
  usage: { cpuMillis: number; memoryMb: number; sandboxes: number };
  runtimes: string[];
  registeredAtMs: number;
  lastHeartbeatMs: number;
  /** Placement skips the worker until then: a create just failed to reach it. */
  avoidUntilMs: number;
  client: Client<typeof WorkerService>;
}

export interface DataPlaneMember {
  readonly id: string;
  address: string;
  proxyAddress: string;
  incarnation: bigint;
  registeredAtMs: number;
  lastSeenMs: number;
  /** A delta to it failed: its next registration heartbeat gets the full state. */
  needsSync: boolean;
  client: Client<typeof DataPlaneService>;
}

export interface MembershipOptions {
  token: string | undefined;
  rpcTimeoutMs: number;
}

export class Membership {
  readonly workers = new Map<string, WorkerMember>();
  readonly dataPlanes = new Map<string, DataPlaneMember>();

  constructor(private readonly options: MembershipOptions) {}

  /** Adds or refreshes a worker. Returns the member and whether it is new (or came back). */
  upsertWorker(
    id: string,
    address: string,
    capacity: { cpuMillis: number; memoryMb: number },
    runtimes: string[],
    nowMs: number,
  ): { worker: WorkerMember; fresh: boolean } {
    const existing = this.workers.get(id);
    if (existing && existing.address === address) {
      const fresh = existing.status === 'lost';
      existing.status = 'ready';
      existing.capacity = capacity;
      existing.runtimes = runtimes;
      existing.lastHeartbeatMs = nowMs;
      existing.avoidUntilMs = 0;
      if (fresh) existing.registeredAtMs = nowMs;
      return { worker: existing, fresh };
    }
    const worker: WorkerMember = {
      id,
      address,
      status: 'ready',
      capacity,
      usage: { cpuMillis: 0, memoryMb: 0, sandboxes: 0 },
      runtimes,
      registeredAtMs: nowMs,
      lastHeartbeatMs: nowMs,
      avoidUntilMs: 0,
      client: createRpcClient(WorkerService, {
        baseUrl: `http://${address}`,
        token: this.options.token,
        timeoutMs: this.options.rpcTimeoutMs,
      }),
    };
    this.workers.set(id, worker);
    return { worker, fresh: true };
  }

  /**
   * Ready workers, other than `id`, registered on `address`: a worker that
   * registers where another one was reached replaced it (a restart with a
   * new id on the same port), so the old one is dead. Marks them lost and
   * returns them.
   */
  replacedWorkers(id: string, address: string): WorkerMember[] {
    const replaced: WorkerMember[] = [];
    for (const w of this.workers.values()) {
      if (w.id !== id && w.address === address && w.status === 'ready') {
        w.status = 'lost';
        replaced.push(w);
      }
    }
    return replaced;
  }

  /** Workers that may receive new sandboxes, in a stable order. */
  readyWorkers(): WorkerMember[] {
    return [...this.workers.values()].filter((w) => w.status === 'ready').sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Marks workers silent for longer than the timeout as lost and returns them. */
  expireWorkers(nowMs: number, timeoutMs: number): WorkerMember[] {
    const lost: WorkerMember[] = [];
    for (const w of this.workers.values()) {
      if (w.status === 'ready' && nowMs - w.lastHeartbeatMs > timeoutMs) {
        w.status = 'lost';
        lost.push(w);
      }
    }
    return lost;
  }

  /** Adds or refreshes a data plane. `fresh` means it needs the whole state pushed. */
  upsertDataPlane(
    id: string,
    address: string,
    proxyAddress: string,
    incarnation: bigint,
    nowMs: number,
  ): { dataPlane: DataPlaneMember; fresh: boolean } {
    const existing = this.dataPlanes.get(id);
    if (existing && existing.address === address && existing.incarnation === incarnation && incarnation !== 0n) {
      existing.lastSeenMs = nowMs;
      existing.proxyAddress = proxyAddress;
      return { dataPlane: existing, fresh: false };
    }
    const dataPlane: DataPlaneMember = {
      id,
      address,
      proxyAddress,
      incarnation,
      registeredAtMs: nowMs,
      lastSeenMs: nowMs,
      needsSync: false,
      client:
        existing && existing.address === address
          ? existing.client
          : createRpcClient(DataPlaneService, {
              baseUrl: `http://${address}`,
              token: this.options.token,
              timeoutMs: this.options.rpcTimeoutMs,
            }),
    };
    this.dataPlanes.set(id, dataPlane);
    return { dataPlane, fresh: true };
  }
}
