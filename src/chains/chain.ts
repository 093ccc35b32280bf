// A running chain, as its gateway process holds it: the chain's memory (one
// pool, one ring per node), one worker thread per member, and the requests
// in flight. It is the part of the gateway that is not HTTP: `invoke` puts a
// request in a slot and sends it to the first node; the gateway's own ring
// brings the slot back, and the request is answered from it.
//
// Failure (docs/chains.md): a member thread that exits is replaced. Every
// request whose slot that thread held (the slot header's owner word) is
// answered CHAIN_MEMBER_FAILED and its slot freed; members waiting in
// `msg.call` for such a slot are told to give up. A slot still in the dead
// member's ring is served by its replacement.
//
// Lifecycle: STARTING → RUNNING → STOPPING → STOPPED (or FAILED when a
// member's handler cannot be loaded at start).
import { Worker } from 'node:worker_threads';
import { BatonError } from '../shared/errors.js';
import type { ChainSpec } from '../shared/chain-spec.js';
import { BODY_OFFSET, errorOf, W_BODY_LEN, W_OWNER, W_RES_META_LEN, W_ROUTE, W_STATUS, REQUEST_META_BYTES, writeRequestMeta, type RequestMeta } from './message.js';
import type { FromMember, ToMember } from './member.js';
import type { MemberThreadData } from './member-thread.js';
import { GATEWAY_NODE, planOf, selectRoute, type ChainPlan } from './routing.js';
import { ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';
import { SharedMemoryTransport } from './transport.js';

export type ChainState = 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

export interface ChainResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

interface InFlight {
  readonly desc: Descriptor;
  readonly resolve: (r: ChainResponse) => void;
  readonly reject: (e: BatonError) => void;
  /** The client went away: free the slot when it comes back, answer nobody. */
  abandoned: boolean;
}

interface Member {
  readonly node: number;
  readonly name: string;
  readonly handler: string;
  readonly workdir: string;
  thread: Worker | undefined;
  restarts: number;
}

const MEMBER_THREAD = new URL('./member-thread.js', import.meta.url);

export class Chain {
  state: ChainState = 'STARTING';
  readonly memory: ChainMemory;
  readonly plan: ChainPlan;
  private readonly transport: SharedMemoryTransport;
  private readonly inFlight = new Map<number, InFlight>();
  private readonly members: Member[];

  static async create(spec: ChainSpec): Promise<Chain> {
    const chain = new Chain(spec);
    try {
      await Promise.all(chain.members.map((m) => chain.startMember(m)));
    } catch (err) {
      chain.state = 'FAILED';
      await chain.stop();
      throw err;
    }
    chain.transport.onReceive((d) => chain.answer(d));
    chain.state = 'RUNNING';
    return chain;
  }

  private constructor(readonly spec: ChainSpec) {
    this.plan = planOf(spec);
    this.memory = ChainMemory.create({ slots: spec.pool.slots, slotBytes: spec.pool.slotBytes, nodes: spec.members.length + 1 });
    this.transport = new SharedMemoryTransport(this.memory, GATEWAY_NODE);
    this.members = spec.members.map((m, i) => ({
      node: i + 1,
      name: m.name,
      handler: m.handler,
      workdir: m.workdir ?? spec.workdir ?? '/',
      thread: undefined,
      restarts: 0,
    }));
  }

  /** Starts a member's thread and resolves once its handler is loaded. */
  private startMember(m: Member): Promise<void> {
    const workerData: MemberThreadData = {
      buffer: this.memory.buffer,
      node: m.node,
      plan: this.plan,
      chain: this.spec.name,
      handler: m.handler,
      workdir: m.workdir,
    };
    const thread = new Worker(MEMBER_THREAD, { workerData, env: process.env });
    m.thread = thread;
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      thread.on('message', (msg: FromMember) => {
        if (msg.type === 'ready') {
          loaded = true;
          resolve();
        } else if (msg.type === 'failed') {
          reject(new BatonError('SANDBOX_START_FAILED', `chain ${this.spec.name}, member ${m.name}: ${msg.message}`));
        }
      });
      thread.on('error', (err) => {
        console.error(`chain ${this.spec.name}, member ${m.name}: thread error:`, err);
      });
      thread.on('exit', (code) => {
        if (!loaded) reject(new BatonError('SANDBOX_START_FAILED', `chain ${this.spec.name}, member ${m.name}: its thread exited (${code}) before its handler was loaded`));
        if (m.thread === thread) m.thread = undefined;
        if (this.state === 'RUNNING' && loaded) this.memberDied(m, code);
      });
    });
  }

  /** A member's thread is gone: fail what it held, tell callers to stop waiting, start another. */
  private memberDied(m: Member, code: number): void {
    m.restarts++;
    console.error(`chain ${this.spec.name}: member ${m.name}'s thread exited (code ${code}); failing its requests and starting another`);
    let failed = 0;
    const cancelled: Descriptor[] = [];
    for (const [slot, f] of this.inFlight) {
      if (!this.memory.isCurrent(f.desc)) continue;
      const h = this.memory.header(slot);
      if (h[W_OWNER] === m.node) {
        failed++;
        cancelled.push(f.desc);
        this.complete(slot, f, false, () => {
          f.reject(new BatonError('CHAIN_MEMBER_FAILED', `member ${m.name} of chain ${this.spec.name} died while handling the request`));
        });
      }
      // A slot whose holder is a callee of the dead member comes back to the replacement, which fails it.
    }
    this.memory.resetInFlight(m.node, failed);
    const message: ToMember = { type: 'cancel', descriptors: cancelled };
    for (const other of this.members) other.thread?.postMessage(message);
    this.startMember(m).catch((err: unknown) => {
      console.error(`chain ${this.spec.name}: member ${m.name} could not be restarted:`, err);
    });
  }

  /**
   * Puts a request into a slot and sends it into the chain. `body` is written
   * straight into the slot as it arrives (the gateway's one copy). Rejects
   * with CHAIN_POOL_FULL at once when no slot is free, NOT_FOUND when no
   * route matches, BODY_TOO_LARGE when it does not fit.
   */
  async invoke(meta: RequestMeta, body: AsyncIterable<Buffer>, onAbort: (abandon: () => void) => void): Promise<ChainResponse> {
    if (this.state !== 'RUNNING') throw new BatonError('UNAVAILABLE', `chain ${this.spec.name} is ${this.state.toLowerCase()}`);
    const route = selectRoute(this.spec, this.plan, meta.url, meta.headers);
    if (!route) throw new BatonError('NOT_FOUND', `no route of chain ${this.spec.name} matches ${meta.method} ${meta.url}, and it has no entry member`);
    const desc = this.memory.alloc();
    if (!desc) throw new BatonError('CHAIN_POOL_FULL', `every one of chain ${this.spec.name}'s ${this.memory.slots} slots is in use`);
    let sent = false;
    try {
      if (!writeRequestMeta(this.memory, desc.slot, meta)) throw new BatonError('BODY_TOO_LARGE', `the request's headers are over ${REQUEST_META_BYTES} bytes`);
      const data = this.memory.data(desc.slot);
      let len = 0;
      for await (const chunk of body) {
        if (BODY_OFFSET + len + chunk.length > data.length) throw new BatonError('BODY_TOO_LARGE', `the body is over the chain's slot size (${data.length - BODY_OFFSET} bytes)`);
        chunk.copy(data, BODY_OFFSET + len);
        len += chunk.length;
      }
      // The chain may have begun to stop while the body arrived.
      const state = this.state as ChainState;
      if (state !== 'RUNNING') throw new BatonError('UNAVAILABLE', `chain ${this.spec.name} is ${state.toLowerCase()}`);
      const h = this.memory.header(desc.slot);
      h[W_BODY_LEN] = len;
      h[W_ROUTE] = route.route;
      h[W_OWNER] = GATEWAY_NODE;
      const answer = new Promise<ChainResponse>((resolve, reject) => {
        const f: InFlight = { desc, resolve, reject, abandoned: false };
        this.inFlight.set(desc.slot, f);
        onAbort(() => {
          f.abandoned = true;
        });
      });
      this.memory.started(GATEWAY_NODE);
      this.transport.send(desc, route.first);
      sent = true;
      return await answer;
    } finally {
      if (!sent) this.memory.free(desc);
    }
  }

  /** A slot came back to the gateway: answer its request from it, and free it. */
  private answer(d: Descriptor): void {
    const f = this.inFlight.get(d.slot);
    if (!f || f.desc.generation !== d.generation || !this.memory.isCurrent(d)) {
      console.error(`chain ${this.spec.name}: the gateway got a descriptor it did not send (slot ${d.slot}); dropped`);
      return;
    }
    const err = errorOf(this.memory, d.slot);
    this.complete(d.slot, f, err === undefined, () => {
      if (err) return f.reject(err);
      const h = this.memory.header(d.slot);
      const data = this.memory.data(d.slot);
      const resLen = h[W_RES_META_LEN] ?? 0;
      const headers = resLen === 0 ? {} : (JSON.parse(data.toString('utf8', REQUEST_META_BYTES, REQUEST_META_BYTES + resLen)) as Record<string, string>);
      // Copied out before the slot is freed: the socket writes later, when the slot may hold another request.
      const body = Buffer.from(data.subarray(BODY_OFFSET, BODY_OFFSET + (h[W_BODY_LEN] ?? 0)));
      f.resolve({ status: h[W_STATUS] || 200, headers, body });
    });
  }

  private complete(slot: number, f: InFlight, ok: boolean, settle: () => void): void {
    this.inFlight.delete(slot);
    try {
      if (!f.abandoned) settle();
    } finally {
      this.memory.finished(GATEWAY_NODE, ok);
      this.memory.free(f.desc);
    }
  }

  /** The pool and per-member load counters (SPRIGHT's eBPF counters), for /__baton/chain-metrics. */
  metrics(): Record<string, unknown> {
    return {
      chain: this.spec.name,
      state: this.state,
      pid: process.pid,
      pool: { poolId: this.memory.poolId, slots: this.memory.slots, slotBytes: this.memory.slotBytes, inUse: this.memory.inUse(), free: this.memory.freeCount() },
      gateway: { ...this.memory.load(GATEWAY_NODE), waiting: this.inFlight.size },
      members: this.members.map((m) => ({ name: m.name, node: m.node, ...this.memory.load(m.node), restarts: m.restarts, threadId: m.thread?.threadId ?? null })),
    };
  }

  async stop(): Promise<void> {
    if (this.state !== 'FAILED') this.state = 'STOPPING';
    this.transport.close();
    for (const [slot, f] of this.inFlight) this.complete(slot, f, false, () => f.reject(new BatonError('UNAVAILABLE', `chain ${this.spec.name} is stopping`)));
    await Promise.all(this.members.map(async (m) => void (await m.thread?.terminate())));
    if (this.state !== 'FAILED') this.state = 'STOPPED';
  }
}
