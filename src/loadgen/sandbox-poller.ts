// The trace functions' ready sandboxes over time, for the report: polled
// from the control plane (`GET /v1/functions`, each function's
// readySandboxes) while the replay runs, never derived from the answers,
// which only show the sandboxes that served something.
import type { AdminClient } from '../cli/client.js';
import { toBatonError } from '../shared/errors.js';
import type { SandboxSample } from './report.js';

/** Every second of wall time; faster for a time-scaled replay (a trace second), but not under 50 ms. */
export function pollIntervalMs(timeScale: number): number {
  return Math.min(1000, Math.max(50, Math.round(1000 * timeScale)));
}

/** Ready sandboxes of the named functions in a `GET /v1/functions` answer. */
export function readyOf(body: { functions?: unknown }, names: ReadonlySet<string>): number {
  let ready = 0;
  for (const f of Array.isArray(body.functions) ? (body.functions as { name?: unknown; readySandboxes?: unknown }[]) : []) {
    if (typeof f.name === 'string' && names.has(f.name) && typeof f.readySandboxes === 'number') ready += f.readySandboxes;
  }
  return ready;
}

export type PollerState = 'RUNNING' | 'STOPPING' | 'STOPPED';

/**
 * Polls until stop(). One call at a time (a slow control plane gets fewer
 * polls, not a pile of them); a sample is stamped with the middle of its
 * call. A failed poll is logged once and skipped: the plot then has a gap,
 * the replay goes on.
 */
export class SandboxPoller {
  private state: PollerState = 'RUNNING';
  private readonly samples: SandboxSample[] = [];
  private readonly loop: Promise<void>;
  private wake: (() => void) | undefined;
  private warned = false;

  constructor(
    private readonly client: AdminClient,
    names: readonly string[],
    private readonly intervalMs: number,
    /** The replay's clock: ms since its start. */
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {
    const set = new Set(names);
    this.loop = this.run(set);
  }

  private async run(names: ReadonlySet<string>): Promise<void> {
    while (this.state === 'RUNNING') {
      await this.poll(names);
      if (this.state !== 'RUNNING') break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.intervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    // A last sample after the replay, so the plot reaches its end.
    await this.poll(names);
    this.state = 'STOPPED';
  }

  private async poll(names: ReadonlySet<string>): Promise<void> {
    const t0 = this.now();
    try {
      const body = await this.client.call<{ functions?: unknown }>('GET', '/v1/functions');
      this.samples.push({ atMs: (t0 + this.now()) / 2, ready: readyOf(body, names) });
    } catch (err) {
      if (!this.warned) this.log(`warning: could not poll the sandbox count (the report will have gaps): ${toBatonError(err).message}`);
      this.warned = true;
    }
  }

  /** Ends polling after one last sample; resolves with every sample, in time order. */
  async stop(): Promise<SandboxSample[]> {
    if (this.state === 'RUNNING') this.state = 'STOPPING';
    this.wake?.();
    await this.loop;
    return this.samples;
  }
}
