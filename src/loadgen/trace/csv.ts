// A small CSV reader for workload traces. Trace files are large (a day of the
// Azure 2019 trace is ~50 000 rows × 1 444 columns), so rows stream one line at
// a time instead of reading the file whole. Quoted fields (RFC 4180: `"a,b"`,
// `"say ""hi"""`) are handled within a line; a newline inside quotes is not,
// since no trace format has one, and it is reported as an unterminated quote.
//
// Every failure is a TRACE_INVALID BatonError whose message starts with
// `<file>:<line>:` so a user can open the file at the right place.

import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { BatonError } from '../../shared/errors.js';

/** One data row: its 1-based line number in the file and its fields. */
export interface CsvRow {
  readonly line: number;
  readonly fields: readonly string[];
}

/** The header of a CSV file, to find columns by name. */
export class CsvHeader {
  readonly file: string;
  readonly names: readonly string[];
  private readonly index = new Map<string, number>();

  constructor(file: string, names: readonly string[]) {
    this.file = file;
    this.names = names;
    names.forEach((name, i) => {
      if (this.index.has(name)) throw traceError(file, 1, `column "${name}" appears twice in the header`);
      this.index.set(name, i);
    });
  }

  /** The position of a column, or undefined when the header lacks it. */
  find(name: string): number | undefined {
    return this.index.get(name);
  }

  /** The position of a column the format requires. */
  require(name: string): number {
    const i = this.index.get(name);
    if (i === undefined) throw traceError(this.file, 1, `missing column "${name}" (header: ${this.names.join(',')})`);
    return i;
  }
}

export function traceError(file: string, line: number, message: string): BatonError {
  return new BatonError('TRACE_INVALID', `${file}:${line}: ${message}`, { details: { file, line } });
}

/** Splits one CSV line into fields. Throws TRACE_INVALID on a stray or unterminated quote. */
export function parseCsvLine(text: string, file: string, line: number): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q === -1) throw traceError(file, line, `unterminated quoted field in field ${fields.length + 1}`);
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (i < text.length && text[i] !== ',') {
        throw traceError(file, line, `unexpected text after the closing quote of field ${fields.length + 1}`);
      }
      fields.push(value);
    } else {
      const comma = text.indexOf(',', i);
      const end = comma === -1 ? text.length : comma;
      const value = text.slice(i, end);
      if (value.includes('"')) throw traceError(file, line, `stray quote in unquoted field ${fields.length + 1}`);
      fields.push(value);
      i = end;
    }
    if (i >= text.length) return fields;
    i++; // the comma
    if (i === text.length) {
      fields.push('');
      return fields;
    }
  }
}

/**
 * The lines of a file, streamed; `\r\n` endings and a missing final newline are
 * fine. The file is opened only when iteration starts: a readline interface
 * made earlier emits lines nobody listens to yet, and they are lost.
 */
export async function* fileLines(path: string): AsyncGenerator<string, void, undefined> {
  const input = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    yield* lines;
  } finally {
    // A reader that stops early (a malformed row) must not leave the file open.
    lines.close();
    input.destroy();
  }
}

/**
 * Reads a CSV from its lines: the header, then every non-blank row. Each row is
 * checked to have as many fields as the header, so a reader can index freely.
 * `file` names the file in errors (the base name of a path is enough).
 */
export async function* readCsv(
  lines: AsyncIterable<string> | Iterable<string>,
  file: string,
): AsyncGenerator<CsvRow | CsvHeader, void, undefined> {
  let line = 0;
  let header: CsvHeader | undefined;
  for await (const raw of lines) {
    line++;
    const text = line === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (text.trim() === '') continue;
    const fields = parseCsvLine(text.endsWith('\r') ? text.slice(0, -1) : text, file, line);
    if (header === undefined) {
      header = new CsvHeader(file, fields.map((f) => f.trim()));
      yield header;
      continue;
    }
    if (fields.length !== header.names.length) {
      throw traceError(file, line, `${fields.length} fields where the header has ${header.names.length}`);
    }
    yield { line, fields };
  }
  if (header === undefined) throw traceError(file, 1, 'the file is empty (no header)');
}

/** A field that must be a finite number. */
export function numberField(header: CsvHeader, row: CsvRow, column: number, what: string): number {
  const text = (row.fields[column] ?? '').trim();
  const value = text === '' ? NaN : Number(text);
  if (!Number.isFinite(value)) {
    throw traceError(header.file, row.line, `column "${header.names[column] ?? column}": "${text}" is not ${what}`);
  }
  return value;
}

/** A field that must be non-empty text (a hash). */
export function textField(header: CsvHeader, row: CsvRow, column: number): string {
  const text = (row.fields[column] ?? '').trim();
  if (text === '') throw traceError(header.file, row.line, `column "${header.names[column] ?? column}": empty`);
  return text;
}
