import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../shared/errors.js';
import { CsvHeader, parseCsvLine, readCsv } from './csv.js';

test('parseCsvLine splits plain and quoted fields, with doubled quotes and empty fields', () => {
  assert.deepEqual(parseCsvLine('a,b,c', 'f.csv', 1), ['a', 'b', 'c']);
  assert.deepEqual(parseCsvLine('"a,b",c', 'f.csv', 1), ['a,b', 'c']);
  assert.deepEqual(parseCsvLine('"say ""hi""",,x,', 'f.csv', 1), ['say "hi"', '', 'x', '']);
  assert.deepEqual(parseCsvLine('""', 'f.csv', 1), ['']);
  assert.deepEqual(parseCsvLine('', 'f.csv', 1), ['']);
});

test('parseCsvLine names the file and line of an unterminated or stray quote', () => {
  assert.throws(() => parseCsvLine('a,"b', 'x.csv', 7), (err: unknown) => err instanceof BatonError && err.code === 'TRACE_INVALID' && err.message.startsWith('x.csv:7: unterminated'));
  assert.throws(() => parseCsvLine('a,b"c', 'x.csv', 3), /x\.csv:3: stray quote in unquoted field 2/);
  assert.throws(() => parseCsvLine('"a"b', 'x.csv', 3), /x\.csv:3: unexpected text after the closing quote of field 1/);
});

test('readCsv yields the header then rows with line numbers, skipping blank lines and a BOM, taking CRLF', async () => {
  const items = [];
  for await (const item of readCsv(['\uFEFFa,b\r', '1,2\r', '', '3,"4"'], 'f.csv')) items.push(item);
  assert.ok(items[0] instanceof CsvHeader);
  assert.deepEqual(items[0].names, ['a', 'b']);
  assert.deepEqual(items.slice(1), [
    { line: 2, fields: ['1', '2'] },
    { line: 4, fields: ['3', '4'] },
  ]);
});

test('readCsv reports a row with the wrong number of fields, an empty file and a repeated column', async () => {
  const drain = async (lines: string[]) => {
    for await (const _ of readCsv(lines, 'f.csv'));
  };
  await assert.rejects(drain(['a,b', '1,2', '1,2,3']), /f\.csv:3: 3 fields where the header has 2/);
  await assert.rejects(drain([]), /f\.csv:1: the file is empty/);
  await assert.rejects(drain(['a,b,a']), /f\.csv:1: column "a" appears twice/);
});
