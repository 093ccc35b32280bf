// How descriptors move between the nodes of a chain: SPRIGHT's io_rx/io_tx
// (reference/spright-kubedirect.md §1.1, `src/include/io.h`) behind one
// interface, so that a second transport (across processes) can be added
// without touching the gateway or the members.
import type { ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';

export interface ChainTransport {
  /** io_tx: hands a descriptor to node `to`. Never blocks. */
  send(desc: Descriptor, to: number): void;
  /** io_rx: calls `receive` for every descriptor sent to this node, until close(). Sleeps while there are none. */
  onReceive(receive: (desc: Descriptor) => void): void;
  close(): void;
}

/**
 * The in-process transport: the chain's nodes are threads of one process
 * sharing the chain's SharedArrayBuffer; a descriptor goes on the target's
 * ring and wakes it through Atomics.notify. Zero-copy: the message never
 * leaves its slot.
 */
export class SharedMemoryTransport implements ChainTransport {
  private closed = false;

  constructor(private readonly memory: ChainMemory, private readonly self: number) {}

  send(desc: Descriptor, to: number): void {
    const ring = this.memory.rings[to];
    if (!ring) throw new RangeError(`no node ${to}`);
    // Every ring holds every slot of the pool, and a slot is in at most one ring: it cannot be full.
    if (!ring.enqueue(desc.poolId, desc.slot, desc.generation)) throw new Error(`ring of node ${to} is full: a slot was sent twice`);
  }

  onReceive(receive: (desc: Descriptor) => void): void {
    const ring = this.memory.rings[this.self];
    if (!ring) throw new RangeError(`no node ${this.self}`);
    const loop = async (): Promise<void> => {
      while (!this.closed) {
        const seen = ring.signal();
        let d = ring.dequeue();
        if (!d) {
          await ring.waitAsync(seen);
          continue;
        }
        while (d) {
          try {
            receive(d);
          } catch (err) {
            // A receiver must handle its own errors; one that escapes is a bug, and must not stop the node.
            console.error(`chain node ${this.self}: a descriptor could not be handled:`, err);
          }
          d = ring.dequeue();
        }
        // Let the handlers just started run before looking again (they are async).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    void loop();
  }

  close(): void {
    this.closed = true;
    this.memory.rings[this.self]?.wake();
  }
}
