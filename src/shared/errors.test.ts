import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BatonError, ERROR_CODES } from './errors.js';

const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('every error code is documented in docs/errors.md with its status', () => {
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    const row = docs.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `docs/errors.md has no row for ${code}`);
    assert.ok(row.includes(`| ${status} |`), `docs/errors.md gives ${code} a status other than ${status}`);
  }
});

test('a BatonError serializes to {code, message} with its details', () => {
  const e = new BatonError('INVALID_SPEC', 'name: bad', { details: { field: 'name' } });
  assert.equal(e.status, 400);
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { field: 'name', code: 'INVALID_SPEC', message: 'name: bad' });
});
