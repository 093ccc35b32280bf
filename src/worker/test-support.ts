// Helpers for the worker's tests, not used at run time: fixture paths, a
// /proc view that checks for leftover processes independently of the code
// under test, and a recording control plane served over real RPC.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import type { ServiceImpl } from '@connectrpc/connect';
import {
  ControlPlaneService,
  type RegisterWorkerRequest,
  type SandboxFailure,
  type WorkerHeartbeatRequest,
} from '../gen/baton/v1/controlplane_pb.js';
import { BatonError } from '../shared/errors.js';
import { silentLogger } from '../shared/logging.js';
import { startRpcServer } from '../shared/rpc.js';
import type { DualListener } from '../shared/listener.js';
import { DEFAULT_TIMEOUT_MS, RESOURCE_DEFAULTS, SCALING_DEFAULTS, type FunctionSpec } from '../shared/spec.js';

/** The repository root: the compiled tests run from dist/src/worker/, the sources from src/worker/. */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'test', 'fixtures', 'echo-server.js'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the repository root (test/fixtures) above the worker tests');
    dir = parent;
  }
  return dir;
})();

export function fixture(name: string): string {
  return join(repoRoot, 'test', 'fixtures', name);
}

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `baton-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function functionSpec(name: string, command: string[], env: Record<string, string> = {}): FunctionSpec {
  return {
    name,
    runtime: 'process',
    command,
    workdir: undefined,
    env,
    resources: { ...RESOURCE_DEFAULTS },
    scaling: { ...SCALING_DEFAULTS },
    timeoutMs: DEFAULT_TIMEOUT_MS,
  };
}

interface ProcStat {
  pid: number;
  state: string;
  pgid: number;
}

function readStat(pid: number | string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid: Number(pid), state: rest[0] ?? '', pgid: Number(rest[2]) };
}

/** True when the process exists and is not a zombie (this machine's init does not reap orphans). */
export function processAlive(pid: number): boolean {
  const s = readStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

/** Live members of a process group, read from /proc. */
export function liveGroupMembers(pgid: number): number[] {
  const live: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(name);
    if (s && s.pgid === pgid && s.state !== 'Z' && s.state !== 'X') live.push(s.pid);
  }
  return live;
}

/** Live processes whose environment names the sandbox: its leader and everything the leader started. */
export function sandboxProcesses(sandboxId: string): number[] {
  const needle = `\0BATON_SANDBOX_ID=${sandboxId}\0`;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1');
    } catch {
      continue;
    }
    if (`\0${environ}`.includes(needle) && processAlive(Number(name))) found.push(Number(name));
  }
  return found;
}

export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A control plane that records what workers send it, over real RPC on port 0. */
export class RecordingControlPlane {
  readonly registrations: RegisterWorkerRequest[] = [];
  readonly heartbeats: WorkerHeartbeatRequest[] = [];
  readonly failures: SandboxFailure[] = [];
  /** What heartbeats answer; set to false to make the worker register again. */
  known = true;
  heartbeatIntervalMs = 50;

  private server: DualListener | undefined;

  static async start(): Promise<RecordingControlPlane> {
    const cp = new RecordingControlPlane();
    const impl: ServiceImpl<typeof ControlPlaneService> = {
      registerWorker: (req) => {
        cp.registrations.push(req);
        return { heartbeatIntervalMs: cp.heartbeatIntervalMs };
      },
      workerHeartbeat: (req) => {
        cp.heartbeats.push(req);
        return { known: cp.known };
      },
      registerDataPlane: () => ({ metricsIntervalMs: 1000 }),
      reportInFlight: () => ({}),
      reportSandboxFailure: (req) => {
        cp.failures.push(req);
        return {};
      },
      reportGaps: () => ({}),
    };
    cp.server = await startRpcServer({
      host: '127.0.0.1',
      port: 0,
      log: silentLogger(),
      metrics: new Registry(),
      routes: (router) => router.service(ControlPlaneService, impl),
    });
    return cp;
  }

  get url(): string {
    return `http://127.0.0.1:${this.server?.port ?? 0}`;
  }

  async close(): Promise<void> {
    await this.server?.close(0);
  }
}

/** The BatonError a promise rejects with; fails the test when it resolves or rejects with anything else. */
export async function startFailure(promise: Promise<unknown>): Promise<BatonError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BatonError, `expected a BatonError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}
