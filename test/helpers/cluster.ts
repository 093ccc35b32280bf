// Helpers for end-to-end tests: a real cluster (control plane, data plane,
// worker with the process runtime) on port 0 in a temporary data directory,
// plus small HTTP and /proc helpers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startCluster, type RunningCluster } from '../../src/cli/up.js';
import { compileConfig, upSchema } from '../../src/shared/config.js';
export { freePort } from '../../src/shared/test-support.js';

/** The repository root, found from this file (compiled to dist/test/helpers/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

export function fixture(name: string): string {
  return join(FIXTURES, name);
}

export interface TestCluster extends RunningCluster {
  dataDir: string;
  /** Calls the admin API; returns status and parsed JSON. */
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  /** Sends a request through the data plane to /fn/{name}{path}. */
  invoke(
    name: string,
    path?: string,
    init?: { method?: string; body?: string | Buffer; headers?: Record<string, string> },
  ): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  close(): Promise<void>;
}

export async function startTestCluster(overrides: Record<string, unknown> = {}, dataDir?: string): Promise<TestCluster> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'baton-e2e-'));
  const cfg = compileConfig(upSchema, {
    apiPort: 0,
    dataplanePort: 0,
    dataDir: dir,
    logLevel: process.env.BATON_TEST_LOG ?? 'silent',
    ...overrides,
  });
  const cluster = await startCluster(cfg);
  const token = cfg.token;
  return {
    ...cluster,
    dataDir: dir,
    async admin(method, path, body, headers = {}) {
      const h: Record<string, string> = { ...headers };
      if (token && !('authorization' in h)) h.authorization = `Bearer ${token}`;
      if (body !== undefined) h['content-type'] = 'application/json';
      const res = await request(`${cluster.apiUrl}${path}`, {
        method: method as 'GET',
        headers: h,
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
    },
    async invoke(name, path = '/', init = {}) {
      const res = await request(`${cluster.dataPlaneUrl}/fn/${name}${path}`, {
        method: (init.method ?? 'GET') as 'GET',
        body: init.body,
        headers: init.headers,
      });
      return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
    },
    async close() {
      await cluster.stop();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A process spec for the echo-server fixture. */
export function echoSpec(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, command: [process.execPath, fixture('echo-server.js')], workdir: FIXTURES, ...extra };
}

export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // A zombie (state Z) has exited; only its exit status is left to reap.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}


/** One admin API call against any control plane (or a balancer in front of several). */
export async function adminCall(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** Warm load: one GET after another to `url` until stop(), counting what did not answer 200. */
export function warmLoad(url: string): { readonly sent: () => number; stop(): Promise<{ sent: number; failures: string[] }> } {
  let sent = 0;
  let loading = true;
  const failures: string[] = [];
  const loop = (async () => {
    while (loading) {
      sent += 1;
      try {
        const res = await request(url);
        await res.body.dump();
        if (res.statusCode !== 200) failures.push(`HTTP ${res.statusCode}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  })();
  return {
    sent: () => sent,
    async stop() {
      loading = false;
      await loop;
      return { sent, failures };
    },
  };
}
