// Helpers for the load generator's unit tests (not part of the CLI).
import assert from 'node:assert/strict';
import type { InvocationRecord } from './summary.js';

/** A successful warm invocation of trace-0 at time 0, with the given fields changed. */
export function invocationRecord(over: Partial<InvocationRecord>): InvocationRecord {
  return {
    index: 0,
    function: 'trace-0',
    scheduledMs: 0,
    sentMs: 0,
    responseMs: 10,
    status: 200,
    code: '',
    requestedDurationMs: 10,
    measuredDurationMs: 10,
    memoryMb: 128,
    coldStart: false,
    queueMs: 0,
    sandbox: 'sb-1',
    warmup: false,
    ...over,
  };
}

const TAG = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;

/**
 * Asserts that the markup is well-formed XML as far as the report uses it:
 * every tag closed in order, attributes quoted, no raw `<` or stray `&` in
 * text, `<!DOCTYPE …>` allowed in front. Returns the element names in order.
 */
export function assertWellFormed(markup: string): string[] {
  const stack: string[] = [];
  const names: string[] = [];
  let i = markup.startsWith('<!DOCTYPE') ? markup.indexOf('>') + 1 : 0;
  while (i < markup.length) {
    const lt = markup.indexOf('<', i);
    const text = markup.slice(i, lt === -1 ? markup.length : lt);
    assert.doesNotMatch(text, /&(?!#\d+;|amp;|lt;|gt;|quot;)/, `stray & in text ${JSON.stringify(text.slice(0, 80))}`);
    assert.ok(!text.includes('>'), `stray > in text ${JSON.stringify(text.slice(0, 80))}`);
    if (lt === -1) break;
    TAG.lastIndex = lt;
    const m = TAG.exec(markup);
    assert.ok(m, `malformed tag at ${lt}: ${JSON.stringify(markup.slice(lt, lt + 80))}`);
    const [whole, closing, name = '', , selfClosing] = m;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else {
      names.push(name);
      // HTML's void elements need no closing tag.
      if (!selfClosing && !['meta', 'br'].includes(name)) stack.push(name);
    }
    i = lt + whole.length;
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  return names;
}
