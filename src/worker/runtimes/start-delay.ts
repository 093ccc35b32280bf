// How long an emulated sandbox takes to "start": a seeded sampler over the
// distributions of `emulation.startDelay` (docs/configuration.md). Pure: the
// same config and seed give the same sequence of delays, so a scale
// experiment can be replayed.
//
// Parameters, all in ms:
//   constant     ms
//   uniform      in [ms, ms + spreadMs]
//   exponential  mean ms (a Poisson-like boot: mostly short, a long tail)
//   lognormal    mean ms and standard deviation spreadMs, the usual shape of
//                measured cold starts (a hump and a right tail)
import type { WorkerConfig } from '../../shared/config.js';
import { mulberry32, type RandomSource } from '../../shared/random.js';

export type StartDelayConfig = WorkerConfig['emulation']['startDelay'];

/** The next start delay in ms (≥ 0, fractional). */
export type StartDelaySampler = () => number;

/** A sampler for the config; `random` overrides the generator seeded with config.seed. */
export function startDelaySampler(config: StartDelayConfig, random: RandomSource = mulberry32(config.seed)): StartDelaySampler {
  const { ms, spreadMs } = config;
  switch (config.distribution) {
    case 'constant':
      return () => ms;
    case 'uniform':
      return () => ms + random() * spreadMs;
    case 'exponential':
      // Inverse CDF; 1 - u lies in (0, 1], so the log is finite.
      return () => -ms * Math.log(1 - random());
    case 'lognormal': {
      if (ms === 0) return () => 0;
      // The normal's parameters that give the wanted mean and standard deviation.
      const sigma2 = Math.log(1 + (spreadMs * spreadMs) / (ms * ms));
      const mu = Math.log(ms) - sigma2 / 2;
      const sigma = Math.sqrt(sigma2);
      return () => Math.exp(mu + sigma * standardNormal(random));
    }
  }
}

/** One standard normal draw (Box–Muller, one of the pair). */
function standardNormal(random: RandomSource): number {
  const u1 = 1 - random(); // (0, 1]: the log stays finite
  const u2 = random();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
