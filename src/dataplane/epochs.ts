// The order of one function's changes, as a data plane receives them.
//
// The control plane stamps every change with an epoch from one increasing
// sequence and with the epoch of the function's previous change, so each
// function's changes form a chain. Concurrent RPCs may arrive in any order;
// the chain tells the data plane two things:
//
// - `base`: every change up to it is reflected in what the data plane holds.
//   A delta at or below it is stale and ignored.
// - gaps: a delta names a previous epoch that has not arrived. Usually it is
//   a concurrent RPC still on its way; if it has not come after a grace
//   period, it was lost, and the data plane asks for the function's full
//   state (ControlPlaneService.ReportGaps).
//
// When no epoch is awaited the chain is complete and `base` moves to its
// head: nothing older can arrive any more, so the per-endpoint tombstones
// kept to order concurrent deltas can be dropped (the caller does it when
// accept() says so).
//
// This module does no I/O and keeps O(out-of-order deltas) state.

export class DeltaChain {
  /** Every change up to this epoch is reflected. */
  base = 0n;
  /** The highest epoch applied (base, a snapshot, or a delta). */
  head = 0n;
  /** Applied epochs whose successor has not arrived yet. */
  private readonly unreferenced = new Set<bigint>();
  /** Epochs named as previous by an applied delta, but not arrived: since when (ms). */
  private readonly awaited = new Map<bigint, number>();

  /**
   * Records a delta. Returns 'stale' for one the state already covers (it
   * must be ignored), 'applied' otherwise, or 'complete' when it also closed
   * every gap (base is now head).
   */
  accept(epoch: bigint, previous: bigint, nowMs: number): 'stale' | 'applied' | 'complete' {
    if (epoch <= this.base || this.unreferenced.has(epoch)) return 'stale';
    if (!this.awaited.delete(epoch)) this.unreferenced.add(epoch);
    if (previous > this.base && !this.unreferenced.delete(previous)) {
      if (!this.awaited.has(previous)) this.awaited.set(previous, nowMs);
    }
    if (epoch > this.head) this.head = epoch;
    return this.compact() ? 'complete' : 'applied';
  }

  /**
   * A snapshot covering every change up to `epoch`. Returns false when the
   * chain already covers it (the snapshot is stale and must be ignored).
   */
  snapshot(epoch: bigint): boolean {
    if (epoch <= this.base) return false;
    this.base = epoch;
    if (epoch > this.head) this.head = epoch;
    for (const e of this.unreferenced) if (e <= epoch) this.unreferenced.delete(e);
    for (const e of this.awaited.keys()) if (e <= epoch) this.awaited.delete(e);
    this.compact();
    return true;
  }

  /** Whether an awaited epoch has been missing for at least graceMs. */
  hasGap(nowMs: number, graceMs: number): boolean {
    for (const since of this.awaited.values()) if (nowMs - since >= graceMs) return true;
    return false;
  }

  /** Whether every change up to head has arrived. */
  get complete(): boolean {
    return this.awaited.size === 0;
  }

  private compact(): boolean {
    if (this.awaited.size > 0) return false;
    this.base = this.head;
    this.unreferenced.clear();
    return true;
  }
}
