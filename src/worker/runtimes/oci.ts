// The `oci` runtime: a sandbox is the function's command in a runc
// container (docs/runtimes.md). Needs root and runc; no image registry: the
// rootfs binds the host's /usr and the function's directory (oci/bundle.ts).
//
// create: a host port → for `isolated`, a network namespace from the pool and
// a DNAT rule (oci/network.ts) → the bundle and `runc create` → `runc start`
// → GET /health on the host port until any HTTP answer. When a container of
// the same function (same command, env, resources, workdir, network) was
// created ahead, the first three steps are already done and create is
// `runc start` plus the probe (latency.pooled).
//
// Precreating: after a function's first sandbox starts, up to oci.precreate
// containers of it are made with `runc create` in the background and kept
// waiting on runc's exec fifo. A precreated container is bound to its spec:
// the pool is keyed by a hash of everything config.json is made from, so a
// new revision with another command or limit gets its own pool and the old
// one empties once idle (PRECREATE_IDLE_MS).
//
// Names: every container, cgroup, namespace and chain carries a tag derived
// from the worker id (oci/names.ts), so start() can remove what an earlier
// run of the same worker left, and close() everything this run made,
// without touching another worker's. Worker ids are random by default, so a
// worker that died without close() (SIGKILL, a crash: its containers keep
// running) is found another way: each running worker keeps a record under
// /run/baton/workers/ with its pid, and start() sweeps the leftovers of every
// recorded worker whose process is gone.
import { accessSync, closeSync, constants as fsConstants, openSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { WorkerConfig } from '../../shared/config.js';
import { BatonError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { FunctionSpec } from '../../shared/spec.js';
import type { PortAllocator } from '../ports.js';
import { probeHost, waitUntilReady } from '../probe.js';
import type { RuntimeSandbox, SandboxRuntime, SandboxStartRequest } from '../runtime.js';
import { readHostLayout, sandboxEnv, writeBundle, type HostLayout } from './oci/bundle.js';
import { readCgroupMounts, readOomKills, removeCgroupTree, type CgroupMounts } from './oci/cgroups.js';
import { InitProcess, InitWatcher, readInitStat, readInitStatSync } from './oci/init-process.js';
import { ociNames, safeSegment, shortSeq, type OciNames } from './oci/names.js';
import { CONTAINER_PORT, cleanNetworkLeftovers, IsolatedNetwork, type NetworkSlot, type NetworkTools } from './oci/network.js';
import { readRuncLog, Runc, RuncError } from './oci/runc.js';
import { OciSandbox, type PreparedContainer, type SandboxHooks } from './oci/sandbox.js';
import { formatCommand, readLogTail } from './process.js';

export type OciConfig = WorkerConfig['oci'];

export interface OciRuntimeOptions {
  readonly workerId: string;
  /** The worker's bind host: `host` sandboxes bind it, `isolated` ones are DNAT'd from it. */
  readonly host: string;
  /** Absolute. */
  readonly dataDir: string;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly log: Logger;
  readonly ports: PortAllocator;
  readonly oci: OciConfig;
}

export type OciRuntimeState = 'INITIALIZED' | 'STARTING' | 'RUNNING' | 'CLOSING' | 'CLOSED' | 'FAILED';

/** A function whose sandboxes are all gone keeps its precreated containers this long, for its next cold start. */
const PRECREATE_IDLE_MS = 5 * 60_000;
/** At most this many functions keep precreated containers; the least recently used idle one gives way. */
const MAX_PRECREATE_POOLS = 32;
const SWEEP_INTERVAL_MS = 30_000;
/** One file per running worker (a tmpfs, like the namespaces and cgroups it helps to clean). */
const WORKER_RECORDS = '/run/baton/workers';
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** A program's absolute path: `name` itself when it has a slash, else the first executable on PATH or the system dirs. */
export function findExecutable(name: string): string | undefined {
  const candidates = name.includes('/')
    ? [resolve(name)]
    : [...new Set([...(process.env.PATH ?? '').split(delimiter).filter((d) => isAbsolute(d)), ...SYSTEM_PATH])].map((d) => join(d, name));
  for (const path of candidates) {
    try {
      accessSync(path, fsConstants.X_OK);
      if (statSync(path).isFile()) return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Why the oci runtime cannot work here, or undefined when it can. */
export function ociUnavailable(runc: string, uid: number | undefined = process.getuid?.()): string | undefined {
  if (process.platform !== 'linux' || uid === undefined) return `needs Linux (this is ${process.platform})`;
  if (uid !== 0) return `needs root (runc, cgroups and network namespaces), and this worker runs as uid ${uid}`;
  if (!findExecutable(runc)) {
    const where = runc.includes('/') ? '' : ` on PATH or in ${SYSTEM_PATH.join(':')}`;
    return `runc ("${runc}") was not found${where} or is not executable: install it (Debian: apt-get install runc) or set oci.runc`;
  }
  return undefined;
}

function findNetworkTools(): { tools: NetworkTools | undefined; missing: string | undefined } {
  const found = {
    ip: findExecutable('ip'),
    iptables: findExecutable('iptables'),
    iptablesSave: findExecutable('iptables-save'),
    iptablesRestore: findExecutable('iptables-restore'),
  };
  const missing = Object.entries(found)
    .filter(([, path]) => !path)
    .map(([name]) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
  if (missing.length > 0) {
    return { tools: undefined, missing: `${missing.join(', ')} not found (Debian: apt-get install iproute2 iptables)` };
  }
  return { tools: found as NetworkTools, missing: undefined };
}

/** What a running worker records, so that another can clean up after it if it dies. */
interface WorkerRecord {
  readonly workerId: string;
  readonly pid: number;
  /** The process's start time (/proc/<pid>/stat), so a reused pid does not pass for it. */
  readonly startTime: string;
  readonly dataDir: string;
  readonly runcRoot: string;
  readonly bridge: string;
}

/** Where one worker's things are: this one's, or a dead one's. */
interface LeftoverScope {
  readonly names: OciNames;
  readonly runcRoot: string;
  readonly bundleRoot: string;
  readonly logDir: string;
  readonly bridge: string;
}

/** The precreated containers of one function (one pool key). */
interface PrecreatePool {
  readonly key: string;
  readonly spec: FunctionSpec;
  readonly ready: PreparedContainer[];
  /** Its sandboxes alive now. */
  live: number;
  lastUsedMs: number;
}

export class OciRuntime implements SandboxRuntime {
  readonly name = 'oci';
  readonly names: OciNames;
  readonly runc: Runc;
  private currentState: OciRuntimeState = 'INITIALIZED';
  private readonly logDir: string;
  private readonly bundleRoot: string;
  private readonly probeHost: string;
  private readonly network: IsolatedNetwork;
  private readonly networkTools: NetworkTools | undefined;
  private readonly watcher = new InitWatcher();
  private layout: HostLayout = { symlinks: [], directories: [], extraBinds: [], nofile: 1024 };
  private cgroups: CgroupMounts = { hierarchies: [], memory: undefined, swapLimit: false };
  /** Every container that exists (prepared, pooled or started), for killAllNow() and close(). */
  private readonly containers = new Set<PreparedContainer>();
  private readonly sandboxes = new Set<OciSandbox>();
  private readonly pools = new Map<string, PrecreatePool>();
  /** Background work (precreating, teardowns of sandboxes that died) that close() waits for. */
  private readonly pending = new Set<Promise<unknown>>();
  /** Precreating runs one container at a time, behind the sandboxes being created. */
  private precreating: Promise<void> = Promise.resolve();
  private sweeper: NodeJS.Timeout | undefined;
  private seq = 0;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** What sandboxes need from the runtime. */
  private readonly hooks: SandboxHooks;

  constructor(private readonly options: OciRuntimeOptions) {
    const runcPath = findExecutable(options.oci.runc);
    if (!runcPath) throw new BatonError('CONFIG_INVALID', ociUnavailable(options.oci.runc, 0) ?? `oci.runc: ${options.oci.runc} not found`);
    this.names = ociNames(options.workerId);
    this.runc = new Runc(runcPath, resolve(options.dataDir, options.oci.stateDir ?? 'runc'));
    this.logDir = join(options.dataDir, 'sandboxes');
    this.bundleRoot = join(options.dataDir, 'oci', this.names.workerDir);
    this.probeHost = probeHost(options.host);
    const { tools, missing } = findNetworkTools();
    this.networkTools = tools;
    this.network = new IsolatedNetwork({
      bridge: options.oci.bridge,
      subnet: options.oci.subnet,
      poolSize: options.oci.networkPoolSize,
      names: this.names,
      host: options.host,
      tools,
      toolsMissing: missing,
      ports: options.ports,
      log: options.log,
    });
    this.hooks = {
      watcher: this.watcher,
      stopGraceMs: options.stopGraceMs,
      log: options.log,
      readOomKills: (c) => readOomKills(this.cgroups, c.cgroupsPath),
      destroy: (c) => this.track(this.destroy(c)),
      ended: (sandbox) => {
        this.sandboxes.delete(sandbox);
        const pool = this.pools.get(sandbox.container.poolKey);
        if (pool) {
          pool.live = Math.max(0, pool.live - 1);
          pool.lastUsedMs = Date.now();
        }
      },
    };
  }

  get state(): OciRuntimeState {
    return this.currentState;
  }

  /** The log file of a sandbox: its stdout and stderr. */
  logPath(sandboxId: string): string {
    return join(this.logDir, `${sandboxId}.log`);
  }

  /** Precreated containers waiting for a sandbox of this spec. */
  precreated(spec: FunctionSpec): number {
    return this.pools.get(poolKey(spec))?.ready.length ?? 0;
  }

  /** Network namespaces waiting in the pool. */
  get pooledNetworks(): number {
    return this.network.pooled;
  }

  /** Resolves once the background work queued so far (precreating, network pool refills) is done: for tests and benchmarks. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    await this.network.filled();
  }

  start(): Promise<void> {
    this.starting ??= this.runStart();
    return this.starting;
  }

  private async runStart(): Promise<void> {
    this.currentState = 'STARTING';
    try {
      await mkdir(this.logDir, { recursive: true });
      await mkdir(this.runc.root, { recursive: true });
      this.layout = readHostLayout();
      this.cgroups = readCgroupMounts();
      await this.removeLeftovers(this.scope);
      await this.sweepDeadWorkers();
      await this.writeRecord();
      await mkdir(this.bundleRoot, { recursive: true });
    } catch (err) {
      this.currentState = 'FAILED';
      throw err instanceof BatonError ? err : new BatonError('INTERNAL', `oci runtime: cannot start: ${(err as Error).message}`, { cause: err });
    }
    this.sweeper = setInterval(() => this.sweepPools(), SWEEP_INTERVAL_MS).unref();
    this.currentState = 'RUNNING';
  }

  private get scope(): LeftoverScope {
    return { names: this.names, runcRoot: this.runc.root, bundleRoot: this.bundleRoot, logDir: this.logDir, bridge: this.options.oci.bridge };
  }

  /**
   * Removes what a worker left (an earlier run of this one, or a dead one):
   * containers with its prefix in its runc root, its cgroups, bundles,
   * precreated logs, network namespaces and chains. Looks first, so with
   * nothing left it runs no runc or iptables at all.
   */
  private async removeLeftovers(scope: LeftoverScope): Promise<void> {
    const { log } = this.options;
    const prefix = scope.names.containerPrefix;
    const runc = scope.runcRoot === this.runc.root ? this.runc : new Runc(this.runc.binary, scope.runcRoot);
    const ids = (await readdir(scope.runcRoot).catch(() => [] as string[])).filter((id) => id.startsWith(prefix));
    for (const id of ids) {
      await runc.delete(id).catch(async (err: unknown) => {
        log.warn({ err, id }, 'oci: runc cannot delete a leftover container; removing its state directory');
        await rm(join(scope.runcRoot, id), { recursive: true, force: true });
      });
    }
    const cgroupsLeft = await removeCgroupTree(this.cgroups, scope.names.cgroupParent);
    if (cgroupsLeft.length > 0) log.warn({ cgroups: cgroupsLeft }, 'oci: cannot remove leftover cgroups');
    await rm(scope.bundleRoot, { recursive: true, force: true });
    for (const file of await readdir(scope.logDir).catch(() => [] as string[])) {
      if (file.startsWith(prefix)) await unlink(join(scope.logDir, file)).catch(() => undefined);
    }
    await cleanNetworkLeftovers(this.networkTools, scope.names, scope.bridge, log);
    if (ids.length > 0) log.info({ containers: ids.length, prefix }, 'oci: removed leftover containers');
  }

  /** Cleans up after every recorded worker whose process is gone; claims each record first, so two starting workers never both do. */
  private async sweepDeadWorkers(): Promise<void> {
    for (const file of await readdir(WORKER_RECORDS).catch(() => [] as string[])) {
      if (file === this.names.tag || file.includes('.')) continue;
      const path = join(WORKER_RECORDS, file);
      let record: WorkerRecord;
      try {
        record = JSON.parse(await readFile(path, 'utf8')) as WorkerRecord;
      } catch {
        continue;
      }
      const owner = readInitStatSync(record.pid);
      if (owner && owner.startTime === record.startTime && owner.state !== 'Z') continue;
      const claimed = `${path}.${this.names.tag}`;
      try {
        await rename(path, claimed);
      } catch {
        continue; // Another worker took it.
      }
      const names = ociNames(record.workerId);
      this.options.log.info({ workerId: record.workerId, pid: record.pid }, 'oci: removing what a dead worker left');
      await this.removeLeftovers({
        names,
        runcRoot: record.runcRoot,
        bundleRoot: join(record.dataDir, 'oci', names.workerDir),
        logDir: join(record.dataDir, 'sandboxes'),
        bridge: record.bridge,
      });
      await unlink(claimed).catch(() => undefined);
    }
  }

  private async writeRecord(): Promise<void> {
    const self = readInitStatSync(process.pid);
    const record: WorkerRecord = {
      workerId: this.options.workerId,
      pid: process.pid,
      startTime: self?.startTime ?? '',
      dataDir: this.options.dataDir,
      runcRoot: this.runc.root,
      bridge: this.options.oci.bridge,
    };
    await mkdir(WORKER_RECORDS, { recursive: true });
    await writeFile(join(WORKER_RECORDS, this.names.tag), JSON.stringify(record));
  }

  async create(request: SandboxStartRequest): Promise<RuntimeSandbox> {
    const { sandboxId, spec, signal } = request;
    if (signal.aborted) throw deletedWhileStarting(sandboxId);
    if (spec.command[0] === undefined) {
      throw new BatonError('INVALID_SPEC', `function "${spec.name}": command must name a program`, { details: { field: 'command' } });
    }
    if (this.currentState === 'INITIALIZED') await this.start();
    if (this.currentState !== 'RUNNING') throw new BatonError('UNAVAILABLE', `the oci runtime is ${this.currentState.toLowerCase()} and creates no sandboxes`);

    const t0 = process.hrtime.bigint();
    const key = poolKey(spec);
    let container = this.takePrecreated(key);
    const pooled = container !== undefined;
    if (container) {
      const logPath = this.logPath(sandboxId);
      try {
        await rename(container.logPath, logPath);
        container.logPath = logPath;
      } catch (err) {
        this.options.log.warn({ err, sandboxId }, 'oci: cannot rename the log of a precreated container');
      }
    } else {
      container = await this.prepare(spec, key, `s-${containerName(sandboxId)}`, this.logPath(sandboxId));
    }
    if (signal.aborted) {
      await this.destroy(container);
      await unlink(container.logPath).catch(() => undefined);
      throw deletedWhileStarting(sandboxId);
    }
    const t1 = process.hrtime.bigint();

    try {
      await this.runc.start(container.id);
    } catch (err) {
      await this.destroy(container);
      if (pooled) {
        // Its init died while it waited (killed from outside, say): make a fresh one.
        this.options.log.warn({ err, sandboxId, id: container.id }, 'oci: a precreated container failed to start; creating one');
        await unlink(container.logPath).catch(() => undefined);
        return this.create(request);
      }
      const tail = await readLogTail(container.logPath);
      const said = runcSaid(err);
      throw startFailed(spec, /^runc start failed/.test(said) ? said : `runc start failed: ${said}`, 'start_failed', err, tail);
    }
    const t2 = process.hrtime.bigint();

    const pool = this.poolFor(key, spec);
    pool.live++;
    pool.lastUsedMs = Date.now();
    const sandbox = new OciSandbox(sandboxId, container, this.hooks);
    this.sandboxes.add(sandbox);
    // DNAT is IPv4: an isolated sandbox of a worker bound on :: is probed on IPv4 loopback.
    const probeAt = spec.network === 'isolated' && this.probeHost.includes(':') ? '127.0.0.1' : this.probeHost;
    const outcome = await waitUntilReady({
      host: probeAt,
      port: container.port,
      timeoutMs: this.options.startTimeoutMs,
      signal,
      exited: sandbox.exited,
    });
    const t3 = process.hrtime.bigint();
    // Behind the start, not during it (network.ts).
    if (spec.network === 'isolated') this.network.refill();
    if (outcome === 'ready') {
      sandbox.latency = {
        portAllocationUs: pooled ? 0 : container.portAllocationUs,
        networkUs: pooled ? 0 : container.networkUs,
        runtimeCreateUs: pooled ? us(t1 - t0) : container.runtimeCreateUs,
        spawnUs: us(t2 - t1),
        readinessProbeUs: us(t3 - t2),
        totalUs: us(t3 - t0),
        pooled,
      };
      this.precreate(pool);
      return sandbox;
    }
    if (outcome === 'aborted') {
      await sandbox.stop();
      throw deletedWhileStarting(sandboxId);
    }
    if (outcome === 'timeout') {
      await sandbox.terminate(0, false);
      const tail = await readLogTail(container.logPath);
      throw startFailed(
        spec,
        `${formatCommand(spec.command)} did not answer GET /health on ${probeAt}:${container.port} within ` +
          `${this.options.startTimeoutMs} ms (sandboxStartTimeoutMs) and was killed`,
        'probe_timeout',
        undefined,
        tail,
      );
    }
    const exit = await sandbox.exited;
    await sandbox.terminate(0, false);
    const tail = await readLogTail(container.logPath);
    throw startFailed(
      spec,
      `${formatCommand(spec.command)} ${sandbox.exitSummary ?? 'exited'} before it was ready`,
      exit.reason === 'oom' ? 'oom' : 'start_failed',
      undefined,
      tail,
    );
  }

  /**
   * Makes a container up to `runc create`: host port, network, bundle. On
   * failure, removes what it made and rejects with SANDBOX_START_FAILED
   * quoting runc and the container's output.
   */
  private async prepare(spec: FunctionSpec, key: string, name: string, logPath: string): Promise<PreparedContainer> {
    const { ports, oci } = this.options;
    const isolated = spec.network === 'isolated';
    if (spec.workdir !== undefined) {
      const isDir = await stat(spec.workdir).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!isDir) throw startFailed(spec, `its workdir ${spec.workdir} does not exist or is not a directory`, 'start_failed');
    }
    // isolated: the slot (namespace, host port, DNAT) comes from the network pool; host: a port.
    const t0 = process.hrtime.bigint();
    let slot: NetworkSlot | undefined;
    let port: number;
    if (isolated) {
      try {
        slot = (await this.network.take()).slot;
      } catch (err) {
        throw err instanceof BatonError ? err : startFailed(spec, `cannot set up its network: ${(err as Error).message}`, 'network_failed', err);
      }
      port = slot.hostPort;
    } else {
      port = await ports.allocate();
    }
    const t1 = process.hrtime.bigint();
    const id = `${this.names.containerPrefix}${name}`;
    const bundleDir = join(this.bundleRoot, name);
    const cgroupsPath = `${this.names.cgroupParent}/${id}`;
    let created = false;
    const undo = async (): Promise<void> => {
      if (created) await this.runc.delete(id).catch(() => undefined);
      await removeCgroupTree(this.cgroups, cgroupsPath);
      await rm(bundleDir, { recursive: true, force: true });
      if (slot) await this.network.release(slot);
      else ports.release(port);
    };

    const runcLog = join(bundleDir, 'runc.log');
    const pidFile = join(bundleDir, 'init.pid');
    let fd: number | undefined;
    try {
      await writeBundle(bundleDir, {
        spec,
        env: isolated ? sandboxEnv(spec, '0.0.0.0', CONTAINER_PORT) : sandboxEnv(spec, this.options.host, port),
        uid: oci.uid,
        gid: oci.gid,
        pidsLimit: oci.pidsLimit,
        cgroupsPath,
        netnsPath: slot?.netnsPath,
        layout: this.layout,
        swapLimit: this.cgroups.swapLimit,
      });
      fd = openSync(logPath, 'a');
      await this.runc.create(id, bundleDir, pidFile, fd, runcLog);
      created = true;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      const said = err instanceof RuncError ? err.stderr || (await readRuncLog(runcLog)) : (err as Error).message;
      const tail = await readLogTail(logPath);
      await undo();
      await unlink(logPath).catch(() => undefined);
      const what = /^runc create failed/.test(said) ? said : `runc create failed: ${said || 'no message'}`;
      throw startFailed(spec, what, 'start_failed', err, tail.includes(said) ? '' : tail);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }

    let init: InitProcess | undefined;
    try {
      const pid = Number((await readFile(pidFile, 'utf8')).trim());
      const stat = await readInitStat(pid);
      if (stat) init = new InitProcess(pid, stat.startTime);
    } catch {
      // Reported below.
    }
    if (!init) {
      await undo();
      await unlink(logPath).catch(() => undefined);
      throw startFailed(spec, `runc create succeeded but the container's init (${pidFile}) is gone`, 'start_failed');
    }
    const t2 = process.hrtime.bigint();
    const container: PreparedContainer = {
      poolKey: key,
      spec,
      id,
      bundleDir,
      cgroupsPath,
      logPath,
      init,
      port,
      slot,
      portAllocationUs: isolated ? 0 : us(t1 - t0),
      networkUs: isolated ? us(t1 - t0) : 0,
      runtimeCreateUs: us(t2 - t1),
    };
    this.containers.add(container);
    return container;
  }

  /** Removes a container and all it holds; never rejects. The log stays (the caller decides). */
  private async destroy(c: PreparedContainer): Promise<void> {
    const { log } = this.options;
    c.init.signal('SIGKILL');
    await this.runc.delete(c.id).catch((err: unknown) => {
      if (!(err instanceof RuncError && /does not exist|not found/i.test(err.stderr))) log.warn({ err, id: c.id }, 'oci: runc delete failed');
    });
    const left = await removeCgroupTree(this.cgroups, c.cgroupsPath);
    if (left.length > 0) log.warn({ id: c.id, cgroups: left }, 'oci: cannot remove the cgroups of a container');
    await rm(c.bundleDir, { recursive: true, force: true }).catch((err: unknown) => log.warn({ err, id: c.id }, 'oci: cannot remove a bundle'));
    if (c.slot) await this.network.release(c.slot);
    else this.options.ports.release(c.port);
    this.containers.delete(c);
  }

  private poolFor(key: string, spec: FunctionSpec): PrecreatePool {
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { key, spec, ready: [], live: 0, lastUsedMs: Date.now() };
      this.pools.set(key, pool);
    }
    return pool;
  }

  private takePrecreated(key: string): PreparedContainer | undefined {
    const pool = this.pools.get(key);
    // Oldest first: the one that has waited longest.
    const container = pool?.ready.shift();
    if (container && !container.init.aliveSync()) {
      void this.track(this.destroy(container).then(() => unlink(container.logPath).catch(() => undefined)));
      return this.takePrecreated(key);
    }
    return container;
  }

  /** Tops the function's pool up to oci.precreate, one container at a time, after whatever is queued. */
  private precreate(pool: PrecreatePool): void {
    const want = this.options.oci.precreate;
    if (want === 0) return;
    this.precreating = this.precreating.then(async () => {
      while (this.currentState === 'RUNNING' && this.pools.get(pool.key) === pool && pool.ready.length < want) {
        const name = `p-${shortSeq(this.seq++)}`;
        const logPath = join(this.logDir, `${this.names.containerPrefix}${name}.log`);
        try {
          pool.ready.push(await this.prepare(pool.spec, pool.key, name, logPath));
          if (pool.spec.network === 'isolated') this.network.refill();
        } catch (err) {
          this.options.log.warn({ err, function: pool.spec.name }, 'oci: cannot precreate a container');
          return;
        }
      }
      // Closed or dropped meanwhile.
      if (this.currentState !== 'RUNNING' || this.pools.get(pool.key) !== pool) await this.dropPool(pool);
    });
    void this.track(this.precreating);
  }

  private async dropPool(pool: PrecreatePool): Promise<void> {
    if (this.pools.get(pool.key) === pool && pool.live === 0) this.pools.delete(pool.key);
    const ready = pool.ready.splice(0);
    await Promise.all(ready.map((c) => this.destroy(c).then(() => unlink(c.logPath).catch(() => undefined))));
  }

  /** Drops the precreated containers of functions idle for PRECREATE_IDLE_MS, and of the least recently used beyond MAX_PRECREATE_POOLS. */
  private sweepPools(): void {
    const now = Date.now();
    const idle = [...this.pools.values()].filter((p) => p.live === 0).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
    let excess = this.pools.size - MAX_PRECREATE_POOLS;
    for (const pool of idle) {
      if (now - pool.lastUsedMs >= PRECREATE_IDLE_MS || excess > 0) {
        excess--;
        this.pools.delete(pool.key);
        void this.track(this.dropPool(pool));
      }
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    const tracked = promise.catch((err: unknown) => {
      this.options.log.error({ err }, 'oci: background work failed');
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
    return promise;
  }

  killAllNow(): void {
    for (const c of this.containers) c.init.signal('SIGKILL');
  }

  close(): Promise<void> {
    this.closing ??= this.runClose();
    return this.closing;
  }

  private async runClose(): Promise<void> {
    if (this.currentState === 'INITIALIZED') {
      this.currentState = 'CLOSED';
      return;
    }
    await this.starting?.catch(() => undefined);
    this.currentState = 'CLOSING';
    if (this.sweeper) clearInterval(this.sweeper);
    await this.precreating;
    // The worker deletes every sandbox before close(); any left (an embedding that did not) goes now.
    await Promise.all([...this.sandboxes].map((s) => s.stop()));
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => this.dropPool(p)));
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    await Promise.all([...this.containers].map((c) => this.destroy(c)));
    await this.network.close();
    const left = await removeCgroupTree(this.cgroups, this.names.cgroupParent);
    if (left.length > 0) this.options.log.warn({ cgroups: left }, 'oci: cgroups left after close');
    await rm(this.bundleRoot, { recursive: true, force: true });
    await unlink(join(WORKER_RECORDS, this.names.tag)).catch(() => undefined);
    this.watcher.close();
    this.currentState = 'CLOSED';
  }
}

/** The pool key: a hash of everything a container's config.json is made from. */
export function poolKey(spec: FunctionSpec): string {
  const parts = {
    name: spec.name,
    command: spec.command,
    workdir: spec.workdir ?? null,
    env: Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    resources: [spec.resources.cpuMillis, spec.resources.memoryMb],
    network: spec.network ?? 'host',
  };
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** A sandbox id as part of a container id: safe characters, and short enough for cgroup and state paths. */
function containerName(sandboxId: string): string {
  const safe = safeSegment(sandboxId);
  if (safe.length <= 100) return safe;
  return `${safe.slice(0, 80)}-${createHash('sha256').update(sandboxId).digest('hex').slice(0, 12)}`;
}

function runcSaid(err: unknown): string {
  return err instanceof RuncError ? err.stderr || `exit ${err.exitCode ?? 'unknown'}` : (err as Error).message;
}

function startFailed(spec: FunctionSpec, message: string, reason: string, cause?: unknown, logTail = ''): BatonError {
  const output = logTail ? `; its output ends with:\n${logTail}` : '';
  return new BatonError('SANDBOX_START_FAILED', `function "${spec.name}": ${message}${output}`, {
    cause,
    details: { reason },
  });
}

function deletedWhileStarting(sandboxId: string): BatonError {
  return new BatonError('UNAVAILABLE', `sandbox ${sandboxId} was deleted while it was starting`, { details: { reason: 'deleted' } });
}

function us(ns: bigint): number {
  return Number(ns / 1000n);
}
