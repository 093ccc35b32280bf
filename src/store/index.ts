// The cluster store: the ClusterStore interface and its backends.
import { join } from 'node:path';
import type { ControlPlaneConfig } from '../shared/config.js';
import { silentLogger, type Logger } from '../shared/logging.js';
import { RedisStore } from './redis.js';
import { SqliteStore } from './sqlite.js';
import type { ClusterStore } from './store.js';

export type { ClusterStore, StoredDataPlane, StoredFunction, StoredWorker } from './store.js';
export { RedisStore } from './redis.js';
export { SqliteStore } from './sqlite.js';

export interface StoreOptions {
  store: ControlPlaneConfig['store'];
  /** SQLite keeps `baton.db` here. */
  dataDir: string;
  log?: Logger;
}

export async function openStore(options: StoreOptions): Promise<ClusterStore> {
  const store = options.store;
  switch (store.type) {
    case 'sqlite':
      return SqliteStore.open(join(options.dataDir, 'baton.db'));
    case 'redis':
      return RedisStore.open({
        url: store.url,
        keyPrefix: store.keyPrefix,
        fsync: store.fsync,
        connectTimeoutMs: store.connectTimeoutMs,
        commandTimeoutMs: store.commandTimeoutMs,
        log: options.log ?? silentLogger(),
      });
  }
}
