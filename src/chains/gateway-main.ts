// The process of a `chain` sandbox (runtime `chain`, src/worker/runtimes/chain.ts):
// reads the chain's spec from its environment, starts the member threads,
// then serves HTTP on $HOST:$PORT. SIGTERM drains: the server stops
// accepting, in-flight requests finish (up to 10 s), the members end, the
// process exits. The processes transport's /dev/shm file is removed on any
// exit but SIGKILL.
import { chainOfFunction } from '../shared/chain-spec.js';
import { Chain } from './chain.js';
import { startGateway } from './gateway.js';

const spec = chainOfFunction(process.env as Record<string, string>);
const chain = await Chain.create(spec).catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});
process.on('exit', () => chain.removeRegionNow());
// A member that cannot be restarted ends the sandbox: the worker sees it die and a new one replaces the chain.
chain.onFailed = () => process.exit(1);
const gateway = await startGateway(chain, process.env.HOST ?? '127.0.0.1', Number(process.env.PORT ?? '0'));
console.error(`chain ${spec.name}: gateway on port ${gateway.port}, ${spec.members.length} members, ${spec.pool.slots} slots of ${spec.pool.slotBytes} bytes`);

process.once('SIGTERM', () => {
  void gateway
    .close()
    .then(() => chain.stop())
    .finally(() => process.exit(0));
});
