// Leader election for replicated control planes, on etcd (issue 5): a lease
// and one key, instead of Dirigent's hand-written Raft.
//
// The leader is whoever holds the key `<name>/leader`. A replica grants
// itself a lease of `leaseTtlSec`, kept alive by the etcd3 client, and tries
// a transaction: if the key does not exist, create it with its own URL under
// that lease. The one that succeeds leads; the others read the key (the
// leader's URL, which followers redirect admin calls to) and watch it. When
// the leader dies its lease expires within the TTL, etcd deletes the key, the
// watchers see the delete, and every follower tries the transaction again:
// exactly one wins. A leader that resigns (a clean stop) deletes the key, so
// the hand-over is immediate.
//
// A first version used etcd3's Election and ElectionObserver: with three
// processes, their observers disagreed about the leader in most runs, and
// sometimes no replica believed it led. One key read and written in
// transactions has no such ambiguity.
//
// Lifecycle: start() → (FOLLOWER ⇄ LEADER)… → stop(). A lost lease (etcd
// unreachable past the TTL) makes a leader step down at once, since another
// replica may be elected while it cannot tell; it then tries again with a
// fresh lease, with back-off.
import { Etcd3, type Lease, type Watcher } from 'etcd3';
import type { Logger } from '../shared/logging.js';

export type LeadershipState = 'STOPPED' | 'FOLLOWER' | 'LEADER';

export interface LeaderElectionOptions {
  /** etcd client URLs, e.g. http://127.0.0.1:2379. */
  readonly endpoints: readonly string[];
  /** The election's name: replicas of one cluster share it. */
  readonly name: string;
  /** What this replica is known by: the URL others redirect to. Unique per replica. */
  readonly self: string;
  readonly leaseTtlSec: number;
  readonly log: Logger;
  /** Called on every change of this replica's role. */
  readonly onChange: (state: LeadershipState) => void;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;

export class LeaderElection {
  private readonly client: Etcd3;
  private readonly key: string;
  private lease: Lease | undefined;
  private watcher: Watcher | undefined;
  private current: LeadershipState = 'STOPPED';
  private leaderValue: string | undefined;
  private stopped = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private attempting = false;

  constructor(private readonly options: LeaderElectionOptions) {
    this.client = new Etcd3({ hosts: [...options.endpoints], dialTimeout: 2000 });
    this.key = `${options.name}/leader`;
  }

  get state(): LeadershipState {
    return this.current;
  }

  /** The leader's URL as last read, or undefined when there is none (or we cannot tell). */
  get leader(): string | undefined {
    return this.leaderValue;
  }

  start(): void {
    this.set('FOLLOWER');
    void this.watch();
    void this.attempt();
    // A safety net under the watch: re-read the key every half TTL, and try to take it
    // when it is free (a missed delete would otherwise leave everyone following no one).
    this.refreshTimer = setInterval(() => void this.attempt(), Math.max(250, (this.options.leaseTtlSec * 1000) / 2));
    this.refreshTimer.unref();
  }

  /** Resigns if leading (deletes the key), so a follower takes over at once rather than after the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.refreshTimer);
    if (this.current === 'LEADER') {
      await this.client
        .if(this.key, 'Value', '==', this.options.self)
        .then(this.client.delete().key(this.key))
        .commit()
        .catch(() => undefined);
    }
    await this.lease?.revoke().catch(() => undefined);
    await this.watcher?.cancel().catch(() => undefined);
    this.set('STOPPED');
    this.client.close();
  }

  /** Takes the key if it is free; otherwise learns who holds it. */
  private async attempt(): Promise<void> {
    if (this.stopped || this.attempting) return;
    this.attempting = true;
    try {
      const lease = this.lease ?? this.newLease();
      const leaseId = await lease.grant();
      const res = await this.client
        .if(this.key, 'Create', '==', 0)
        .then(this.client.put(this.key).value(this.options.self).lease(leaseId))
        .else(this.client.get(this.key))
        .commit();
      if (this.stopped) return;
      this.retryMs = RETRY_MIN_MS;
      if (res.succeeded) {
        this.leaderValue = this.options.self;
      } else {
        const kv = res.responses[0]?.response_range?.kvs?.[0];
        this.leaderValue = kv ? kv.value.toString() : undefined;
      }
      const leading = this.leaderValue === this.options.self;
      if (leading && this.current !== 'LEADER') this.options.log.info({ self: this.options.self }, 'elected leader');
      this.set(leading ? 'LEADER' : 'FOLLOWER');
    } catch (err) {
      if (this.stopped) return;
      this.options.log.warn({ err: (err as Error).message, retryMs: this.retryMs }, 'leader election: etcd call failed; trying again');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.attempt(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    } finally {
      this.attempting = false;
    }
  }

  private newLease(): Lease {
    const lease = this.client.lease(this.options.leaseTtlSec);
    lease.on('lost', (err: Error) => {
      if (this.lease !== lease || this.stopped) return;
      // Our key went with the lease, or will: another replica may lead already.
      this.lease = undefined;
      this.options.log.warn({ err: err.message }, 'leader election: lease lost; stepping down');
      this.set('FOLLOWER');
      this.leaderValue = undefined;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.attempt(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
    this.lease = lease;
    return lease;
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    try {
      const watcher = await this.client.watch().key(this.key).create();
      if (this.stopped) {
        await watcher.cancel();
        return;
      }
      this.watcher = watcher;
      watcher.on('put', (kv) => {
        this.leaderValue = kv.value.toString();
        if (this.leaderValue !== this.options.self) this.set('FOLLOWER');
      });
      // The leader resigned or its lease expired: every replica tries to take the key.
      watcher.on('delete', () => {
        this.leaderValue = undefined;
        if (this.current === 'LEADER') this.set('FOLLOWER');
        void this.attempt();
      });
      watcher.on('error', () => {
        if (this.watcher !== watcher || this.stopped) return;
        this.watcher = undefined;
        setTimeout(() => void this.watch(), RETRY_MIN_MS).unref();
      });
    } catch {
      if (!this.stopped) setTimeout(() => void this.watch(), this.retryMs).unref();
    }
  }

  private set(state: LeadershipState): void {
    if (this.current === state) return;
    this.current = state;
    this.options.onChange(state);
  }
}
