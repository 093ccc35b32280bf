import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cdfPoints, escapeXml, niceTicks, plotSvg, type Series } from './plot.js';
import { assertWellFormed } from './test-support.js';

const OPTIONS = { title: 'T', xLabel: 'x', yLabel: 'y' };

/** The data-min / data-max of an axis group. */
function axisRange(svg: string, axis: 'x-axis' | 'y-axis' | 'y2-axis'): [number, number] | undefined {
  const m = new RegExp(`<g class="${axis}" data-min="([^"]+)" data-max="([^"]+)">`).exec(svg);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Every coordinate of every series path. */
function pathCoordinates(svg: string): number[] {
  return [...svg.matchAll(/<path class="series"[^>]* d="([^"]+)"/g)].flatMap((m) => (m[1] ?? '').split(/[MLHV ]/).filter((t) => t !== '').map(Number));
}

test('a plot is one well-formed <svg> with a title, a path per series and a legend entry each', () => {
  const svg = plotSvg(OPTIONS, [
    { name: 'a', points: [[1, 1], [2, 4], [3, 9]] },
    { name: 'b', points: [[1, 2], [3, 2]], step: true },
  ]);
  const names = assertWellFormed(svg);
  assert.equal(names[0], 'svg');
  assert.equal(names.filter((n) => n === 'svg').length, 1);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.equal((svg.match(/<path class="series"/g) ?? []).length, 2);
  assert.equal((svg.match(/<g class="legend">/g) ?? []).length, 2);
  assert.match(svg, /<title>T<\/title>/);
  // A step goes across, then up or down: H and V only after the first point.
  assert.match(svg, /d="M[\d.]+ [\d.]+H[\d.]+V[\d.]+"/);
  // Everything is drawn inside the 720×360 canvas.
  for (const c of pathCoordinates(svg)) assert.ok(c >= 0 && c <= 720, `coordinate ${c}`);
});

test('axes are taken from the data: linear from 0 to a round value above the largest, log in whole decades', () => {
  const linear = plotSvg(OPTIONS, [{ name: 's', points: [[3, 12], [47, 81]] }]);
  const [xMin = NaN, xMax = NaN] = axisRange(linear, 'x-axis') ?? [];
  assert.ok(xMin <= 3 && xMin >= 0, `x from ${xMin}`);
  assert.ok(xMax >= 47 && xMax <= 60, `x to ${xMax}`);
  assert.deepEqual(axisRange(linear, 'y-axis'), [0, 100], 'y starts at 0 and ends on a tick');

  const big = plotSvg(OPTIONS, [{ name: 's', points: [[0, 20_000], [1, 30_000]] }]);
  const [, yMax = NaN] = axisRange(big, 'y-axis') ?? [];
  assert.ok(yMax >= 30_000 && yMax <= 40_000, `y to ${yMax}`);

  const log = plotSvg({ ...OPTIONS, logX: true, yRange: [0, 1] }, [{ name: 's', points: [[0, 0.1], [3, 0.5], [470, 1]] }]);
  assert.deepEqual(axisRange(log, 'x-axis'), [1, 1000], 'x = 0 cannot be on a log axis and is left out');
  assert.deepEqual(axisRange(log, 'y-axis'), [0, 1]);
  assert.ok(log.includes('>1000<') && log.includes('>100<') && log.includes('>10<'), 'a tick per decade');

  // A second axis on the right has its own range; the left keeps its own.
  const two = plotSvg({ ...OPTIONS, y2Label: 'count' }, [
    { name: 'rate', points: [[0, 500], [1, 900]] },
    { name: 'count', points: [[0, 2], [1, 7]], axis: 'right' },
  ]);
  assert.deepEqual(axisRange(two, 'y-axis'), [0, 1000]);
  assert.deepEqual(axisRange(two, 'y2-axis'), [0, 8]);
  assert.equal(axisRange(linear, 'y2-axis'), undefined, 'no right axis without a series on it');
  // A single value still gets an axis of some width.
  const flat = plotSvg(OPTIONS, [{ name: 's', points: [[5, 5]] }]);
  const [fMin = NaN, fMax = NaN] = axisRange(flat, 'x-axis') ?? [];
  assert.ok(fMax > fMin);
  assertWellFormed(two);
  assertWellFormed(log);
});

test('names and labels are escaped', () => {
  const evil = '<script>alert("x&y")</script>';
  const svg = plotSvg({ title: evil, xLabel: evil, yLabel: "it's", y2Label: evil }, [
    { name: evil, points: [[1, 1], [2, 2]] },
    { name: 'r', points: [[1, 1]], axis: 'right' },
  ]);
  assertWellFormed(svg);
  assert.ok(!svg.includes('<script'), 'no raw markup from a name');
  assert.ok(svg.includes(escapeXml(evil)));
  assert.equal(escapeXml(`a<b>&"c'`), 'a&#60;b&#62;&#38;&#34;c&#39;');
});

test('no data gives a framed "no data" plot, not a crash', () => {
  const cases: Series[][] = [
    [],
    [{ name: 'empty', points: [] }],
    [{ name: 'nan', points: [[Number.NaN, 1], [1, Number.POSITIVE_INFINITY]] }],
  ];
  for (const series of cases) {
    const svg = plotSvg(OPTIONS, series);
    assertWellFormed(svg);
    assert.match(svg, /class="no-data"[^>]*>no data</);
    assert.ok(!svg.includes('class="series"'));
  }
  const logOfZero = plotSvg({ ...OPTIONS, logX: true }, [{ name: 'z', points: [[0, 1], [-1, 2]] }]);
  assert.match(logOfZero, />no data</);
});

test('niceTicks steps by 1, 2 or 5 × 10^k within the range', () => {
  assert.deepEqual(niceTicks(0, 50), [0, 10, 20, 30, 40, 50]);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 8), [0, 2, 4, 6, 8]);
  assert.deepEqual(niceTicks(-7, 12), [-5, 0, 5, 10]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

test('cdfPoints: sorted values against the fraction at or below, thinned past maxPoints', () => {
  assert.deepEqual(cdfPoints([3, 1, Number.NaN, 2, 4]), [
    [1, 0],
    [1, 0.25],
    [2, 0.5],
    [3, 0.75],
    [4, 1],
  ]);
  assert.deepEqual(cdfPoints([]), []);
  const many = cdfPoints(Array.from({ length: 10_001 }, (_, i) => i), 100);
  assert.ok(many.length <= 103, `${many.length} points`);
  assert.deepEqual(many[many.length - 1], [10_000, 1], 'ends at the largest value');
  for (let i = 2; i < many.length; i++) assert.ok((many[i]?.[0] ?? 0) > (many[i - 1]?.[0] ?? 0));
});
