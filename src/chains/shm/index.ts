// Shared-memory core of function chains: the slot pool, descriptors and rings.
export { ChainMemory, MAX_SLOTS, SLOT_HEADER_BYTES, SLOT_HEADER_FIRST_FREE_WORD, type ChainMemoryOptions, type NodeLoad } from './pool.js';
export { DescriptorRing, DESCRIPTOR_WORDS, type Descriptor } from './ring.js';
