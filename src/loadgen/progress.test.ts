import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eta, formatClock, formatProgressBar, formatProgressLine, Progress, type ProgressState } from './progress.js';

const state = (over: Partial<ProgressState> = {}): ProgressState => ({
  total: 200,
  sent: 50,
  answered: 45,
  elapsedMs: 15_000,
  scheduleEndMs: 60_000,
  lagMs: 2.4,
  maxLagMs: 130.6,
  ...over,
});

test('formatClock and eta', () => {
  assert.equal(formatClock(75), '0:00');
  assert.equal(formatClock(65_000), '1:05');
  assert.equal(formatClock(7_200_000), '2:00:00');
  assert.equal(formatClock(-5), '0:00');
  assert.equal(eta(state()), '0:45', 'sends remain: until the schedule ends');
  assert.equal(eta(state({ sent: 200, answered: 190, elapsedMs: 61_000 })), '?', 'all sent, answers pending');
  assert.equal(eta(state({ sent: 200, answered: 200 })), '0:00');
});

test('the plain line says sent, answered, percent, elapsed, ETA and lag', () => {
  assert.equal(formatProgressLine(state()), 'sent 50/200 (25%), answered 45, elapsed 0:15, ETA 0:45, lag 2 ms, max lag 131 ms');
});

test('the bar fills with the sent fraction and never reaches the last column', () => {
  const bar = formatProgressBar(state(), 100);
  assert.match(bar, /^\[(#+)(\.+)\] {2}25% sent 50\/200 answered 45 0:15 ETA 0:45 lag 2 ms$/);
  const [, filled = '', empty = ''] = /^\[(#*)(\.*)\]/.exec(bar) ?? [];
  assert.equal(filled.length, Math.floor((filled.length + empty.length) / 4));
  assert.ok(bar.length <= 99);
  assert.match(formatProgressBar(state({ sent: 200, answered: 200 }), 100), /^\[#+\] 100%/);
  assert.match(formatProgressBar(state({ sent: 0, answered: 0 }), 100), /^\[\.+\] {3}0%/);
  // Wide terminals cap the bar at 40 cells; narrow ones cut the line.
  assert.equal(/^\[([#.]+)\]/.exec(formatProgressBar(state(), 300))?.[1]?.length, 40);
  assert.equal(formatProgressBar(state(), 30).length, 29);
  assert.equal(formatProgressBar(state({ total: 0, sent: 0, answered: 0 }), 80).includes('100%'), true, 'an empty schedule is done');
});

test('Progress: lines mode logs plain lines; bar mode redraws in place and keeps messages readable', async () => {
  const lines: string[] = [];
  const lines1 = new Progress({ mode: 'lines', intervalMs: 10, log: (l) => lines.push(l) });
  lines1.start(() => state());
  // Until two interval lines came (a loaded machine may stall the timer a while), then stop.
  for (const deadline = Date.now() + 10_000; lines.length < 2 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
  lines1.stop();
  assert.ok(lines.length >= 2, `${lines.length} lines`);
  assert.ok(lines.every((l) => l.startsWith('sent 50/200')));

  const written: string[] = [];
  const logged: string[] = [];
  const bar = new Progress({ mode: 'bar', intervalMs: 10, log: (l) => logged.push(l), terminal: { write: (t: string) => written.push(t), columns: 80 } });
  let sent = 0;
  bar.start(() => state({ sent }));
  await new Promise((resolve) => setTimeout(resolve, 40));
  sent = 200;
  bar.log('warning: behind schedule by 150 ms');
  bar.stop();
  assert.deepEqual(logged, ['warning: behind schedule by 150 ms'], 'messages go to the log, not into the bar');
  assert.ok(written.length >= 3);
  assert.ok(written.slice(0, -1).every((t) => t.startsWith('\r\x1b[K')), 'every draw returns to the line start and clears it');
  assert.ok(!written.slice(0, -1).some((t) => t.includes('\n')), 'the bar never moves to a new line while it runs');
  assert.match(written[written.length - 2] ?? '', /100% sent 200\/200/, 'the final state is drawn');
  assert.equal(written[written.length - 1], '\n', 'and then left in place');

  const narrow: string[] = [];
  const zero = new Progress({ mode: 'bar', intervalMs: 10, log: () => undefined, terminal: { write: (t: string) => narrow.push(t), columns: 0 } });
  zero.start(() => state());
  zero.stop();
  assert.ok(narrow[0]?.startsWith('\r\x1b[K'));
  assert.match(narrow[0]?.slice(4) ?? '', /^\[[#.]+\] {2}25%/, 'a terminal of 0 columns gets 80');

  const silent: string[] = [];
  const none = new Progress({ mode: 'none', intervalMs: 10, log: (l) => silent.push(l) });
  none.start(() => state());
  await new Promise((resolve) => setTimeout(resolve, 30));
  none.stop();
  assert.deepEqual(silent, []);
});
