// Where a data plane keeps its async invocations: a durable queue plus the
// results, behind one small interface with two backends (store-sqlite.ts,
// store-redis.ts) that pass one conformance suite (store.conformance.ts).
//
// An invocation's life in the store:
//
//   add ──▶ queued ──claim──▶ running ──finish──▶ succeeded | failed ──sweep (after expiresAt)──▶ gone
//             ▲                  │
//             └──── requeue ─────┘   (a retry, after its back-off: notBefore)
//             └──── recover ─────┘   (at start: a run the last process never finished)
//
// Every call returns once its write is durable (SQLite: fsynced WAL; Redis:
// the AOF with appendfsync always), so an id handed to a client, or a
// result, survives kill -9 of the data plane.
//
// One data plane owns a store (a SQLite file, or a Redis key prefix): claim
// and recover assume nobody else runs its invocations.

export type InvocationState = 'queued' | 'running' | 'succeeded' | 'failed';

/** What an attempt (or the data plane, for it) answered. */
export interface InvocationResult {
  readonly status: number;
  /** Response headers as [name, value] pairs, in order (names as the sandbox sent them). */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array;
  /** When the data plane answered for the sandbox (timeout, crash, unknown function): its error code. */
  readonly errorCode?: string;
}

export interface NewInvocation {
  readonly id: string;
  readonly function: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly submittedAt: number;
}

export interface StoredInvocation extends NewInvocation {
  readonly state: InvocationState;
  /** Attempts whose outcome was recorded, plus the one running. */
  readonly attempts: number;
  /** A queued invocation is not claimed before this time (ms since the epoch). */
  readonly notBefore: number;
  readonly finishedAt: number | null;
  /** A finished invocation is deleted by the first sweep at or after this time. */
  readonly expiresAt: number | null;
  /** The last attempt's result: final once finished, the failed attempt's while a retry waits. */
  readonly result: InvocationResult | null;
}

export interface AsyncQueueStore {
  readonly kind: string;
  /** Adds a queued invocation, claimable at once. */
  add(inv: NewInvocation): Promise<void>;
  /**
   * Moves up to `max` queued invocations whose notBefore is at most `now` to
   * running, oldest notBefore first, adding one attempt to each.
   */
  claim(max: number, now: number): Promise<StoredInvocation[]>;
  /** A running invocation goes back to the queue, claimable from `notBefore`, keeping the failed attempt's result. */
  requeue(id: string, notBefore: number, result: InvocationResult): Promise<void>;
  /** A running invocation ends: its result is kept until `expiresAt`. */
  finish(id: string, state: 'succeeded' | 'failed', result: InvocationResult, finishedAt: number, expiresAt: number): Promise<void>;
  get(id: string): Promise<StoredInvocation | undefined>;
  /**
   * At start: every running invocation (its process died mid-run) goes back
   * to queued, claimable at once, and its unfinished attempt is not counted.
   * Returns how many.
   */
  recover(): Promise<number>;
  /** Queued and running invocations. */
  unfinished(): Promise<number>;
  /** Deletes finished invocations with expiresAt at most `now`; returns how many. */
  sweep(now: number): Promise<number>;
  close(): Promise<void>;
}
