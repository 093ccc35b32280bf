// Watching a container's init process from outside.
//
// After `runc create` returns, the container's init is nobody's child that
// the worker could wait for: runc has exited and the init was re-parented to
// pid 1. So its end is seen in /proc: the process is gone, a zombie, or its
// pid now belongs to another process (told apart by the start time in
// /proc/<pid>/stat). On machines whose pid 1 never reaps (these: a VM
// agent), the zombie also still holds the exit status (stat field 52); where
// pid 1 reaps at once, the status is unknown and only an OOM kill can still
// be told, from the cgroup.
//
// One timer polls every watched init (EXIT_POLL_MS), and only while there is
// one: a read of a small /proc file per sandbox every 100 ms.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';

const EXIT_POLL_MS = 100;

export interface InitStat {
  /** R, S, D, Z, ... */
  readonly state: string;
  /** Clock ticks since boot: with the pid, the identity of the process. */
  readonly startTime: string;
  /** The raw wait status a zombie holds (stat field 52). */
  readonly exitStatus: number;
}

export function parseInitStat(text: string): InitStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Field 3 (state) is fields[0]; field N is fields[N - 3].
  const fields = text.slice(close + 2).trim().split(' ');
  const state = fields[0];
  const startTime = fields[19];
  if (!state || !startTime) return undefined;
  return { state, startTime, exitStatus: Number(fields[49] ?? 0) };
}

export async function readInitStat(pid: number): Promise<InitStat | undefined> {
  try {
    return parseInitStat(await readFile(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return undefined;
  }
}

export function readInitStatSync(pid: number): InitStat | undefined {
  try {
    return parseInitStat(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return undefined;
  }
}

/** How an init ended, as far as /proc could tell. */
export interface InitExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** False when the process was reaped before we could read its status. */
  readonly known: boolean;
}

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

/** Decodes a wait status (as waitpid(2) reports it). */
export function decodeWaitStatus(status: number): { exitCode: number | null; signal: string | null } {
  const sig = status & 0x7f;
  if (sig === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: null, signal: SIGNAL_NAMES.get(sig) ?? `signal ${sig}` };
}

/** A container init: its pid and start time, so a reused pid is never mistaken for it. */
export class InitProcess {
  constructor(
    readonly pid: number,
    readonly startTime: string,
  ) {}

  /** Reads /proc once: undefined while it runs, how it ended once it has. */
  async poll(): Promise<InitExit | undefined> {
    return this.judge(await readInitStat(this.pid));
  }

  /** Alive (not ended, not a zombie), read synchronously. */
  aliveSync(): boolean {
    return this.judge(readInitStatSync(this.pid)) === undefined;
  }

  private judge(stat: InitStat | undefined): InitExit | undefined {
    if (!stat || stat.startTime !== this.startTime) return { exitCode: null, signal: null, known: false };
    if (stat.state === 'Z' || stat.state === 'X') return { ...decodeWaitStatus(stat.exitStatus), known: true };
    return undefined;
  }

  /** Sends a signal; false when the process is gone (or is not ours any more). */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.aliveSync()) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** Watches many inits with one timer; each watch settles once, when its init has ended. */
export class InitWatcher {
  private readonly watched = new Map<InitProcess, (exit: InitExit) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  watch(init: InitProcess): Promise<InitExit> {
    return new Promise((resolve) => {
      this.watched.set(init, resolve);
      // Ref'd, as a child process handle is: a running sandbox keeps the process alive.
      this.timer ??= setInterval(() => void this.pollAll(), EXIT_POLL_MS);
    });
  }

  /** Checks one init now (a stop that is waiting for it), settling its watch if it has ended. */
  async check(init: InitProcess): Promise<boolean> {
    const exit = await init.poll();
    if (exit) this.settle(init, exit);
    return exit !== undefined;
  }

  private settle(init: InitProcess, exit: InitExit): void {
    const resolve = this.watched.get(init);
    if (!resolve) return;
    this.watched.delete(init);
    resolve(exit);
    if (this.watched.size === 0) this.stopTimer();
  }

  private async pollAll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.all(
        [...this.watched.keys()].map(async (init) => {
          const exit = await init.poll();
          if (exit) this.settle(init, exit);
        }),
      );
    } finally {
      this.polling = false;
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.stopTimer();
  }
}
