import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseFunctionSpec } from '../shared/spec.js';
import { SqliteStore } from './sqlite.js';
import { clusterStoreConformance } from './store.conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

clusterStoreConformance('sqlite', () => SqliteStore.open(join(dir, `store-${n++}.db`)));

test('sqlite: registrations survive closing and reopening the file', async () => {
  const path = join(dir, 'reopen.db');
  const a = await SqliteStore.open(path);
  await a.createFunction({ spec: parseFunctionSpec({ name: 'keep', command: ['x'] }), revision: 1, createdAtMs: 1, updatedAtMs: 1 });
  await a.close();
  const b = await SqliteStore.open(path);
  assert.equal((await b.getFunction('keep'))?.spec.command[0], 'x');
  await b.close();
});
