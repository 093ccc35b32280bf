// Per-function routing state: the function's spec, its routable endpoints
// with their concurrency tokens, its load-balancing policy (the spec's
// `loadBalancing`, else the data plane's default), the cold-start queue and
// the counters the data plane reports.
//
// Tokens are counts, not objects: an endpoint has a free token while its
// inFlight is below the function's containerConcurrency (0 = unlimited), so
// a new concurrency applies at once to every endpoint without rebuilding
// anything. A request takes a token in acquire(); when it finishes,
// release() hands the token straight to the head of the queue, so a waiter
// never sits while a token is free. New endpoints and a raised concurrency
// release waiters through pump(), in FIFO order.
//
// This module does no I/O: it only counts and calls Waiter.grant(). The
// proxy owns the requests and the upstream pools.
import type { FunctionSpec, LoadBalancingPolicyName } from '../shared/spec.js';
import { ColdStartQueue, type QueueLinks } from './cold-start-queue.js';
import { DeltaChain } from './epochs.js';
import { createLoadBalancingPolicy, type LoadBalancingPolicy } from './loadbalancing/index.js';
import type { EndpointUpstream } from './upstream.js';

/** A request waiting for a token. */
export interface Waiter extends QueueLinks {
  /** performance.now() time after which the waiter fails with QUEUE_TIMEOUT. */
  deadline: number;
  /** The waiter got a token on `endpoint` (already counted in inFlight). */
  grant(endpoint: EndpointState): void;
}

/** One ready sandbox of a function, as the data plane routes to it. */
export class EndpointState {
  /** Requests holding one of this endpoint's tokens. */
  inFlight = 0;
  /** Removed from routing; in-flight requests finish, nothing new arrives. */
  draining = false;
  /** The epoch of the change that added it (0 for an unversioned add). */
  epoch = 0n;
  private idleWaiters: (() => void)[] | null = null;

  constructor(
    readonly sandboxId: string,
    /** host:port as the worker advertises it. */
    readonly address: string,
    readonly workerId: string,
    /** The keep-alive connections to the sandbox. */
    readonly upstream: EndpointUpstream,
  ) {}

  /** Resolves once no request holds a token (at once if none does). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idleWaiters ??= []).push(resolve));
  }

  /** @internal Called by FunctionState when inFlight reaches 0. */
  notifyIdle(): void {
    const waiters = this.idleWaiters;
    if (!waiters) return;
    this.idleWaiters = null;
    for (const w of waiters) w();
  }
}

const STATUS_CLASSES = 6;

export class FunctionState {
  spec: FunctionSpec;
  revision: bigint;
  /** containerConcurrency: tokens per endpoint, 0 = unlimited. */
  concurrency: number;
  timeoutMs: number;
  /** Picks an endpoint per request; replaced only when the policy's name changes. */
  policy: LoadBalancingPolicy;
  /** Routable endpoints, in the order they were added. */
  readonly endpoints: EndpointState[] = [];
  private readonly bySandbox = new Map<string, EndpointState>();
  readonly queue = new ColdStartQueue<Waiter>();
  /** Requests holding a token, on any endpoint (draining ones included). */
  inFlight = 0;
  /** Set once RemoveFunction took the function out of the table. */
  removed = false;
  /** The order of the function's changes (epochs.ts). */
  readonly chain = new DeltaChain();
  /**
   * The epoch at which each recently removed endpoint was removed, so an
   * older add that arrives late does not bring it back. Cleared whenever the
   * chain is complete, as nothing older can arrive then.
   */
  readonly tombstones = new Map<string, bigint>();

  // Control-plane reporting, owned by the data plane.
  /** In the set of functions the periodic report covers. */
  reportActive = false;
  urgentInFlight = false;
  urgentPending = false;
  /**
   * inFlight + queued summed over the housekeeping ticks since the last
   * periodic report, and the number of ticks: the report carries their
   * quotient, so load between two reports is not lost.
   */
  concurrencySampleSum = 0;
  concurrencySamples = 0;

  /** Responses by status class (index 2 = 2xx, …), read by the metrics at scrape time. */
  readonly responses: number[] = new Array<number>(STATUS_CLASSES).fill(0);

