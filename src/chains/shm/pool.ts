// A chain's shared memory: one SharedArrayBuffer holding a pool of
// fixed-size slots, the free list, one descriptor ring per node of the chain
// (node 0 is the gateway) and per-node load counters. It is SPRIGHT's
// memzone + rte_mempool + rings (reference/spright-kubedirect.md §1.1-1.2),
// in one buffer so that one postMessage hands a thread all of it.
//
// A message is a slot; it is never serialised between nodes, only its
// descriptor (pool id, slot, generation) moves. The generation is bumped on
// every free, so a descriptor kept past its slot's free (or freed twice) is
// detected as stale; the pool id, random per pool, makes a descriptor of
// another chain's pool fail the same check. Allocation never blocks: an
// empty free list is a "full" answer for the caller to turn into a 503.
//
// Layout (bytes): control (64) | counters (nodes × 16) | free ring |
// nodes × ring | slots × slotBytes. Each slot starts with a 128-byte header:
// word 0 generation, word 1 status, words 2-31 belong to the message layer.
import { randomInt } from 'node:crypto';
import { BatonError } from '../../shared/errors.js';
import { DescriptorRing, isPowerOfTwo, ringBytes, type Descriptor } from './ring.js';

const MAGIC = 0x5052_4754; // "PRGT"
const CONTROL_BYTES = 64;
const C_MAGIC = 0;
const C_POOL_ID = 1;
const C_SLOTS = 2;
const C_SLOT_BYTES = 3;
const C_NODES = 4;
const C_RING_CAPACITY = 5;
const C_IN_USE = 6;
const C_FREE_RING_CAPACITY = 7;

/** Words of load counters per node: in flight, completed, failed, spare. */
const COUNTER_WORDS = 4;
const K_IN_FLIGHT = 0;
const K_COMPLETED = 1;
const K_FAILED = 2;

export const SLOT_HEADER_BYTES = 128;
const H_GENERATION = 0;
const H_STATUS = 1;
/** The first header word the message layer may use. */
export const SLOT_HEADER_FIRST_FREE_WORD = 2;

const FREE = 0;
const IN_USE = 1;

/** Largest slot count a pool may have (a descriptor's slot is an int32, but 64 Ki slots is already 4 GiB at 64 KiB). */
export const MAX_SLOTS = 65_536;

export interface ChainMemoryOptions {
  /** Slots in the pool: at most this many messages are in the chain at once. */
  readonly slots: number;
  /** Bytes per slot, header included; a multiple of 8. */
  readonly slotBytes: number;
  /** Nodes of the chain, the gateway included: one ring and one set of counters each. */
  readonly nodes: number;
  /** Only for a mirror of another process's pool (the cross-process transport): that pool's id. */
  readonly poolId?: number;
}

export interface NodeLoad {
  readonly inFlight: number;
  readonly completed: number;
  readonly failed: number;
}

/** The pool, rings and counters of one chain, as seen from one thread. */
export class ChainMemory {
  readonly poolId: number;
  readonly slots: number;
  readonly slotBytes: number;
  readonly nodes: number;
  /** Ring `n` is where node `n` receives descriptors (io_rx); anyone may send to it (io_tx). */
  readonly rings: readonly DescriptorRing[];
  private readonly control: Int32Array;
  private readonly counters: Int32Array;
  private readonly freeList: DescriptorRing;
  private readonly slotsOffset: number;
  /** Per-slot views, made once. */
  private readonly headers: Int32Array[] = [];
  private readonly bytes: Buffer[] = [];

