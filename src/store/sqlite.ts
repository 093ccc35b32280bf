// The embedded SQLite store (better-sqlite3), Baton's default: `baton up`
// needs no server. The database is one file in the data directory.
//
// Durability: WAL with synchronous=FULL, so a write is on disk before the
// call returns and an acknowledged registration survives kill -9. Writes are
// rare (registrations only), so the fsync per write costs nothing that
// matters. better-sqlite3 is synchronous; each call is one small statement.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { BatonError } from '../shared/errors.js';
import { parseFunctionSpec, toSpecInput } from '../shared/spec.js';
import type { ClusterStore, StoredDataPlane, StoredFunction, StoredWorker } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS functions (
  name TEXT PRIMARY KEY,
  revision INTEGER NOT NULL,
  spec TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY,
  address TEXT NOT NULL,
  registered_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS data_planes (
  id TEXT PRIMARY KEY,
  address TEXT NOT NULL,
  proxy_address TEXT NOT NULL,
  registered_at_ms INTEGER NOT NULL
);
`;

interface FunctionRow {
  name: string;
  revision: number;
  spec: string;
  created_at_ms: number;
  updated_at_ms: number;
}

function rowToFunction(row: FunctionRow): StoredFunction {
  return {
    // Re-validating on read applies defaults added since the row was written.
    spec: parseFunctionSpec(JSON.parse(row.spec)),
    revision: row.revision,
    createdAtMs: row.created_at_ms,
    updatedAtMs: row.updated_at_ms,
  };
}

export class SqliteStore implements ClusterStore {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;

  private constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
    } catch (err) {
      throw new BatonError('STORE_ERROR', `cannot open ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  static async open(path: string): Promise<SqliteStore> {
    return new SqliteStore(path);
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof BatonError) throw err;
      throw new BatonError('STORE_ERROR', `${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  async listFunctions(): Promise<StoredFunction[]> {
    return this.run('list functions', () =>
      (this.db.prepare('SELECT * FROM functions ORDER BY name').all() as FunctionRow[]).map(rowToFunction),
    );
  }

  async getFunction(name: string): Promise<StoredFunction | undefined> {
    return this.run('get function', () => {
      const row = this.db.prepare('SELECT * FROM functions WHERE name = ?').get(name) as FunctionRow | undefined;
      return row ? rowToFunction(row) : undefined;
    });
  }

  async createFunction(fn: StoredFunction): Promise<void> {
    this.run('create function', () => {
      const r = this.db
        .prepare(
          'INSERT INTO functions (name, revision, spec, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING',
        )
        .run(fn.spec.name, fn.revision, JSON.stringify(toSpecInput(fn.spec)), fn.createdAtMs, fn.updatedAtMs);
      if (r.changes === 0) throw new BatonError('FUNCTION_EXISTS', `function ${fn.spec.name} already exists`);
    });
  }

  async updateFunction(fn: StoredFunction, expectedRevision: number): Promise<boolean> {
    return this.run('update function', () => {
      const r = this.db
        .prepare('UPDATE functions SET revision = ?, spec = ?, updated_at_ms = ? WHERE name = ? AND revision = ?')
        .run(fn.revision, JSON.stringify(toSpecInput(fn.spec)), fn.updatedAtMs, fn.spec.name, expectedRevision);
      return r.changes === 1;
    });
  }

  async deleteFunction(name: string): Promise<boolean> {
    return this.run('delete function', () => this.db.prepare('DELETE FROM functions WHERE name = ?').run(name).changes === 1);
  }

  async putWorker(w: StoredWorker): Promise<void> {
    this.run('put worker', () =>
      this.db
        .prepare(
          'INSERT INTO workers (id, address, registered_at_ms) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET address = excluded.address, registered_at_ms = excluded.registered_at_ms',
        )
        .run(w.id, w.address, w.registeredAtMs),
    );
  }

  async deleteWorker(id: string): Promise<void> {
    this.run('delete worker', () => this.db.prepare('DELETE FROM workers WHERE id = ?').run(id));
  }

  async listWorkers(): Promise<StoredWorker[]> {
    return this.run('list workers', () =>
      (this.db.prepare('SELECT * FROM workers ORDER BY id').all() as { id: string; address: string; registered_at_ms: number }[]).map(
        (r) => ({ id: r.id, address: r.address, registeredAtMs: r.registered_at_ms }),
      ),
    );
  }

  async putDataPlane(d: StoredDataPlane): Promise<void> {
    this.run('put data plane', () =>
      this.db
        .prepare(
          'INSERT INTO data_planes (id, address, proxy_address, registered_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET address = excluded.address, proxy_address = excluded.proxy_address, registered_at_ms = excluded.registered_at_ms',
        )
        .run(d.id, d.address, d.proxyAddress, d.registeredAtMs),
    );
  }

  async deleteDataPlane(id: string): Promise<void> {
    this.run('delete data plane', () => this.db.prepare('DELETE FROM data_planes WHERE id = ?').run(id));
  }

  async listDataPlanes(): Promise<StoredDataPlane[]> {
    return this.run('list data planes', () =>
      (
        this.db.prepare('SELECT * FROM data_planes ORDER BY id').all() as {
          id: string;
          address: string;
          proxy_address: string;
          registered_at_ms: number;
        }[]
      ).map((r) => ({ id: r.id, address: r.address, proxyAddress: r.proxy_address, registeredAtMs: r.registered_at_ms })),
    );
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
