import assert from 'node:assert/strict';
import { test } from 'node:test';
import { binWidthMs, renderReport, timeSeries } from './report.js';
import { summarise } from './summary.js';
import { assertWellFormed, invocationRecord as rec } from './test-support.js';

test('timeSeries: sends and cold starts per second in bins of the send time', () => {
  const records = [
    rec({ sentMs: 10, coldStart: true }),
    rec({ sentMs: 90 }),
    rec({ sentMs: 120, coldStart: true }),
    rec({ sentMs: 130 }),
    rec({ sentMs: 140 }),
    rec({ sentMs: 350 }),
    rec({ sentMs: -1 }), // never sent
  ];
  const s = timeSeries(records, 100);
  assert.equal(s.binMs, 100);
  assert.deepEqual(s.sentPerSec, [
    [0, 20],
    [0.1, 30],
    [0.2, 0],
    [0.3, 10],
    [0.4, 10], // the end of the last bin, closing its step
  ]);
  assert.deepEqual(
    s.coldPerSec.map((p) => p[1]),
    [10, 10, 0, 0, 0],
  );
  assert.deepEqual(timeSeries([rec({ sentMs: -1 })], 100), { binMs: 100, sentPerSec: [], coldPerSec: [] });
});

test('binWidthMs: 1 s, narrower for short runs (about 60 bins), never under 10 ms', () => {
  assert.equal(binWidthMs(30 * 60_000), 1000);
  assert.equal(binWidthMs(60_000), 1000);
  assert.equal(binWidthMs(2400), 40);
  assert.equal(binWidthMs(0), 10);
});

test('the report is one self-contained HTML page with the summary and the four plots', () => {
  const records = [
    rec({ index: 0, function: 'trace-0', sentMs: 5, responseMs: 250, coldStart: true, warmup: true }),
    rec({ index: 1, function: 'trace-0', scheduledMs: 1000, sentMs: 1001, responseMs: 30, requestedDurationMs: 10 }),
    rec({ index: 2, function: 'fn<&>"', scheduledMs: 1500, sentMs: 1502, responseMs: 400, requestedDurationMs: 20, coldStart: true }),
    rec({ index: 3, function: 'trace-0', scheduledMs: 1900, sentMs: 1900, status: 503, code: 'QUEUE_FULL' }),
  ];
  const summary = summarise(records, { startMs: 1000, endMs: 2000, timeScale: 1 });
  const html = renderReport({
    records,
    summary,
    sandboxes: [
      { atMs: 0, ready: 0 },
      { atMs: 1000, ready: 2 },
      { atMs: 2000, ready: 1 },
    ],
    subtitle: 'trace <x>',
  });
  const names = assertWellFormed(html);
  assert.equal(names.filter((n) => n === 'svg').length, 4);
  // Self-contained: nothing to fetch (the SVG namespace is a name, not a download).
  assert.ok(!/<script|<link|src=|href=|@import|url\(/i.test(html), 'no external resources');
  assert.equal(html.replaceAll('xmlns="http://www.w3.org/2000/svg"', '').match(/https?:/g), null);
  for (const title of ['Latency CDF', 'Per-function slowdown CDF', 'Requests per second and ready sandboxes', 'Cold starts per second']) {
    assert.ok(html.includes(`<text class="plot-title"`) && html.includes(title), title);
  }
  // The summary: percentiles, cold-start fraction, failures by code, rates.
  assert.match(html, /<tr><th>latency<\/th><td>30\.0<\/td><td>400\.0<\/td><td>400\.0<\/td><td>400\.0<\/td><\/tr>/);
  // Dirigent's scheduling latency (response − execution) and the sender's own lag.
  assert.match(html, /<tr><th>scheduling latency<\/th><td>20\.0<\/td>/);
  assert.match(html, /<tr><th>send lag<\/th><td>1\.0<\/td>/);
  assert.match(html, /33\.3% of measured invocations/);
  assert.match(html, /503 QUEUE_FULL: 1/);
  assert.match(html, /3\.00\/s achieved of 3\.00\/s scheduled/);
  assert.ok(html.includes('fn&#60;&#38;&#62;&#34;') && !html.includes('fn<&>'), 'function names escaped');
  assert.ok(html.includes('trace &#60;x&#62;'));
  // The sandbox count is drawn on the right axis, from the polled samples.
  assert.match(html, /<g class="y2-axis" data-min="0" data-max="2">/);
});

test('a run with no answers still renders, with "no data" plots', () => {
  const records = [rec({ sentMs: 3, status: 0, code: 'ECONNREFUSED', responseMs: 1 })];
  const html = renderReport({ records, summary: summarise(records, { startMs: 0, endMs: 1000, timeScale: 1 }), sandboxes: [] });
  assertWellFormed(html);
  assert.equal((html.match(/>no data</g) ?? []).length, 2, 'the two CDFs have no successful invocation');
  assert.equal((html.match(/<svg /g) ?? []).length, 4);
  const empty = renderReport({ records: [], summary: summarise([], { startMs: 0, endMs: 1000, timeScale: 1 }), sandboxes: [] });
  assert.equal((empty.match(/>no data</g) ?? []).length, 4);
});
