// A member of a chain as a child process of the gateway: the cross-process
// transport (`transport: processes`, docs/chains.md). It keeps its own copy
// of the pool's layout, reads a slot from the chain's /dev/shm region when a
// descriptor arrives on its Unix socket, and writes it back before sending
// the descriptor on (member.ts does the work). A crash takes down only this
// process. It exits when the gateway does (the IPC channel closes).
import { runMember, type FromMember, type MemberIdentity, type ToMember } from './member.js';
import { setError, W_OWNER } from './message.js';
import { GATEWAY_NODE } from './routing.js';
import { FileRegion } from './shm/file-region.js';
import { ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';
import { pullSlot, pushCounters, pushSlot } from './slot-sync.js';
import { UnixSocketTransport } from './unix-transport.js';

/** The first IPC message from the gateway. */
export interface MemberProcessInit extends MemberIdentity {
  readonly type: 'init';
  readonly socketDir: string;
  readonly regionPath: string;
  readonly poolId: number;
  readonly slots: number;
  readonly slotBytes: number;
  readonly nodes: number;
}

const send = (m: FromMember): void => void process.send?.(m);
if (!process.send) throw new Error('member-process.js runs only as a child of a chain gateway (with an IPC channel)');
process.once('disconnect', () => process.exit(0));

process.once('message', (init: MemberProcessInit) => {
  void start(init).catch((err: unknown) => send({ type: 'failed', message: (err as Error).message }));
});

async function start(init: MemberProcessInit): Promise<void> {
  const memory = ChainMemory.create({ slots: init.slots, slotBytes: init.slotBytes, nodes: init.nodes, poolId: init.poolId });
  const region = FileRegion.open(init.regionPath);
  const sendOn = (d: Descriptor, to: number): void => {
    const h = memory.header(d.slot);
    // The target owns the slot from now on: if it dies, the gateway fails this request.
    h[W_OWNER] = to;
    pushSlot(memory, region, d.slot);
  };
  const transport = new UnixSocketTransport(init.socketDir, init.node, (d, to) => {
    // The target is gone (and not yet replaced): the request fails at the gateway.
    if (memory.isCurrent(d)) {
      setError(memory, d.slot, 'CHAIN_MEMBER_FAILED', `member ${init.plan.names[to] ?? to} is not running`);
      sendOn(d, GATEWAY_NODE);
    }
    transport.send(d, GATEWAY_NODE);
  });
  await transport.listen();
  const member = runMember(
    init,
    memory,
    transport,
    {
      received: (d) => pullSlot(memory, region, d.slot),
      sending: sendOn,
      countersChanged: () => pushCounters(memory, region, init.node),
    },
    send,
  );
  process.on('message', (m: ToMember) => {
    if (m.type === 'cancel') member.cancel(m);
  });
}
