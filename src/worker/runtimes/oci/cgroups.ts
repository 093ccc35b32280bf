// The container cgroups as the worker sees them: where the hierarchies are
// mounted, how many OOM kills a container's memory cgroup counted, and how to
// remove a worker's whole subtree when runc has left some of it behind.
//
// These machines are hybrid (DESIGN.md, "Traps"): every controller is a
// cgroup v1 hierarchy under /sys/fs/cgroup/<controller>, with an empty
// cgroup2 hierarchy at /sys/fs/cgroup/unified, and runc creates the container
// cgroup in all of them. On a pure v2 machine there is one hierarchy. The
// code reads /proc/self/mountinfo and handles both.
import { readFileSync } from 'node:fs';
import { readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface CgroupMounts {
  /** Every cgroup (v1) and cgroup2 mount point. */
  readonly hierarchies: readonly string[];
  /** The hierarchy holding the memory controller, and whether it is v2. */
  readonly memory: { readonly mount: string; readonly v2: boolean } | undefined;
  /** Whether a swap limit can be set (v1: memory.memsw.* exist; v2: assumed). */
  readonly swapLimit: boolean;
}

/** Reads the cgroup mounts from mountinfo ("... <mount point> <opts> - <fstype> <source> <super opts>"). */
export function readCgroupMounts(mountinfo = '/proc/self/mountinfo'): CgroupMounts {
  let text = '';
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return { hierarchies: [], memory: undefined, swapLimit: false };
  }
  const hierarchies: string[] = [];
  let v1Memory: string | undefined;
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const before = line.slice(0, sep).split(' ');
    const after = line.slice(sep + 3).split(' ');
    const mountPoint = before[4];
    const fsType = after[0];
    if (!mountPoint || (fsType !== 'cgroup' && fsType !== 'cgroup2')) continue;
    const point = unescapeMountPath(mountPoint);
    hierarchies.push(point);
    if (fsType === 'cgroup2') v2 ??= point;
    else if ((after[2] ?? '').split(',').includes('memory')) v1Memory = point;
  }
  const memory = v1Memory ? { mount: v1Memory, v2: false } : v2 ? { mount: v2, v2: true } : undefined;
  let swapLimit = memory?.v2 ?? false;
  if (memory && !memory.v2) {
    try {
      readFileSync(join(memory.mount, 'memory.memsw.limit_in_bytes'));
      swapLimit = true;
    } catch {
      swapLimit = false;
    }
  }
  return { hierarchies, memory, swapLimit };
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * How many processes the kernel's OOM killer killed in a container's memory
 * cgroup (v1 memory.oom_control, v2 memory.events: `oom_kill N`); undefined
 * when it cannot be read (the cgroup is gone, an old kernel).
 */
export async function readOomKills(mounts: CgroupMounts, cgroupsPath: string): Promise<number | undefined> {
  if (!mounts.memory) return undefined;
  const file = join(mounts.memory.mount, cgroupsPath, mounts.memory.v2 ? 'memory.events' : 'memory.oom_control');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const match = /^oom_kill (\d+)$/m.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/**
 * Removes a cgroup and everything below it in every hierarchy, killing any
 * process still inside (runc delete normally leaves only the empty parents).
 * Returns the directories it could not remove.
 */
export async function removeCgroupTree(mounts: CgroupMounts, relativePath: string): Promise<string[]> {
  const left: string[] = [];
  await Promise.all(mounts.hierarchies.map(async (h) => left.push(...(await removeTree(join(h, relativePath))))));
  return left;
}

async function removeTree(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const left: string[] = [];
  for (const e of entries) {
    if (e.isDirectory()) left.push(...(await removeTree(join(dir, e.name))));
  }
  // A process still inside keeps the cgroup busy: kill it and give the kernel a moment to move it out.
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await rmdir(dir);
      return left;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return left;
      if (code !== 'EBUSY') break;
    }
    const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const pid of procs.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(Math.min(2 + attempt * 2, 20));
  }
  left.push(dir);
  return left;
}