  /** Makes a new, empty chain memory with a fresh pool id. */
  static create(options: ChainMemoryOptions): ChainMemory {
    const { slots, slotBytes, nodes } = options;
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) throw new RangeError(`slots must be 1..${MAX_SLOTS}, not ${slots}`);
    if (!Number.isInteger(slotBytes) || slotBytes <= SLOT_HEADER_BYTES || slotBytes % 8 !== 0) {
      throw new RangeError(`slotBytes must be a multiple of 8 above ${SLOT_HEADER_BYTES}, not ${slotBytes}`);
    }
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 256) throw new RangeError(`nodes must be 1..256, not ${nodes}`);
    // Every ring can hold every slot, so an enqueue of a slot that was allocated never finds a ring full.
    const ringCapacity = nextPowerOfTwo(slots);
    const sab = new SharedArrayBuffer(layout(slots, slotBytes, nodes, ringCapacity).total);
    const control = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    control[C_MAGIC] = MAGIC;
    // Never 0, so that a zeroed descriptor is never valid.
    control[C_POOL_ID] = options.poolId ?? randomInt(1, 2 ** 31 - 1);
    control[C_SLOTS] = slots;
    control[C_SLOT_BYTES] = slotBytes;
    control[C_NODES] = nodes;
    control[C_RING_CAPACITY] = ringCapacity;
    control[C_FREE_RING_CAPACITY] = ringCapacity;
    const memory = new ChainMemory(sab, true);
    for (let s = 0; s < slots; s++) {
      const h = memory.header(s);
      Atomics.store(h, H_GENERATION, 1);
      Atomics.store(h, H_STATUS, FREE);
      memory.freeList.enqueue(memory.poolId, s, 1);
    }
    return memory;
  }

  /** Attaches to a chain memory another thread created (the buffer came by postMessage). */
  static attach(sab: SharedArrayBuffer): ChainMemory {
    return new ChainMemory(sab, false);
  }

  private constructor(readonly buffer: SharedArrayBuffer, init: boolean) {
    this.control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    if (this.control[C_MAGIC] !== MAGIC) throw new RangeError('not a chain memory buffer');
    this.poolId = this.control[C_POOL_ID] ?? 0;
    this.slots = this.control[C_SLOTS] ?? 0;
    this.slotBytes = this.control[C_SLOT_BYTES] ?? 0;
    this.nodes = this.control[C_NODES] ?? 0;
    const ringCapacity = this.control[C_RING_CAPACITY] ?? 0;
    const l = layout(this.slots, this.slotBytes, this.nodes, ringCapacity);
    this.counters = new Int32Array(buffer, l.counters, this.nodes * COUNTER_WORDS);
    this.freeList = new DescriptorRing(buffer, l.freeRing, ringCapacity, init);
    const rings: DescriptorRing[] = [];
    for (let n = 0; n < this.nodes; n++) rings.push(new DescriptorRing(buffer, l.rings + n * ringBytes(ringCapacity), ringCapacity, init));
    this.rings = rings;
    this.slotsOffset = l.slots;
    for (let s = 0; s < this.slots; s++) {
      const at = this.slotsOffset + s * this.slotBytes;
      this.headers.push(new Int32Array(buffer, at, SLOT_HEADER_BYTES / 4));
      this.bytes.push(Buffer.from(buffer, at + SLOT_HEADER_BYTES, this.slotBytes - SLOT_HEADER_BYTES));
    }
  }

  /** Takes a free slot, or undefined when every slot is in use: the caller answers "full", it never waits. */
  alloc(): Descriptor | undefined {
    const d = this.freeList.dequeue();
    if (!d) return undefined;
    const h = this.header(d.slot);
    Atomics.store(h, H_STATUS, IN_USE);
    Atomics.add(this.control, C_IN_USE, 1);
    // The message layer's words start clean for every message.
    h.fill(0, SLOT_HEADER_FIRST_FREE_WORD);
    return d;
  }

  /**
   * Returns a slot to the pool. A stale descriptor (freed already, or not of
   * this pool) throws CHAIN_STALE_DESCRIPTOR and frees nothing; of two
   * threads freeing the same descriptor exactly one succeeds.
   */
  free(d: Descriptor): void {
    const h = this.check(d);
    if (Atomics.compareExchange(h, H_GENERATION, d.generation, (d.generation + 1) | 0) !== d.generation) {
      throw stale(d, 'it was freed concurrently');
    }
    Atomics.store(h, H_STATUS, FREE);
    Atomics.sub(this.control, C_IN_USE, 1);
    this.freeList.enqueue(this.poolId, d.slot, (d.generation + 1) | 0);
  }

  /** The slot's header words, after checking the descriptor is current. */
  check(d: Descriptor): Int32Array {
    if (d.poolId !== this.poolId) throw stale(d, `it belongs to pool ${d.poolId}, not to this chain's pool ${this.poolId}`);
    if (!Number.isInteger(d.slot) || d.slot < 0 || d.slot >= this.slots) throw stale(d, 'no such slot');
    const h = this.header(d.slot);
    const generation = Atomics.load(h, H_GENERATION);
    if (generation !== d.generation || Atomics.load(h, H_STATUS) !== IN_USE) {
      throw stale(d, `the slot is at generation ${generation}${Atomics.load(h, H_STATUS) === IN_USE ? '' : ' and free'}`);
    }
    return h;
  }

  /** Whether the descriptor is current (for callers that must not throw, such as a crash clean-up). */
  isCurrent(d: Descriptor): boolean {
    if (d.poolId !== this.poolId || d.slot < 0 || d.slot >= this.slots) return false;
    const h = this.header(d.slot);
    return Atomics.load(h, H_GENERATION) === d.generation && Atomics.load(h, H_STATUS) === IN_USE;
  }

  /** The header words of a slot, unchecked (the message layer uses words from SLOT_HEADER_FIRST_FREE_WORD). */
  header(slot: number): Int32Array {
    const h = this.headers[slot];
    if (!h) throw new RangeError(`no slot ${slot}`);
    return h;
  }

  /** The data bytes of a slot (after its header), unchecked: a Buffer view of the shared memory, no copy. */
  data(slot: number): Buffer {
    const b = this.bytes[slot];
    if (!b) throw new RangeError(`no slot ${slot}`);
    return b;
  }

  /** The current descriptor of a slot that is in use (for the gateway's bookkeeping). */
  descriptorOf(slot: number): Descriptor {
    return { poolId: this.poolId, slot, generation: Atomics.load(this.header(slot), H_GENERATION) };
  }

  inUse(): number {
    return Atomics.load(this.control, C_IN_USE);
  }

  freeCount(): number {
    return this.slots - this.inUse();
  }

  /** Load counters, SPRIGHT's per-function eBPF rx counters: bumped by the node itself, read by anyone. */
  started(node: number): void {
    Atomics.add(this.counters, node * COUNTER_WORDS + K_IN_FLIGHT, 1);
  }

  finished(node: number, ok: boolean): void {
    Atomics.sub(this.counters, node * COUNTER_WORDS + K_IN_FLIGHT, 1);
    Atomics.add(this.counters, node * COUNTER_WORDS + (ok ? K_COMPLETED : K_FAILED), 1);
  }

  /** Sets a node's in-flight count back to 0 (its thread died with those messages; they were counted as failed). */
  resetInFlight(node: number, failed: number): void {
    Atomics.store(this.counters, node * COUNTER_WORDS + K_IN_FLIGHT, 0);
    Atomics.add(this.counters, node * COUNTER_WORDS + K_FAILED, failed);
  }

  /** A node's counter words, for copying them across processes (the cross-process transport). */
  countersOf(node: number): Int32Array {
    return this.counters.subarray(node * COUNTER_WORDS, (node + 1) * COUNTER_WORDS);
  }

  load(node: number): NodeLoad {
    const at = node * COUNTER_WORDS;
    return {
      inFlight: Atomics.load(this.counters, at + K_IN_FLIGHT),
      completed: Atomics.load(this.counters, at + K_COMPLETED),
      failed: Atomics.load(this.counters, at + K_FAILED),
    };
  }
}

function stale(d: Descriptor, why: string): BatonError {
  return new BatonError('CHAIN_STALE_DESCRIPTOR', `descriptor (pool ${d.poolId}, slot ${d.slot}, generation ${d.generation}) is stale: ${why}`);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return isPowerOfTwo(p) ? p : n;
}

function layout(slots: number, slotBytes: number, nodes: number, ringCapacity: number) {
  const counters = CONTROL_BYTES;
  const freeRing = counters + nodes * COUNTER_WORDS * 4;
  const rings = freeRing + ringBytes(ringCapacity);
  // Slots start 64-byte aligned: their headers are written by different threads than the rings.
  const slotsAt = Math.ceil((rings + nodes * ringBytes(ringCapacity)) / 64) * 64;
  return { counters, freeRing, rings, slots: slotsAt, total: slotsAt + slots * slotBytes };
}
