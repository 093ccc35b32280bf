// The OCI bundle of one sandbox: config.json and an empty rootfs directory,
// written under <dataDir>/oci/<worker>/<container>/.
//
// No image: the rootfs is empty and read-only, and the host's /usr (and
// /etc) are bound into it read-only, so a function runs on the machine's own
// programs and libraries (DESIGN.md, "Runtimes"). /bin, /lib, /lib64 and
// /sbin are copied from the host's layout: symlinks into /usr on merged-/usr
// systems (Debian 12), read-only binds where they are real directories. The
// function's workdir is bound read-only at /function and is its cwd. The
// only writable places are tmpfs: /tmp, /dev/shm, /dev.
//
// What confines it: pid, ipc, uts and mount namespaces (plus network for
// `isolated`), a non-root user, no capabilities at all, no_new_privs, the
// runc default masked and read-only /proc paths, and cgroup limits from the
// function's resources: CPU quota (cpuMillis per 1000 of a 100 ms period),
// memory with swap capped at the same figure (so exceeding it is an OOM kill,
// not swapping), and a pids limit.
//
// ociConfig() is a pure function of its input, so the spec can be tested
// without root or runc.
import { lstatSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FunctionSpec } from '../../../shared/spec.js';

/** The sandbox's PATH: the host's, minus nothing (the rootfs has the host's /usr). */
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Where the function's workdir appears inside the container. */
export const FUNCTION_DIR = '/function';
/** Open files per process: what a busy HTTP server needs; never above the worker's own hard limit, which runc cannot raise. */
const NOFILE_LIMIT = 65_536;
const CPU_PERIOD_US = 100_000;
const MIB = 1024 * 1024;
/** /dev/shm's size (runc's default spec). /tmp is sized by the memory limit instead: tmpfs pages count against it anyway. */
const SHM_SIZE = '65536k';

/** How the top-level directories of the host's / look, so the rootfs can mirror them. */
export interface HostLayout {
  /** Top-level names that are symlinks on the host (bin -> usr/bin), with their targets. */
  readonly symlinks: ReadonlyArray<readonly [name: string, target: string]>;
  /** RLIMIT_NOFILE for the sandbox: NOFILE_LIMIT, or the worker's hard limit when that is lower. */
  readonly nofile: number;
  /** Top-level library and program directories that are real directories on the host: bound read-only. */
  readonly directories: readonly string[];
  /**
   * Host directories outside /usr to bind read-only at the same path: the
   * install prefix of the Node running the worker when it does not live in
   * /usr (nvm, /opt), so `node` functions find it.
   */
  readonly extraBinds: readonly string[];
}

const MIRRORED = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'] as const;

/** Reads the host's layout once, at runtime start. */
export function readHostLayout(nodeExecPath: string = process.execPath): HostLayout {
  const symlinks: Array<[string, string]> = [];
  const directories: string[] = [];
  for (const name of MIRRORED) {
    const path = `/${name}`;
    let stat;
    try {
      stat = lstatSync(path);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink()) symlinks.push([name, readlinkSync(path)]);
    else if (stat.isDirectory()) directories.push(path);
  }
  return { symlinks, directories, extraBinds: nodePrefixBind(nodeExecPath), nofile: Math.min(NOFILE_LIMIT, hardNofile()) };
}

/** The worker's hard RLIMIT_NOFILE, from /proc/self/limits. */
function hardNofile(): number {
  try {
    const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const hard = line?.[2];
    if (hard === 'unlimited') return Number.MAX_SAFE_INTEGER;
    if (hard !== undefined && Number.isInteger(Number(hard))) return Number(hard);
  } catch {
    // No /proc: keep the default.
  }
  return NOFILE_LIMIT;
}

/** The install prefix of a Node binary (…/bin/node → …) when it lies outside what the rootfs already has. */
export function nodePrefixBind(execPath: string): string[] {
  let real: string;
  try {
    real = realpathSync(execPath);
  } catch {
    return [];
  }
  const covered = ['/usr/', '/bin/', '/sbin/', '/lib/', '/lib64/', '/etc/'];
  if (covered.some((p) => real.startsWith(p))) return [];
  const prefix = dirname(dirname(real));
  // A binary straight under / (or /x/node) has no prefix worth binding: bind its directory.
  return [prefix === '/' ? dirname(real) : prefix];
}