  constructor(
    spec: FunctionSpec,
    revision: bigint,
    /** The data plane's policy for functions whose spec names none. */
    readonly defaultPolicy: LoadBalancingPolicyName,
  ) {
    this.spec = spec;
    this.revision = revision;
    this.concurrency = spec.scaling.containerConcurrency;
    this.timeoutMs = spec.timeoutMs;
    this.policy = createLoadBalancingPolicy(spec.loadBalancing ?? defaultPolicy);
  }

  get name(): string {
    return this.spec.name;
  }

  get queued(): number {
    return this.queue.length;
  }

  /**
   * Applies a newer spec. Returns false for a stale revision (older than the
   * one held). A raised concurrency frees tokens, so waiters may be granted.
   * A new policy name swaps the policy; the same name keeps the instance and
   * its cursor. `force` applies an older revision too: the function was
   * deleted and registered again, and its revisions started over.
   */
  update(spec: FunctionSpec, revision: bigint, force = false): boolean {
    if (revision < this.revision && !force) return false;
    this.spec = spec;
    this.revision = revision;
    this.concurrency = spec.scaling.containerConcurrency;
    this.timeoutMs = spec.timeoutMs;
    const policyName = spec.loadBalancing ?? this.defaultPolicy;
    if (policyName !== this.policy.name) this.policy = createLoadBalancingPolicy(policyName);
    this.pump();
    return true;
  }

  /** The epoch of the latest change applied to an endpoint (its add, or its removal), 0 if none is known. */
  changedAt(sandboxId: string): bigint {
    return this.bySandbox.get(sandboxId)?.epoch ?? this.tombstones.get(sandboxId) ?? 0n;
  }

  hasEndpoint(sandboxId: string): boolean {
    return this.bySandbox.has(sandboxId);
  }

  getEndpoint(sandboxId: string): EndpointState | undefined {
    return this.bySandbox.get(sandboxId);
  }

  /** Adds a routable endpoint and hands its tokens to waiters. */
  addEndpoint(ep: EndpointState): void {
    this.bySandbox.set(ep.sandboxId, ep);
    this.endpoints.push(ep);
    this.pump();
  }

  /** Stops routing to an endpoint; its in-flight requests carry on. */
  removeEndpoint(sandboxId: string): EndpointState | undefined {
    const ep = this.bySandbox.get(sandboxId);
    if (!ep) return undefined;
    this.bySandbox.delete(sandboxId);
    const i = this.endpoints.indexOf(ep);
    if (i >= 0) this.endpoints.splice(i, 1);
    ep.draining = true;
    if (ep.inFlight === 0) ep.notifyIdle();
    return ep;
  }

  /** Takes a token on an endpoint chosen by the policy, or returns null. */
  acquire(): EndpointState | null {
    const i = this.policy.pick(this.endpoints, this.concurrency);
    if (i < 0) return null;
    const ep = this.endpoints[i] as EndpointState;
    ep.inFlight++;
    this.inFlight++;
    return ep;
  }

  /** Returns a token; the head waiter, if any, gets it at once. */
  release(ep: EndpointState): void {
    ep.inFlight--;
    this.inFlight--;
    if (ep.draining) {
      if (ep.inFlight === 0) ep.notifyIdle();
      return;
    }
    const w = this.queue.peek();
    if (w !== null && (this.concurrency === 0 || ep.inFlight < this.concurrency)) {
      this.queue.shift();
      ep.inFlight++;
      this.inFlight++;
      w.grant(ep);
    }
  }

  /** Grants tokens to waiters in FIFO order while any is free. Returns how many. */
  pump(): number {
    let granted = 0;
    while (this.queue.length > 0) {
      const ep = this.acquire();
      if (!ep) break;
      const w = this.queue.shift() as Waiter;
      granted++;
      w.grant(ep);
    }
    return granted;
  }

  /** Takes out the waiters whose deadline has passed, oldest first. */
  takeExpired(now: number): Waiter[] | null {
    let expired: Waiter[] | null = null;
    for (let w = this.queue.peek(); w !== null && w.deadline <= now; w = this.queue.peek()) {
      this.queue.shift();
      (expired ??= []).push(w);
    }
    return expired;
  }

  countResponse(status: number): void {
    const c = (status / 100) | 0;
    this.responses[c < STATUS_CLASSES ? c : 0]!++;
  }
}
