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
import { fork } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BatonError } from '../shared/errors.js';
import type { ChainSpec } from '../shared/chain-spec.js';
import { BODY_OFFSET, errorOf, W_BODY_LEN, W_OWNER, W_RES_META_LEN, W_ROUTE, W_STATUS, REQUEST_META_BYTES, writeRequestMeta, type RequestMeta } from './message.js';
import type { FromMember, MemberIdentity, ToMember } from './member.js';
import type { MemberProcessInit } from './member-process.js';
import type { MemberThreadData } from './member-thread.js';
import { GATEWAY_NODE, planOf, selectRoute, type ChainPlan } from './routing.js';
import { ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';
import { FileRegion } from './shm/file-region.js';
import { ownerInRegion, pullCounters, pullSlot, pushSlot, regionBytes } from './slot-sync.js';
import { SharedMemoryTransport, type ChainTransport } from './transport.js';
import { UnixSocketTransport } from './unix-transport.js';

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
  runner: MemberRunner | undefined;
  /** Its handler is loaded and it takes descriptors. */
  ready: boolean;
  restarts: number;
}

/** A member's thread or process, as the gateway drives it. */
interface MemberRunner {
  /** The thread id or the pid. */
  readonly id: number;
  post(m: ToMember): void;
  on(event: 'message', listener: (m: FromMember) => void): void;
  on(event: 'exit', listener: (code: number | null) => void): void;
  kill(): Promise<void>;
}

const MEMBER_THREAD = new URL('./member-thread.js', import.meta.url);
const MEMBER_PROCESS = fileURLToPath(new URL('./member-process.js', import.meta.url));

/** What the cross-process transport adds: the region the slots are copied through, and the sockets' directory. */
interface CrossProcess {
  readonly region: FileRegion;
  readonly socketDir: string;
}

function threadMember(data: MemberThreadData): MemberRunner {
  const thread = new Worker(MEMBER_THREAD, { workerData: data, env: process.env });
  thread.on('error', (err) => console.error(`member ${data.plan.names[data.node] ?? data.node}: thread error:`, err));
  return {
    id: thread.threadId,
    post: (msg) => thread.postMessage(msg),
    on: (event: 'message' | 'exit', listener: (arg: unknown) => void) => void thread.on(event, listener),
    kill: async () => void (await thread.terminate()),
  } as MemberRunner;
}

export class Chain {
  state: ChainState = 'STARTING';
  /**
   * Called once when the chain can no longer serve (a member could not be
   * restarted). The gateway process exits on it, so its worker reports the
   * sandbox dead and a fresh one replaces the whole chain.
   */
  onFailed: ((err: Error) => void) | undefined = undefined;
  readonly memory: ChainMemory;
  readonly plan: ChainPlan;
  private readonly transport: ChainTransport;
  private readonly cross: CrossProcess | undefined;
  private readonly inFlight = new Map<number, InFlight>();
  private readonly members: Member[];

