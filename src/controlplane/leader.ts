// Leader election for replicated control planes, on etcd (issue 5): a lease
// and an election through etcd3's Election, as Kubernetes' controllers and
// etcd's own `election` API do, instead of Dirigent's hand-written Raft.
//
// Every replica campaigns with its own URL as the value (so values are
// unique). etcd keeps each campaign key under a lease of `leaseTtlSec`, kept
// alive by the client; the leader is the key created first. Every replica
// observes the election: it leads when the observed leader is itself, and
// followers know the leader's URL (to redirect admin calls to it). When the
// leader dies, its lease expires within the TTL, its key goes, and the next
// key in line leads.
//
// Lifecycle: start() → (FOLLOWER ⇄ LEADER)… → stop(). A campaign that fails
// (etcd unreachable, the lease lost) makes a leader step down at once, since
// another replica may be elected while it cannot tell, and campaigns again
// after a back-off.
import { Etcd3, type Campaign, type Election, type ElectionObserver } from 'etcd3';
import type { Logger } from '../shared/logging.js';

export type LeadershipState = 'STOPPED' | 'FOLLOWER' | 'LEADER';

export interface LeaderElectionOptions {
  /** etcd client URLs, e.g. http://127.0.0.1:2379. */
  readonly endpoints: readonly string[];
  /** The election's name: replicas of one cluster share it. */
  readonly name: string;
  /** What this replica campaigns with: the URL others redirect to. */
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
  private readonly election: Election;
  private campaign: Campaign | undefined;
  private observer: ElectionObserver | undefined;
  private current: LeadershipState = 'STOPPED';
  private leaderValue: string | undefined;
  private stopped = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: LeaderElectionOptions) {
    this.client = new Etcd3({ hosts: [...options.endpoints], dialTimeout: 2000 });
    this.election = this.client.election(options.name, options.leaseTtlSec);
  }

  get state(): LeadershipState {
    return this.current;
  }

  /** The leader's URL as last observed, or undefined when there is none (or we cannot tell). */
  get leader(): string | undefined {
    return this.leaderValue;
  }

  start(): void {
    this.set('FOLLOWER');
    this.runCampaign();
    void this.observe();
  }

  /** Resigns if leading, so a follower takes over at once rather than after the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const campaign = this.campaign;
    this.campaign = undefined;
    await campaign?.resign().catch(() => undefined);
    await this.observer?.cancel().catch(() => undefined);
    this.set('STOPPED');
    this.client.close();
  }

  private runCampaign(): void {
    if (this.stopped) return;
    const campaign = this.election.campaign(this.options.self);
    this.campaign = campaign;
    // Leadership follows the observer (the campaign key created first, as etcd's own
    // concurrency package defines it), not the campaign's 'elected' event: etcd3 1.1
    // emitted 'elected' for one replica while every observer named another.
    campaign.on('elected', () => {
      if (this.campaign === campaign) this.retryMs = RETRY_MIN_MS;
    });
    campaign.on('error', (err: Error) => {
      if (this.campaign !== campaign || this.stopped) return;
      this.campaign = undefined;
      // We may have lost the lease: another replica can be elected meanwhile.
      this.options.log.warn({ err: err.message, retryMs: this.retryMs }, 'leader campaign failed; stepping down and campaigning again');
      this.set('FOLLOWER');
      this.retryTimer = setTimeout(() => this.runCampaign(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  private async observe(): Promise<void> {
    if (this.stopped) return;
    try {
      const observer = await this.election.observe();
      if (this.stopped) {
        await observer.cancel();
        return;
      }
      this.observer = observer;
      this.observed(observer.leader());
      observer.on('change', (value: string | undefined) => this.observed(value));
      observer.on('error', () => {
        this.observed(undefined);
        if (!this.stopped) setTimeout(() => void this.observe(), RETRY_MIN_MS).unref();
      });
    } catch {
      if (!this.stopped) setTimeout(() => void this.observe(), this.retryMs).unref();
    }
  }

  private observed(value: string | undefined): void {
    this.leaderValue = value;
    if (this.stopped) return;
    if (this.campaign !== undefined && value === this.options.self) {
      if (this.current !== 'LEADER') this.options.log.info({ self: this.options.self }, 'elected leader');
      this.set('LEADER');
    } else if (value !== undefined && value !== this.options.self) {
      // Only another replica named as leader ends this one's leadership; an observer that
      // lost its watch (undefined) is not news about the election: the campaign's own
      // error is, and it steps down there.
      this.set('FOLLOWER');
    }
  }

  private set(state: LeadershipState): void {
    if (this.current === state) return;
    this.current = state;
    this.options.onChange(state);
  }
}
