import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BatonError } from '../../shared/errors.js';
import { SqliteQueueStore } from './store-sqlite.js';
import { asyncQueueConformance } from './store.conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-async-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

asyncQueueConformance('sqlite', (name) => SqliteQueueStore.open(join(dir, `${name}.db`)));

test('sqlite: a second data plane cannot open a queue file that is in use', async () => {
  const path = join(dir, 'locked.db');
  const a = await SqliteQueueStore.open(path);
  try {
    await a.add({ id: 'x', function: 'f', method: 'GET', path: '/', headers: {}, body: new Uint8Array(), submittedAt: 1 });
    await assert.rejects(
      (async () => {
        const b = await SqliteQueueStore.open(path);
        try {
          await b.unfinished();
        } finally {
          await b.close();
        }
      })(),
      (e: unknown) => e instanceof BatonError && e.code === 'STORE_ERROR' && /locked/.test(e.message),
    );
  } finally {
    await a.close();
  }
});
