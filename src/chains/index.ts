// Function chains on shared memory (docs/chains.md): what the `chain`
// runtime's gateway process runs, and the message a member's handler gets.
export { Chain, type ChainResponse, type ChainState } from './chain.js';
export { CHAIN_METRICS_PATH, startGateway, type ChainGateway } from './gateway.js';
export { ChainCallError, ChainMessage } from './message.js';
export type { HandlerResult } from './member.js';
export { SharedMemoryTransport, type ChainTransport } from './transport.js';
export { UnixSocketTransport } from './unix-transport.js';