  static async create(spec: ChainSpec): Promise<Chain> {
    const chain = new Chain(spec);
    try {
      if (chain.transport instanceof UnixSocketTransport) await chain.transport.listen();
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
    if (spec.transport === 'processes') {
      const socketDir = mkdtempSync(join(tmpdir(), 'baton-chain-'));
      // tmpfs where there is one: the region is memory, as a pool is.
      const regionDir = existsSync('/dev/shm') ? '/dev/shm' : socketDir;
      const region = FileRegion.create(join(regionDir, `baton-chain-${spec.name}-${process.pid}-${this.memory.poolId}`), regionBytes(this.memory));
      this.cross = { region, socketDir };
      this.transport = new UnixSocketTransport(socketDir, GATEWAY_NODE, (d, to) => this.undeliverable(d, to));
    } else {
      this.cross = undefined;
      this.transport = new SharedMemoryTransport(this.memory, GATEWAY_NODE);
    }
    this.members = spec.members.map((m, i) => ({
      node: i + 1,
      name: m.name,
      handler: m.handler,
      workdir: m.workdir ?? spec.workdir ?? '/',
      runner: undefined,
      ready: false,
      restarts: 0,
    }));
  }

  /** Starts a member's thread or process and resolves once its handler is loaded. */
  private startMember(m: Member): Promise<void> {
    const identity = { node: m.node, plan: this.plan, chain: this.spec.name, handler: m.handler, workdir: m.workdir };
    const runner = this.cross ? this.forkMember(identity, this.cross) : threadMember({ ...identity, buffer: this.memory.buffer });
    m.runner = runner;
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      runner.on('message', (msg: FromMember) => {
        if (msg.type === 'ready') {
          loaded = true;
          m.ready = true;
          resolve();
        } else if (msg.type === 'failed') {
          reject(new BatonError('SANDBOX_START_FAILED', `chain ${this.spec.name}, member ${m.name}: ${msg.message}`));
        }
      });
      runner.on('exit', (code) => {
        if (!loaded) reject(new BatonError('SANDBOX_START_FAILED', `chain ${this.spec.name}, member ${m.name}: it exited (${code}) before its handler was loaded`));
        if (m.runner === runner) {
          m.runner = undefined;
          m.ready = false;
        }
        if (this.state === 'RUNNING' && loaded) this.memberDied(m, code);
      });
    });
  }

  private forkMember(identity: MemberIdentity, cross: CrossProcess): MemberRunner {
    const child = fork(MEMBER_PROCESS, [], { env: process.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    const init: MemberProcessInit = {
      type: 'init',
      ...identity,
      socketDir: cross.socketDir,
      regionPath: cross.region.path,
      poolId: this.memory.poolId,
      slots: this.memory.slots,
      slotBytes: this.memory.slotBytes,
      nodes: this.memory.nodes,
    };
    child.send(init);
    child.on('error', (err) => console.error(`chain ${this.spec.name}, member ${identity.node}: process error:`, err));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return {
      id: child.pid ?? 0,
      post: (msg) => void (child.connected && child.send(msg)),
      on: (event: 'message' | 'exit', listener: (arg: unknown) => void) => void child.on(event, listener),
      kill: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      },
    } as MemberRunner;
  }

  /** The gateway could not reach a member's process (it died and is not yet replaced): fail the request. */
  private undeliverable(d: Descriptor, to: number): void {
    const f = this.inFlight.get(d.slot);
    if (!f || f.desc.generation !== d.generation || !this.memory.isCurrent(d)) return;
    this.complete(d.slot, f, false, () => f.reject(new BatonError('CHAIN_MEMBER_FAILED', `member ${this.plan.names[to] ?? to} of chain ${this.spec.name} is not running`)));
  }

  /** Before a descriptor leaves the gateway: with processes, the target owns the slot and must find it in the region. */
  private publish(d: Descriptor, to: number): void {
    if (!this.cross) return;
    this.memory.header(d.slot)[W_OWNER] = to;
    pushSlot(this.memory, this.cross.region, d.slot);
  }

  /** A member's thread is gone: fail what it held, tell callers to stop waiting, start another. */
  private memberDied(m: Member, code: number | null): void {
    m.restarts++;
    console.error(`chain ${this.spec.name}: member ${m.name}'s thread exited (code ${code}); failing its requests and starting another`);
    let failed = 0;
    const cancelled: Descriptor[] = [];
    for (const [slot, f] of this.inFlight) {
      if (!this.memory.isCurrent(f.desc)) continue;
      const owner = this.cross ? ownerInRegion(this.memory, this.cross.region, slot) : this.memory.header(slot)[W_OWNER];
      if (owner === m.node) {
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
    for (const other of this.members) other.runner?.post(message);
    this.startMember(m).catch((err: unknown) => this.fail(m, err as Error));
  }

  /**
   * A member could not be restarted: every request is failed now instead of
   * waiting on a ring nobody reads (and holding its slot), new ones are
   * refused, and onFailed is told.
   */
  private fail(m: Member, err: Error): void {
    if (this.state !== 'RUNNING') return;
    this.state = 'FAILED';
    console.error(`chain ${this.spec.name}: member ${m.name} could not be restarted, the chain stops serving:`, err.message);
    for (const [slot, f] of this.inFlight) {
      this.complete(slot, f, false, () => f.reject(new BatonError('CHAIN_MEMBER_FAILED', `member ${m.name} of chain ${this.spec.name} is down: ${err.message}`)));
    }
    this.onFailed?.(err);
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
      this.publish(desc, route.first);
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
    if (this.cross) pullSlot(this.memory, this.cross.region, d.slot);
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

  /** Requests in the chain, waiting for their answer. */
  waiting(): number {
    return this.inFlight.size;
  }

  /**
   * Removes the processes transport's region file at once, synchronously: for
   * a gateway exiting without stop() (an uncaught error), so that /dev/shm is
   * not left holding it.
   */
  removeRegionNow(): void {
    this.cross?.region.close();
  }

  /** The pool and per-member load counters (SPRIGHT's eBPF counters), for /__baton/chain-metrics. */
  metrics(): Record<string, unknown> {
    if (this.cross) for (const m of this.members) pullCounters(this.memory, this.cross.region, m.node);
    return {
      transport: this.spec.transport,
      chain: this.spec.name,
      state: this.state,
      pid: process.pid,
      pool: { poolId: this.memory.poolId, slots: this.memory.slots, slotBytes: this.memory.slotBytes, inUse: this.memory.inUse(), free: this.memory.freeCount() },
      gateway: { ...this.memory.load(GATEWAY_NODE), waiting: this.inFlight.size },
      members: this.members.map((m) => ({ name: m.name, node: m.node, ...this.memory.load(m.node), ready: m.ready, restarts: m.restarts, threadId: m.runner?.id ?? null })),
    };
  }

  async stop(): Promise<void> {
    if (this.state !== 'FAILED') this.state = 'STOPPING';
    this.transport.close();
    for (const [slot, f] of this.inFlight) this.complete(slot, f, false, () => f.reject(new BatonError('UNAVAILABLE', `chain ${this.spec.name} is stopping`)));
    await Promise.all(this.members.map((m) => m.runner?.kill()).filter((p) => p !== undefined));
    if (this.cross) {
      this.cross.region.close();
      rmSync(this.cross.socketDir, { recursive: true, force: true });
    }
    if (this.state !== 'FAILED') this.state = 'STOPPED';
  }
}
