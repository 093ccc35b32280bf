// The per-function cold-start queue: requests that found no free token wait
// here, in arrival order, until a sandbox frees one or appears, their
// deadline passes, or their client goes away.
//
// The queue is an intrusive doubly-linked list: each waiter carries its own
// links, so enqueueing allocates nothing and a client abort removes its
// waiter in O(1) wherever it sits. Waiters enter in arrival order with the
// function's timeout, so deadlines are (nearly) ordered and the expiry sweep
// only looks at the head.

export interface QueueLinks {
  queuePrev: QueueLinks | null;
  queueNext: QueueLinks | null;
  /** True while the node is in a queue; guards double removal. */
  inQueue: boolean;
}

export class ColdStartQueue<T extends QueueLinks> {
  private head: T | null = null;
  private tail: T | null = null;
  private count = 0;

  get length(): number {
    return this.count;
  }

  peek(): T | null {
    return this.head;
  }

  push(node: T): void {
    node.queuePrev = this.tail;
    node.queueNext = null;
    node.inQueue = true;
    if (this.tail) this.tail.queueNext = node;
    else this.head = node;
    this.tail = node;
    this.count++;
  }

  shift(): T | null {
    const node = this.head;
    if (node) this.remove(node);
    return node;
  }

  /** Removes a node from anywhere in the queue; false if it was not queued. */
  remove(node: T): boolean {
    if (!node.inQueue) return false;
    const prev = node.queuePrev as T | null;
    const next = node.queueNext as T | null;
    if (prev) prev.queueNext = next;
    else this.head = next;
    if (next) next.queuePrev = prev;
    else this.tail = prev;
    node.queuePrev = null;
    node.queueNext = null;
    node.inQueue = false;
    this.count--;
    return true;
  }

  /** Empties the queue and returns its nodes in order. */
  takeAll(): T[] {
    const out: T[] = [];
    for (let n = this.shift(); n; n = this.shift()) out.push(n);
    return out;
  }
}
