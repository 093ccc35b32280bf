// Process groups: each process sandbox runs in its own group (spawned
// detached, so it is a session and group leader), and the worker signals and
// watches the whole group, so a function's children die with it.
//
// "Gone" means no live member is left. A member killed after its parent died
// is re-parented to init and stays a zombie until init reaps it; on machines
// whose init never reaps (these machines: pid 1 is a VM agent), kill(-pgid, 0)
// keeps succeeding on zombies forever. So once the leader has been reaped, a
// group whose remaining members are all zombies (read from /proc) counts as
// gone: a zombie holds no memory, port or file.
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Sends a signal (0 to probe) to every member of a process group. Returns
 * false when the group has no member left (ESRCH); never throws for that.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (pgid <= 0) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return false;
    // A member we may not signal (it changed user) still exists.
    if (code === 'EPERM') return true;
    throw err;
  }
}

/** The live (non-zombie) members of a process group, from /proc; null where there is no /proc. */
export async function liveGroupMembers(pgid: number): Promise<number[] | null> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return null;
  }
  const live: number[] = [];
  await Promise.all(
    entries.map(async (name) => {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) return;
      const stat = await readFile(`/proc/${name}/stat`, 'latin1').catch(() => '');
      const parsed = parseStat(stat);
      if (parsed && parsed.pgid === pgid && parsed.state !== 'Z' && parsed.state !== 'X') live.push(Number(name));
    }),
  );
  return live;
}

/** Parses the state and process group out of /proc/<pid>/stat ("pid (comm) S ppid pgrp ..."). */
export function parseStat(stat: string): { state: string; pgid: number } | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const state = fields[0];
  const pgid = Number(fields[2]);
  if (!state || !Number.isInteger(pgid)) return undefined;
  return { state, pgid };
}

/**
 * True when nothing live is left in the group. While the leader is not yet
 * reaped, only the cheap kill(-pgid, 0) is used; /proc is read only once the
 * leader is gone and something still answers.
 */
export async function groupGone(pgid: number, leaderReaped: boolean): Promise<boolean> {
  if (!signalGroup(pgid, 0)) return true;
  if (!leaderReaped) return false;
  const live = await liveGroupMembers(pgid);
  return live !== null && live.length === 0;
}

/**
 * Polls until the group is gone or the timeout passes; returns whether it is
 * gone. Polls fast at first (1 ms, ×1.5 up to 20 ms): most functions exit
 * within a few milliseconds of SIGTERM, and delete latency is scale-down
 * latency.
 */
export async function waitGroupGone(pgid: number, leaderReaped: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let delayMs = 1;
  for (;;) {
    if (await groupGone(pgid, leaderReaped())) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await sleep(Math.min(delayMs, left));
    delayMs = Math.min(delayMs * 1.5, 20);
  }
}