/** What one container's config.json is made from. */
export interface BundleInput {
  readonly spec: FunctionSpec;
  /** The process's environment, in order. */
  readonly env: Readonly<Record<string, string>>;
  readonly uid: number;
  readonly gid: number;
  readonly pidsLimit: number;
  /** Relative to each cgroup hierarchy's root: /baton-<tag>/<container>. */
  readonly cgroupsPath: string;
  /** A network namespace to join (/run/netns/<name>); undefined shares the host's. */
  readonly netnsPath: string | undefined;
  readonly layout: HostLayout;
  /** False where the kernel has no swap accounting (cgroup v1 without memory.memsw.*): the swap limit is then left out. */
  readonly swapLimit: boolean;
}

interface Mount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

const roBind = (path: string, recursive = false): Mount => ({
  destination: path,
  type: 'bind',
  source: path,
  options: [recursive ? 'rbind' : 'bind', 'ro', 'nosuid', 'nodev'],
});

/** The OCI runtime spec (config.json) of one sandbox. */
export function ociConfig(input: BundleInput): Record<string, unknown> {
  const { spec, layout } = input;
  const memoryBytes = spec.resources.memoryMb * MIB;
  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${SHM_SIZE}`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    roBind('/usr'),
    ...layout.directories.map((d) => roBind(d)),
    // rbind: where /etc/resolv.conf or /etc/hosts are mounts of their own, the container sees the same files.
    roBind('/etc', true),
    ...layout.extraBinds.map((d) => roBind(d)),
    ...(input.spec.workdir === undefined
      ? []
      : // A plain bind: mounts under the directory stay out (rbind would bring them in, and
        // runc 1.1 makes only the top of an rbind read-only).
        [{ destination: FUNCTION_DIR, type: 'bind', source: input.spec.workdir, options: ['bind', 'ro', 'nosuid', 'nodev'] }]),
    {
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'mode=1777', `size=${spec.resources.memoryMb}m`],
    },
  ];
  const namespaces: Array<{ type: string; path?: string }> = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (input.netnsPath !== undefined) namespaces.push({ type: 'network', path: input.netnsPath });
  const noCapabilities = { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] };
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: input.uid, gid: input.gid, additionalGids: [input.gid] },
      args: [...spec.command],
      env: Object.entries(input.env).map(([k, v]) => `${k}=${v}`),
      cwd: spec.workdir === undefined ? '/' : FUNCTION_DIR,
      capabilities: noCapabilities,
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: layout.nofile, soft: layout.nofile }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: spec.name,
    mounts,
    linux: {
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: input.swapLimit ? { limit: memoryBytes, swap: memoryBytes } : { limit: memoryBytes },
        cpu: {
          // Shares weigh sandboxes against each other when the machine is busy; the quota caps each one.
          shares: Math.max(2, Math.round((spec.resources.cpuMillis * 1024) / 1000)),
          // The kernel refuses a quota under 1 ms (EINVAL), so below 10 millicores the cap is 10.
          quota: Math.max(1000, spec.resources.cpuMillis * (CPU_PERIOD_US / 1000)),
          period: CPU_PERIOD_US,
        },
        pids: { limit: input.pidsLimit },
      },
      cgroupsPath: input.cgroupsPath,
      namespaces,
      // runc's default spec: kernel interfaces a container has no business reading or writing.
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Mount points the rootfs needs before runc runs: everything mounted at the top level. */
function rootfsDirectories(input: BundleInput): string[] {
  const dirs = new Set(['proc', 'dev', 'sys', 'tmp', 'usr', 'etc']);
  for (const d of input.layout.directories) dirs.add(d.slice(1));
  if (input.spec.workdir !== undefined) dirs.add(FUNCTION_DIR.slice(1));
  return [...dirs];
}

/** Writes <dir>/config.json and <dir>/rootfs with its mount points and symlinks. */
export async function writeBundle(dir: string, input: BundleInput): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(rootfs, { recursive: true });
  await Promise.all([
    ...rootfsDirectories(input).map((d) => mkdir(join(rootfs, d))),
    ...input.layout.symlinks.map(([name, target]) => symlink(target, join(rootfs, name))),
  ]);
  // runc gives a tmpfs the mode of the directory it is mounted on, whatever its mode= option says.
  await chmod(join(rootfs, 'tmp'), 0o1777);
  // Extra binds (a Node prefix) are nested paths: runc creates their mount points itself.
  await writeFile(join(dir, 'config.json'), JSON.stringify(ociConfig(input)));
}

/** The environment of a sandbox: explicit, never the worker's (DESIGN.md, "Traps"). */
export function sandboxEnv(spec: FunctionSpec, host: string, port: number): Record<string, string> {
  return {
    PATH: SANDBOX_PATH,
    HOME: '/tmp',
    LANG: 'C.UTF-8',
    ...spec.env,
    PORT: String(port),
    HOST: host,
    BATON_FUNCTION: spec.name,
  };
}
