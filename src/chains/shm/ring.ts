// A bounded multi-producer/multi-consumer ring of descriptors on a
// SharedArrayBuffer: Dmitry Vyukov's array queue (each cell carries a
// sequence number; producers and consumers claim positions with one CAS and
// publish with one store), so no thread ever holds a lock another must wait
// for. A chain uses one ring per node (the gateway and each member: SPRIGHT's
// `SPRIGHT_RING_<id>`, reference/spright-kubedirect.md §1.2) and one as the
// pool's free list.
//
// Waking is event-driven, not polling (S-SPRIGHT, not D-SPRIGHT): every
// enqueue bumps a signal word and notifies it; an idle consumer sleeps in
// Atomics.waitAsync (or Atomics.wait) on the value it last saw, so a consumer
// that missed an enqueue never sleeps through it and an idle one costs no CPU.
//
// Positions are int32 and wrap; every comparison is on the difference, which
// stays right across the wrap as long as fewer than 2^31 operations are in
// flight at once.

/** Words of control before the cells: head, tail, signal; padded to 16 words so they sit on their own cache line. */
const CONTROL_WORDS = 16;
const HEAD = 0;
const TAIL = 1;
const SIGNAL = 2;
/** Words of payload per cell: a descriptor is (pool id, slot, generation). */
export const DESCRIPTOR_WORDS = 3;

/** A reference to one slot of one pool. The generation makes a descriptor kept past the slot's free detectably stale. */
export interface Descriptor {
  readonly poolId: number;
  readonly slot: number;
  readonly generation: number;
}

/** The bytes a ring of `capacity` cells takes (capacity a power of two). */
export function ringBytes(capacity: number): number {
  return (CONTROL_WORDS + capacity + capacity * DESCRIPTOR_WORDS) * 4;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

type WaitAsync = (ta: Int32Array, index: number, value: number, timeoutMs?: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export class DescriptorRing {
  private readonly control: Int32Array;
  private readonly seq: Int32Array;
  private readonly cells: Int32Array;
  private readonly mask: number;

  /**
   * A view of a ring at `byteOffset` of `sab`. `init` writes the empty ring;
   * every other thread attaches without it.
   */
  constructor(sab: SharedArrayBuffer, byteOffset: number, readonly capacity: number, init = false) {
    if (!isPowerOfTwo(capacity)) throw new RangeError(`ring capacity must be a power of two, not ${capacity}`);
    this.mask = capacity - 1;
    this.control = new Int32Array(sab, byteOffset, CONTROL_WORDS);
    this.seq = new Int32Array(sab, byteOffset + CONTROL_WORDS * 4, capacity);
    this.cells = new Int32Array(sab, byteOffset + (CONTROL_WORDS + capacity) * 4, capacity * DESCRIPTOR_WORDS);
    if (init) {
      Atomics.store(this.control, HEAD, 0);
      Atomics.store(this.control, TAIL, 0);
      Atomics.store(this.control, SIGNAL, 0);
      for (let i = 0; i < capacity; i++) Atomics.store(this.seq, i, i);
    }
  }

  /** Adds a descriptor and wakes a sleeping consumer. Returns false when the ring is full: it never blocks. */
  enqueue(poolId: number, slot: number, generation: number): boolean {
    let pos = Atomics.load(this.control, TAIL);
    for (;;) {
      const cell = pos & this.mask;
      const dif = (Atomics.load(this.seq, cell) - pos) | 0;
      if (dif === 0) {
        const next = (pos + 1) | 0;
        const seen = Atomics.compareExchange(this.control, TAIL, pos, next);
        if (seen === pos) {
          const at = cell * DESCRIPTOR_WORDS;
          this.cells[at] = poolId;
          this.cells[at + 1] = slot;
          this.cells[at + 2] = generation;
          // The store of the sequence publishes the cell (Atomics are sequentially consistent).
          Atomics.store(this.seq, cell, next);
          Atomics.add(this.control, SIGNAL, 1);
          Atomics.notify(this.control, SIGNAL);
          return true;
        }
        pos = seen;
      } else if (dif < 0) {
        return false;
      } else {
        pos = Atomics.load(this.control, TAIL);
      }
    }
  }

  /** Takes the oldest descriptor, or undefined when the ring is empty. */
  dequeue(): Descriptor | undefined {
    let pos = Atomics.load(this.control, HEAD);
    for (;;) {
      const cell = pos & this.mask;
      const dif = (Atomics.load(this.seq, cell) - ((pos + 1) | 0)) | 0;
      if (dif === 0) {
        const seen = Atomics.compareExchange(this.control, HEAD, pos, (pos + 1) | 0);
        if (seen === pos) {
          const at = cell * DESCRIPTOR_WORDS;
          const d: Descriptor = { poolId: this.cells[at] ?? 0, slot: this.cells[at + 1] ?? 0, generation: this.cells[at + 2] ?? 0 };
          Atomics.store(this.seq, cell, (pos + this.mask + 1) | 0);
          return d;
        }
        pos = seen;
      } else if (dif < 0) {
        return undefined;
      } else {
        pos = Atomics.load(this.control, HEAD);
      }
    }
  }

  /** How many descriptors are queued (a snapshot; exact only when nobody is enqueuing or dequeuing). */
  size(): number {
    return (Atomics.load(this.control, TAIL) - Atomics.load(this.control, HEAD)) | 0;
  }

  /** The wake-up counter: read it before a dequeue that finds nothing, then wait on that value. */
  signal(): number {
    return Atomics.load(this.control, SIGNAL);
  }

  /** Resolves once an enqueue happened after `signal()` returned `seen` (at once if one already did), or after timeoutMs. */
  async waitAsync(seen: number, timeoutMs?: number): Promise<void> {
    const r = waitAsync(this.control, SIGNAL, seen, timeoutMs);
    if (r.async) await r.value;
  }

  /** The blocking form, for threads that have nothing else to do. Not allowed on a main thread. */
  waitSync(seen: number, timeoutMs?: number): void {
    Atomics.wait(this.control, SIGNAL, seen, timeoutMs);
  }

  /** Wakes every waiter without enqueuing (to make a consumer loop notice it should stop). */
  wake(): void {
    Atomics.add(this.control, SIGNAL, 1);
    Atomics.notify(this.control, SIGNAL);
  }
}
