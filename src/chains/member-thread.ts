// A member of a chain as a worker thread: the in-process transport. It
// shares the chain's SharedArrayBuffer with the gateway and the other members
// (member.ts does the work); it sleeps in Atomics.waitAsync when its ring is
// empty.
import { parentPort, workerData } from 'node:worker_threads';
import { runMember, type FromMember, type MemberIdentity, type ToMember } from './member.js';
import { ChainMemory } from './shm/pool.js';
import { SharedMemoryTransport } from './transport.js';

/** What the gateway gives a member thread. */
export interface MemberThreadData extends MemberIdentity {
  readonly buffer: SharedArrayBuffer;
}

const data = workerData as MemberThreadData;
const port = parentPort;
if (!port) throw new Error('member-thread.js runs only as a worker thread');
const memory = ChainMemory.attach(data.buffer);
const member = runMember(data, memory, new SharedMemoryTransport(memory, data.node), {}, (m: FromMember) => port.postMessage(m));
port.on('message', (m: ToMember) => {
  if (m.type === 'cancel') member.cancel(m);
});
