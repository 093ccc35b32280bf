// The process ledger: what a worker started, on disk, so that the next worker
// started on the same dataDir can kill what a dead predecessor left.
//
// Sandboxes of the `process` and `node` runtimes run in their own process
// groups (detached), so a worker killed with SIGKILL, or dying in a way its
// 'exit' hook never runs, leaves them running: nothing in Node can ask the
// kernel to kill a child when its parent dies (no PR_SET_PDEATHSIG). The node
// runtime's processes exit when their IPC channel closes, but a process
// sandbox has no such channel. The restart sweep is the guarantee.
//
// One small file per process group, <dataDir>/processes/<pid>.json, written
// synchronously right after the spawn (before anything can kill the worker
// between the spawn and the record) and removed once the group is gone. Each
// names its process by pid and start time (/proc/<pid>/stat field 22), so a
// pid the kernel has reused for something else is never signalled, and names
// its owner the same way, so a worker never touches the records of a live
// worker sharing the dataDir (`baton up --workers N`).
//
// Records are keyed by dataDir, not by worker id: ids may be random per start.
// The sweep kills; it does not re-adopt. A re-adopted sandbox would need its
// port, spec and revision back and its exit watched without being its parent;
// killing is simpler, and the control plane replaces what it needs.
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../shared/logging.js';
import { liveGroupMembers, signalGroup, waitGroupGone } from './process-group.js';
import { readInitStat, readInitStatSync } from './runtimes/oci/init-process.js';

/** One started process group, as written to disk. */
export interface LedgerRecord {
  /** The group leader's pid, which is also the group id. */
  readonly pid: number;
  /** /proc/<pid>/stat start time: with the pid, the process's identity. */
  readonly startTime: string;
  readonly runtime: string;
  /** Empty for a node runtime pool process not yet bound to a sandbox. */
  readonly sandboxId: string;
  readonly workerId: string;
  readonly workerPid: number;
  readonly workerStartTime: string;
}

/** A leftover the sweep found, and what it did with it. */
export interface SweptProcess {
  readonly pid: number;
  readonly runtime: string;
  readonly sandboxId: string;
  readonly workerId: string;
  /** `killed`: the group was alive and got SIGKILL; `gone`: nothing of it was left. */
  readonly outcome: 'killed' | 'gone';
}

/** How long the sweep waits for a killed group to empty. */
const SWEEP_KILL_WAIT_MS = 5000;

export class ProcessLedger {
  readonly dir: string;
  private readonly workerStartTime: string;
  /** Records being written by recordAfterIntent(), by pid. */
  private readonly writing = new Map<number, Promise<void>>();

