// The async queue in a SQLite file (better-sqlite3), the default: one file
// per data plane, `<dataDir>/dataplane-async.db`.
//
// Durability: WAL with synchronous=FULL, so every write is fsynced before the
// call resolves (docs/store.md): a 202 means the invocation is on disk.
//
// Group commit: better-sqlite3 is synchronous, and an fsync (~10 ms on this
// machine's disk) blocks the event loop. One write per call capped submits at
// ~80/s with 16 clients and stalled the data plane's sync traffic for each.
// So writes are queued and run together in one transaction (one fsync) on
// the next setImmediate: everything that arrived while the last fsync blocked
// commits with the next one. Each write's promise settles after its commit.
//
// The file is opened with locking_mode=EXCLUSIVE: a second data plane
// pointed at the same file fails at start (STORE_ERROR, "database is
// locked") instead of running and recovering the first one's invocations.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { BatonError } from '../../shared/errors.js';
import type { AsyncQueueStore, InvocationResult, InvocationState, NewInvocation, StoredInvocation } from './queue-store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS invocations (
  id TEXT PRIMARY KEY,
  function TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  headers TEXT NOT NULL,
  body BLOB NOT NULL,
  submitted_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  finished_at INTEGER,
  expires_at INTEGER,
  result_status INTEGER,
  result_headers TEXT,
  result_body BLOB,
  result_error TEXT
);
CREATE INDEX IF NOT EXISTS invocations_queue ON invocations (state, not_before);
CREATE INDEX IF NOT EXISTS invocations_expiry ON invocations (expires_at) WHERE expires_at IS NOT NULL;
`;

interface Row {
  id: string;
  function: string;
  method: string;
  path: string;
  headers: string;
  body: Buffer;
  submitted_at: number;
  state: InvocationState;
  attempts: number;
  not_before: number;
  finished_at: number | null;
  expires_at: number | null;
  result_status: number | null;
  result_headers: string | null;
  result_body: Buffer | null;
  result_error: string | null;
}

function fromRow(r: Row): StoredInvocation {
  let result: InvocationResult | null = null;
  if (r.result_status !== null) {
    result = {
      status: r.result_status,
      headers: JSON.parse(r.result_headers ?? '[]') as [string, string][],
      body: r.result_body ?? Buffer.alloc(0),
      ...(r.result_error !== null ? { errorCode: r.result_error } : {}),
    };
  }
  return {
    id: r.id,
    function: r.function,
    method: r.method,
    path: r.path,
    headers: JSON.parse(r.headers) as Record<string, string>,
    body: r.body,
    submittedAt: r.submitted_at,
    state: r.state,
    attempts: r.attempts,
    notBefore: r.not_before,
    finishedAt: r.finished_at,
    expiresAt: r.expires_at,
    result,
  };
}

function resultColumns(result: InvocationResult): [number, string, Buffer, string | null] {
  return [result.status, JSON.stringify(result.headers), Buffer.from(result.body), result.errorCode ?? null];
}

export class SqliteQueueStore implements AsyncQueueStore {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  private readonly stmts: {
    add: Database.Statement;
    due: Database.Statement;
    markRunning: Database.Statement;
    requeue: Database.Statement;
    finish: Database.Statement;
    get: Database.Statement;
    unfinished: Database.Statement;
    sweep: Database.Statement;
  };

  private constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    try {
      // A locked file fails fast: it is another data plane's, not a busy moment.
      this.db = new Database(path, { timeout: 100 });
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(SCHEMA);
    } catch (err) {
      throw new BatonError('STORE_ERROR', `async queue: cannot open ${path}: ${(err as Error).message}`, { cause: err });
    }
    const db = this.db;
    this.stmts = {
      add: db.prepare(
        "INSERT INTO invocations (id, function, method, path, headers, body, submitted_at, state, attempts, not_before) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
      ),
      due: db.prepare("SELECT * FROM invocations WHERE state = 'queued' AND not_before <= ? ORDER BY not_before, submitted_at LIMIT ?"),
      markRunning: db.prepare("UPDATE invocations SET state = 'running', attempts = attempts + 1 WHERE id = ?"),
      requeue: db.prepare(
        "UPDATE invocations SET state = 'queued', not_before = ?, result_status = ?, result_headers = ?, result_body = ?, result_error = ? WHERE id = ? AND state = 'running'",
      ),
      finish: db.prepare(
        'UPDATE invocations SET state = ?, finished_at = ?, expires_at = ?, result_status = ?, result_headers = ?, result_body = ?, result_error = ? WHERE id = ?',
      ),
      get: db.prepare('SELECT * FROM invocations WHERE id = ?'),
      unfinished: db.prepare("SELECT count(*) AS n FROM invocations WHERE state IN ('queued', 'running')"),
      sweep: db.prepare('DELETE FROM invocations WHERE expires_at IS NOT NULL AND expires_at <= ?'),
    };
  }

  static async open(path: string): Promise<SqliteQueueStore> {
    return new SqliteQueueStore(path);
  }

  private pending: { what: string; fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private flushScheduled = false;

  /** Queues a write for the next group commit; resolves with its result once committed. */
  private write<T>(what: string, fn: () => T): Promise<T> {
    if (!this.db.open) return Promise.reject(new BatonError('STORE_UNAVAILABLE', `async queue: ${what}: the store is closed`));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ what, fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Runs every queued write in one transaction: one fsync for the batch. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db.transaction(() => {
        for (const op of batch) {
          // A failing statement rolls back alone; the others still commit.
          try {
            outcomes.push({ ok: true, value: op.fn() });
          } catch (err) {
            outcomes.push({ ok: false, value: err });
          }
        }
      })();
    } catch (err) {
      // The commit itself failed (disk full, closed): nothing in the batch is durable.
      for (const op of batch) op.reject(new BatonError('STORE_ERROR', `async queue: ${op.what}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    batch.forEach((op, i) => {
      const o = outcomes[i] as { ok: boolean; value: unknown };
      if (o.ok) op.resolve(o.value);
      else op.reject(new BatonError('STORE_ERROR', `async queue: ${op.what}: ${(o.value as Error).message}`, { cause: o.value }));
    });
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof BatonError) throw err;
      throw new BatonError('STORE_ERROR', `async queue: ${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  async add(inv: NewInvocation): Promise<void> {
    await this.write('add', () =>
      this.stmts.add.run(inv.id, inv.function, inv.method, inv.path, JSON.stringify(inv.headers), Buffer.from(inv.body), inv.submittedAt, inv.submittedAt),
    );
  }

  async claim(max: number, now: number): Promise<StoredInvocation[]> {
    return this.write('claim', () => {
      const rows = this.stmts.due.all(now, max) as Row[];
      for (const r of rows) this.stmts.markRunning.run(r.id);
      return rows.map((r) => fromRow({ ...r, state: 'running', attempts: r.attempts + 1 }));
    });
  }

  async requeue(id: string, notBefore: number, result: InvocationResult): Promise<void> {
    await this.write('requeue', () => this.stmts.requeue.run(notBefore, ...resultColumns(result), id));
  }

  async finish(id: string, state: 'succeeded' | 'failed', result: InvocationResult, finishedAt: number, expiresAt: number): Promise<void> {
    await this.write('finish', () => this.stmts.finish.run(state, finishedAt, expiresAt, ...resultColumns(result), id));
  }

  async get(id: string): Promise<StoredInvocation | undefined> {
    return this.run('get', () => {
      const row = this.stmts.get.get(id) as Row | undefined;
      return row ? fromRow(row) : undefined;
    });
  }

  async recover(): Promise<number> {
    return this.run(
      'recover',
      () => this.db.prepare("UPDATE invocations SET state = 'queued', attempts = max(attempts - 1, 0), not_before = 0 WHERE state = 'running'").run().changes,
    );
  }

  async unfinished(): Promise<number> {
    return this.run('count', () => (this.stmts.unfinished.get() as { n: number }).n);
  }

  async sweep(now: number): Promise<number> {
    return this.write('sweep', () => this.stmts.sweep.run(now).changes);
  }

  async close(): Promise<void> {
    if (this.pending.length > 0) this.flush();
    if (this.db.open) this.db.close();
  }
}
