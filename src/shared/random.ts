// Seeded randomness, for everything that must be reproducible: policy tests
// today, trace replay (inter-arrival times, sampled durations) later.

/** A source of uniform numbers in [0, 1), as Math.random. */
export type RandomSource = () => number;

/** mulberry32: a small, fast 32-bit generator; the same seed gives the same sequence. */
export function mulberry32(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A uniform integer in [0, n), n ≥ 1. Clamped, so a source returning 1 stays in range. */
export function randomIndex(random: RandomSource, n: number): number {
  const i = Math.floor(random() * n);
  return i < n ? i : n - 1;
}
