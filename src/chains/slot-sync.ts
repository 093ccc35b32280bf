// Moving a slot between a node's memory and the chain's file region (the
// cross-process transport): only the parts in use, as the slot header says
// (header, request metadata, response headers, body), so a small message
// costs a few hundred bytes per hop, not the slot size.
import { BODY_OFFSET, REQUEST_META_BYTES, W_BODY_LEN, W_META_LEN, W_OWNER, W_RES_META_LEN } from './message.js';
import type { FileRegion } from './shm/file-region.js';
import { SLOT_HEADER_BYTES, type ChainMemory } from './shm/pool.js';

const COUNTER_BYTES = 16;

function headerBytes(memory: ChainMemory, slot: number): Uint8Array {
  const h = memory.header(slot);
  return new Uint8Array(h.buffer, h.byteOffset, SLOT_HEADER_BYTES);
}

/** The parts of a slot's data area in use: [offset, length] pairs. */
function parts(memory: ChainMemory, slot: number): [number, number][] {
  const h = memory.header(slot);
  return [
    [0, h[W_META_LEN] ?? 0],
    [REQUEST_META_BYTES, h[W_RES_META_LEN] ?? 0],
    [BODY_OFFSET, h[W_BODY_LEN] ?? 0],
  ];
}

/** Reads a slot from the region into `memory` (its header first: it says what else is in use). */
export function pullSlot(memory: ChainMemory, region: FileRegion, slot: number): void {
  const at = slot * memory.slotBytes;
  region.read(at, headerBytes(memory, slot));
  const data = memory.data(slot);
  for (const [offset, length] of parts(memory, slot)) if (length > 0) region.read(at + SLOT_HEADER_BYTES + offset, data.subarray(offset, offset + length));
}

/** Writes a slot from `memory` to the region. */
export function pushSlot(memory: ChainMemory, region: FileRegion, slot: number): void {
  const at = slot * memory.slotBytes;
  const data = memory.data(slot);
  for (const [offset, length] of parts(memory, slot)) if (length > 0) region.write(at + SLOT_HEADER_BYTES + offset, data.subarray(offset, offset + length));
  region.write(at, headerBytes(memory, slot));
}

/** The node a slot was last sent to, as the region has it. */
export function ownerInRegion(memory: ChainMemory, region: FileRegion, slot: number): number {
  const word = new Int32Array(1);
  region.read(slot * memory.slotBytes + W_OWNER * 4, new Uint8Array(word.buffer));
  return word[0] ?? -1;
}

/** The region's size for a pool: the slots, then each node's counters. */
export function regionBytes(memory: ChainMemory): number {
  return memory.slots * memory.slotBytes + memory.nodes * COUNTER_BYTES;
}

function countersAt(memory: ChainMemory, node: number): number {
  return memory.slots * memory.slotBytes + node * COUNTER_BYTES;
}

export function pushCounters(memory: ChainMemory, region: FileRegion, node: number): void {
  const c = memory.countersOf(node);
  region.write(countersAt(memory, node), new Uint8Array(c.buffer, c.byteOffset, COUNTER_BYTES));
}

export function pullCounters(memory: ChainMemory, region: FileRegion, node: number): void {
  const c = memory.countersOf(node);
  region.read(countersAt(memory, node), new Uint8Array(c.buffer, c.byteOffset, COUNTER_BYTES));
}
