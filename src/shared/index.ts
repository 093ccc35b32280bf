// What src/shared offers every component: config, errors, logging, ids,
// metrics, the HTTP/1.1+h2c listener and the internal RPC helpers.
export * from './config.js';
export * from './errors.js';
export * from './ids.js';
export * from './listener.js';
export * from './logging.js';
export * from './metrics.js';
export * from './rpc.js';
export * from './spec.js';
