// Timed buckets of concurrency samples, the autoscaler's memory of recent
// load (Knative's TimedFloat64Buckets, pkg/autoscaler/aggregation).
//
// A sample lands in the bucket of its time (granularity `bucketMs`); a bucket
// holding several samples stands for their mean. A window average is the
// mean over the buckets inside the window that hold samples: the control
// plane records a sample on every scaling tick (0 when idle), so a bucket
// without one is timer jitter or a control plane that was not running, not
// idleness, and counting it as 0 would bias the average low. With no bucket
// in the window there is no data: the caller decides what that means.
//
// Buckets older than the retention (the longest window asked for) are
// dropped on record(), so memory stays at window / bucketMs entries.

interface Bucket {
  /** floor(time / bucketMs) */
  index: number;
  sum: number;
  count: number;
}

export class TimedBuckets {
  /** Oldest first. */
  private readonly buckets: Bucket[] = [];

  constructor(
    readonly bucketMs: number,
    private retentionMs: number,
  ) {
    if (!(bucketMs > 0)) throw new RangeError('bucketMs must be positive');
  }

  /** Keeps at least this much history (the stable window can grow with a PATCH). */
  retain(ms: number): void {
    this.retentionMs = ms;
  }

  record(nowMs: number, value: number): void {
    const index = Math.floor(nowMs / this.bucketMs);
    const last = this.buckets[this.buckets.length - 1];
    if (last && last.index === index) {
      last.sum += value;
      last.count += 1;
    } else if (last && last.index > index) {
      return; // the clock went back: ignore rather than reorder
    } else {
      this.buckets.push({ index, sum: value, count: 1 });
    }
    const oldest = Math.floor((nowMs - this.retentionMs) / this.bucketMs);
    let drop = 0;
    while (drop < this.buckets.length && (this.buckets[drop] as Bucket).index <= oldest) drop++;
    if (drop > 0) this.buckets.splice(0, drop);
  }

  /**
   * The mean over the buckets in (now − window, now], or undefined when the
   * window holds no sample.
   */
  average(nowMs: number, windowMs: number): number | undefined {
    const oldest = Math.floor((nowMs - windowMs) / this.bucketMs);
    const newest = Math.floor(nowMs / this.bucketMs);
    let total = 0;
    let n = 0;
    for (let i = this.buckets.length - 1; i >= 0; i--) {
      const b = this.buckets[i] as Bucket;
      if (b.index <= oldest) break;
      if (b.index > newest) continue;
      total += b.sum / b.count;
      n += 1;
    }
    return n === 0 ? undefined : total / n;
  }

  get size(): number {
    return this.buckets.length;
  }
}
