// The cluster store: the ClusterStore interface and its backends.
import { join } from 'node:path';
import { SqliteStore } from './sqlite.js';
import type { ClusterStore } from './store.js';

export type { ClusterStore, StoredDataPlane, StoredFunction, StoredWorker } from './store.js';
export { SqliteStore } from './sqlite.js';

export interface StoreOptions {
  type: 'sqlite';
  dataDir: string;
}

export async function openStore(options: StoreOptions): Promise<ClusterStore> {
  switch (options.type) {
    case 'sqlite':
      return SqliteStore.open(join(options.dataDir, 'baton.db'));
  }
}
