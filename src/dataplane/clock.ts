// A coarse clock for the hot path: deadlines and idle times are compared to
// `clock.now`, which the data plane's housekeeping timer advances every
// 25 ms, instead of reading the time per request. Time-outs are therefore
// accurate to about one tick, which is plenty for limits measured in seconds.
import { performance } from 'node:perf_hooks';

/** How often the housekeeping timer ticks; `clock.now` lags real time by at most this. */
export const CLOCK_TICK_MS = 25;

export const clock = { now: performance.now() };

/**
 * A deadline `ms` from now on the coarse clock that never comes early: the
 * clock may lag by a tick, so one tick is added.
 */
export function deadlineIn(ms: number): number {
  return clock.now + ms + CLOCK_TICK_MS;
}

/** Advances the coarse clock; called by the housekeeping timer. */
export function tickClock(): number {
  clock.now = performance.now();
  return clock.now;
}
