// What the benchmark scripts share: starting `baton up` as a child, talking to its
// admin API, starting other children (HAProxy, sandboxes) so that none of them
// outlives the script, free loopback ports, and the statistics the reports use.
//
// Every child is registered in `children`; `cleanup()` runs on normal exit, on an
// error and on SIGINT/SIGTERM, and sends SIGTERM then SIGKILL after a grace period.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURES = path.join(REPO_ROOT, 'bench', 'fixtures');
export const HELLO_SERVER = path.join(FIXTURES, 'hello-server.js');
const BATON_MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** The environment children get: ours without NODE_EXTRA_CA_CERTS (DESIGN.md, Traps: +35 ms per Node start). */
export function cleanChildEnv() {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

// ---- child processes that never outlive the script --------------------------------

const children = new Set();
const tempDirs = new Set();

/** Spawns a child that cleanup() will stop (SIGTERM, SIGKILL after stopGraceMs). stdio defaults to ignore/pipe/pipe. */
export function spawnChild(name, command, args, { stopGraceMs = 10_000, ...options } = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  child.benchName = name;
  child.stopGraceMs = stopGraceMs;
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.once('error', (err) => process.stderr.write(`${name}: ${err.message}\n`));
  child.exited.then(() => children.delete(child));
  children.add(child);
  return child;
}

/** SIGTERM, then SIGKILL after graceMs. Resolves once the child is gone. */
export async function stopChild(child, graceMs = child.stopGraceMs ?? 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const t0 = Date.now();
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    process.stderr.write(`${child.benchName} did not stop within ${graceMs} ms of SIGTERM; killing it\n`);
    child.kill('SIGKILL');
  }, graceMs);
  await child.exited;
  clearTimeout(timer);
  const tookMs = Date.now() - t0;
  if (tookMs > 2_000) process.stderr.write(`${child.benchName} took ${tookMs} ms to stop\n`);
}

let cleaning = null;
export function cleanup() {
  cleaning ??= (async () => {
    await Promise.all([...children].map((c) => stopChild(c)));
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

/** Runs main() and always cleans up: on success, on a thrown error, on SIGINT/SIGTERM. */
export function runMain(main) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping children…\n`);
      cleanup().finally(() => process.exit(130));
    });
  }
  main()
    .then(() => cleanup())
    .then(() => process.exit(0))
    .catch(async (err) => {
      process.stderr.write(`\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      await cleanup();
      process.exit(1);
    });
}

export function makeTempDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Fails with the install hint when a program is missing from PATH. */
export async function requirePrograms(names, hint) {
  const missing = [];
  for (const name of names) {
    const child = spawn('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    if (code !== 0) missing.push(name);
  }
  if (missing.length > 0) throw new Error(`${missing.join(' and ')} not found on PATH. Install: ${hint}`);
}

// ---- Baton --------------------------------------------------------------------------

/**
 * Starts `baton up` on free ports with a temporary data dir and resolves once it has
 * printed its addresses. stop() sends SIGTERM (a clean shutdown kills the sandboxes).
 */
export async function startBaton({ logLevel = 'warn', startTimeoutMs = 30_000, args = [] } = {}) {
  const dataDir = makeTempDir('baton-bench-');
  const child = spawnChild(
    'baton up',
    process.execPath,
    [BATON_MAIN, 'up', '--api-port', '0', '--dataplane-port', '0', '--data-dir', dataDir, '--log-level', logLevel, ...args],
    { cwd: REPO_ROOT, env: cleanChildEnv(), stopGraceMs: 15_000 },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    process.stderr.write(`[baton] ${chunk}`);
  });
  const addresses = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`baton up printed no addresses within ${startTimeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`)), startTimeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const api = /admin API:\s+(http:\/\/\S+)/.exec(stdout);
      const dataPlane = /data plane:\s+(http:\/\/\S+)/.exec(stdout);
      if (api && dataPlane && stdout.includes('Stop with Ctrl-C.')) {
        clearTimeout(timer);
        resolve({ apiUrl: api[1], dataPlaneUrl: dataPlane[1] });
      }
    });
    child.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`baton up exited (code ${code}, signal ${signal}) before it was ready\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    });
  });
  return { ...addresses, child, dataDir, stop: () => stopChild(child) };
}

/** One admin API call; throws with Baton's {code, message} on a non-2xx answer. */
export async function adminApi(apiUrl, method, urlPath, body) {
  const res = await fetch(`${apiUrl}${urlPath}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${urlPath} → HTTP ${res.status}: ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

/** The spec of a function that runs the hello fixture. */
export function helloSpec(name, scaling) {
  return { name, command: [process.execPath, HELLO_SERVER], workdir: FIXTURES, scaling };
}

/** Polls describe until the function has `count` ready sandboxes; returns them. */
export async function waitForReadySandboxes(apiUrl, name, { count = 1, timeoutMs = 30_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fn = await adminApi(apiUrl, 'GET', `/v1/functions/${name}`);
    const ready = (fn.sandboxes ?? []).filter((s) => s.state === 'ready');
    if (ready.length >= count) return ready;
    if (Date.now() > deadline) throw new Error(`function ${name}: ${ready.length}/${count} sandboxes ready after ${timeoutMs} ms: ${JSON.stringify(fn.sandboxes)}`);
    await sleep(50);
  }
}

// ---- small things -------------------------------------------------------------------

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A loopback port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(host, port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, host);
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

export function median(values) {
  return quantile(values, 0.5);
}

/** Linear-interpolated quantile of a sample (q in 0..1). */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export const round = (x, digits = 2) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);