  constructor(
    dataDir: string,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {
    this.dir = join(dataDir, 'processes');
    this.workerStartTime = readInitStatSync(process.pid)?.startTime ?? '';
  }

  /** Records a process group just spawned. Synchronous: a worker killed right after the spawn must not leave it unrecorded. */
  record(pid: number, runtime: string, sandboxId = ''): void {
    const startTime = readInitStatSync(pid)?.startTime;
    if (pid <= 0 || startTime === undefined) return; // Already gone: nothing to remember.
    try {
      mkdirSync(this.dir, { recursive: true });
      writeFileSync(join(this.dir, `${pid}.json`), this.recordText(pid, startTime, runtime, sandboxId));
    } catch (err) {
      this.log.warn({ err, pid, sandboxId }, 'cannot record a sandbox process; a restart could not clean it up');
    }
  }

  /**
   * record() off the event loop, for a spawn whose intent (intend()) was
   * written first: until the caller settles the intent after this resolves,
   * the intent is what a restart's sweep finds the process by. Reading
   * /proc/<pid>/stat of a process that is still exec'ing took 1–12 ms
   * synchronously on a loaded machine, on the cold-start path. Never rejects.
   */
  recordAfterIntent(pid: number, runtime: string, sandboxId: string): Promise<void> {
    const written = (async () => {
      const startTime = pid > 0 ? (await readInitStat(pid))?.startTime : undefined;
      if (startTime === undefined) return; // Already gone: nothing to remember.
      try {
        await mkdir(this.dir, { recursive: true });
        await writeFile(join(this.dir, `${pid}.json`), this.recordText(pid, startTime, runtime, sandboxId));
      } catch (err) {
        this.log.warn({ err, pid, sandboxId }, 'cannot record a sandbox process; a restart could not clean it up');
      }
    })();
    this.writing.set(pid, written);
    void written.finally(() => {
      if (this.writing.get(pid) === written) this.writing.delete(pid);
    });
    return written;
  }

  private recordText(pid: number, startTime: string, runtime: string, sandboxId: string): string {
    const record: LedgerRecord = {
      pid,
      startTime,
      runtime,
      sandboxId,
      workerId: this.workerId,
      workerPid: process.pid,
      workerStartTime: this.workerStartTime,
    };
    return JSON.stringify(record);
  }

  /**
   * Before a spawn: the sandbox id its environment will carry (BATON_SANDBOX_ID). A worker
   * killed during the spawn, before record() could run, leaves this behind instead of
   * nothing, and the sweep finds the process by its environment. Synchronous.
   */
  intend(sandboxId: string, runtime: string): void {
    if (!/^[A-Za-z0-9._-]+$/.test(sandboxId)) return;
    try {
      mkdirSync(this.dir, { recursive: true });
      writeFileSync(
        join(this.dir, `intent-${sandboxId}.json`),
        JSON.stringify({ sandboxId, runtime, workerId: this.workerId, workerPid: process.pid, workerStartTime: this.workerStartTime }),
      );
    } catch (err) {
      this.log.warn({ err, sandboxId }, 'cannot record a sandbox about to start; a restart could not clean it up');
    }
  }

  /** After the spawn, recorded or failed: the intent is no longer needed. */
  settle(sandboxId: string): void {
    try {
      unlinkSync(join(this.dir, `intent-${sandboxId}.json`));
    } catch {
      /* never written, or already gone */
    }
  }

  /** Forgets a process group that is gone. Never rejects. */
  async forget(pid: number): Promise<void> {
    if (pid <= 0) return;
    // A record still being written would otherwise land after its removal.
    await this.writing.get(pid);
    await unlink(join(this.dir, `${pid}.json`)).catch(() => undefined);
  }

  /**
   * Kills every recorded process group whose owner is no longer running and
   * whose leader (or a member, once the leader is gone) still is, then
   * removes the records. Returns what it found; logs which it killed.
   */
  async sweep(): Promise<SweptProcess[]> {
    const swept = await this.sweepWhere((owner) => !isAlive(owner.workerPid, owner.workerStartTime));
    const killed = swept.filter((s) => s.outcome === 'killed');
    if (killed.length > 0) {
      this.log.warn(
        { killed: killed.map((s) => ({ sandboxId: s.sandboxId || '(pool process)', pid: s.pid, runtime: s.runtime, previousWorkerId: s.workerId })) },
        `killed ${killed.length} sandbox process group(s) left by a previous run of a worker on this dataDir`,
      );
    } else if (swept.length > 0) {
      this.log.info({ records: swept.length }, 'no process left by a previous worker run was still running');
    }
    return swept;
  }

  /**
   * The last step of a worker's stop, after it deleted every sandbox it
   * knows: kills what this worker's own records still name. A spawn that the
   * sandbox table lost track of (a create abandoned mid-spawn, one that
   * finished during the drain) is otherwise left running by a stop that went
   * well.
   */
  async killOwn(): Promise<SweptProcess[]> {
    // Records still being written (recordAfterIntent) are this worker's: let them land first.
    await Promise.all(this.writing.values());
    const swept = await this.sweepWhere(
      (owner) => owner.workerId === this.workerId && owner.workerPid === process.pid && owner.workerStartTime === this.workerStartTime,
    );
    const killed = swept.filter((s) => s.outcome === 'killed');
    if (killed.length > 0) {
      this.log.warn(
        { killed: killed.map((s) => ({ sandboxId: s.sandboxId || '(pool process)', pid: s.pid, runtime: s.runtime })) },
        `killed ${killed.length} sandbox process group(s) the worker had lost track of`,
      );
    }
    return swept;
  }

  /** Kills and forgets the recorded process groups (and intents) whose owner `owned` accepts. */
  private async sweepWhere(owned: (owner: Owner) => boolean): Promise<SweptProcess[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const swept: SweptProcess[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const path = join(this.dir, name);
      if (name.startsWith('intent-')) {
        swept.push(...(await sweepIntent(path, owned)));
        continue;
      }
      let record: LedgerRecord;
      try {
        record = JSON.parse(await readFile(path, 'utf8')) as LedgerRecord;
      } catch {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!owned(record)) continue; // e.g. a live worker's: not ours to touch.
      const outcome = await killLeftover(record.pid, record.startTime);
      swept.push({ pid: record.pid, runtime: record.runtime, sandboxId: record.sandboxId, workerId: record.workerId, outcome });
      await unlink(path).catch(() => undefined);
    }
    return swept;
  }
}

/** Who wrote a record or an intent. */
interface Owner {
  readonly workerId: string;
  readonly workerPid: number;
  readonly workerStartTime: string;
}

/** An intent left by a worker that died during a spawn: kill whatever carries its sandbox id. */
async function sweepIntent(path: string, owned: (owner: Owner) => boolean): Promise<SweptProcess[]> {
  let intent: { sandboxId: string; runtime: string; workerId: string; workerPid: number; workerStartTime: string };
  try {
    intent = JSON.parse(await readFile(path, 'utf8')) as typeof intent;
  } catch {
    await unlink(path).catch(() => undefined);
    return [];
  }
  if (!owned(intent)) return [];
  const marker = `BATON_SANDBOX_ID=${intent.sandboxId}`;
  const swept: SweptProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
    } catch {
      continue;
    }
    if (!environ.split('\0').includes(marker)) continue;
    const pid = Number(entry);
    // A sandbox leads its own group (detached), so its children go with it.
    if (!signalGroup(pid, 'SIGKILL')) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        continue;
      }
    }
    await waitGroupGone(pid, () => true, SWEEP_KILL_WAIT_MS);
    swept.push({ pid, runtime: intent.runtime, sandboxId: intent.sandboxId, workerId: intent.workerId, outcome: 'killed' });
  }
  await unlink(path).catch(() => undefined);
  return swept;
}

function isAlive(pid: number, startTime: string): boolean {
  const stat = readInitStatSync(pid);
  return stat !== undefined && stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * SIGKILLs a recorded group if anything of it is still alive. The group is
 * signalled when its leader is the recorded process, or when the leader is
 * gone but members remain: the kernel does not hand out a pid still in use as
 * a group id, so those members are the leader's. A pid now held by another
 * process means the group emptied long ago.
 */
async function killLeftover(pid: number, startTime: string): Promise<'killed' | 'gone'> {
  const stat = readInitStatSync(pid);
  const leaderAlive = stat !== undefined && stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X';
  if (!leaderAlive) {
    if (stat !== undefined && stat.startTime !== startTime) return 'gone';
    const members = await liveGroupMembers(pid);
    if (members === null || members.length === 0) return 'gone';
  }
  if (!signalGroup(pid, 'SIGKILL')) return 'gone';
  await waitGroupGone(pid, () => true, SWEEP_KILL_WAIT_MS);
  return 'killed';
}
