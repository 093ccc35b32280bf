// The process runtime against real processes: the test functions in
// test/fixtures, real ports, and /proc to check that nothing is left behind.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../shared/logging.js';
import { PortAllocator } from './ports.js';
import { ProcessRuntime, type ProcessRuntimeOptions } from './runtimes/process.js';
import type { RuntimeSandbox } from './runtime.js';
import { fixture, functionSpec, liveGroupMembers, processAlive, sandboxProcesses, tempDir, waitFor, startFailure } from './test-support.js';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

const NODE = process.execPath;
let seq = 0;
const nextId = (): string => `sb-test-${process.pid}-${seq++}`;

describe('process runtime', () => {
  const dir = tempDir('process-runtime');
  const ports = new PortAllocator('127.0.0.1');
  const options = (over: Partial<ProcessRuntimeOptions> = {}): ProcessRuntimeOptions => ({
    host: '127.0.0.1',
    dataDir: dir.path,
    startTimeoutMs: 5000,
    stopGraceMs: 1000,
    log: silentLogger(),
    ports,
    ...over,
  });
  const runtime = new ProcessRuntime(options());
  const started: RuntimeSandbox[] = [];
  const never = new AbortController().signal;

  before(() => mkdirSync(join(dir.path, 'sandboxes'), { recursive: true }));

  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
    dir.remove();
  });

  it('starts the echo server with a clean environment and leaves nothing behind on stop', async () => {
    // Anything in the worker's environment must stay out of the sandbox's.
    process.env.NODE_EXTRA_CA_CERTS ??= '/nonexistent/extra-ca.pem';
    process.env.BATON_TEST_LEAK = 'leaked';
    const sandboxId = nextId();
    const spec = functionSpec('echo', [NODE, fixture('echo-server.js')], { GREETING: 'hi', PORT: '1', BATON_SANDBOX_ID: 'forged' });
    const sandbox = await runtime.create({ sandboxId, spec, signal: never });
    started.push(sandbox);

    assert.ok(sandbox.pid > 0 && processAlive(sandbox.pid));
    assert.ok(sandbox.port > 0);
    assert.ok(sandbox.latency.readinessProbeUs > 0 && sandbox.latency.spawnUs > 0);
    assert.ok(sandbox.latency.totalUs >= sandbox.latency.portAllocationUs + sandbox.latency.spawnUs + sandbox.latency.readinessProbeUs - 2);

    const hello = await get(sandbox.port, '/');
    assert.equal(hello.status, 200);
    assert.equal(hello.body, `hello from ${sandbox.pid}\n`);

    const env = JSON.parse((await get(sandbox.port, '/env')).body) as Record<string, string>;
    assert.equal(env.NODE_EXTRA_CA_CERTS, undefined);
    assert.equal(env.BATON_TEST_LEAK, undefined);
    assert.equal(env.PORT, String(sandbox.port));
    assert.equal(env.HOST, '127.0.0.1');
    assert.equal(env.BATON_SANDBOX_ID, sandboxId);
    assert.equal(env.BATON_FUNCTION, 'echo');
    assert.equal(env.GREETING, 'hi');
    assert.equal(env.HOME, dir.path);
    assert.equal(env.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    assert.equal(env.LANG, 'C.UTF-8');
    assert.deepEqual(
      Object.keys(env).filter((k) => !['PATH', 'HOME', 'LANG', 'PORT', 'HOST', 'BATON_FUNCTION', 'BATON_SANDBOX_ID', 'GREETING'].includes(k)),
      [],
      'no other variable reaches the sandbox',
    );
    delete process.env.BATON_TEST_LEAK;

    const logPath = join(dir.path, 'sandboxes', `${sandboxId}.log`);
    assert.ok(existsSync(logPath));
    await sandbox.stop();
    assert.equal(existsSync(`/proc/${sandbox.pid}`), false, 'the leader is reaped');
    assert.deepEqual(liveGroupMembers(sandbox.pid), []);
    assert.deepEqual(sandboxProcesses(sandboxId), []);
    assert.equal(ports.size, 0, 'the port is released');
    assert.equal(existsSync(logPath), false, 'a deleted sandbox leaves no log');
    await sandbox.stop(); // idempotent
  });

  it('escalates to SIGKILL and kills the grandchild of a function that ignores SIGTERM', async () => {
    const stubborn = new ProcessRuntime(options({ stopGraceMs: 200 }));
    const sandboxId = nextId();
    const sandbox = await stubborn.create({ sandboxId, spec: functionSpec('stubborn', [NODE, fixture('ignores-sigterm.js')]), signal: never });
    started.push(sandbox);
    const members = await waitFor('the grandchild to start', () => {
      const live = liveGroupMembers(sandbox.pid);
      return live.length >= 2 ? live : undefined;
    });
    const t0 = performance.now();
    await sandbox.stop();
    const took = performance.now() - t0;
    assert.ok(took >= 190, `SIGKILL came only after the grace period (took ${took.toFixed(0)} ms)`);
    assert.ok(took < 3000, `but not much later (took ${took.toFixed(0)} ms)`);
    for (const pid of members) assert.equal(processAlive(pid), false, `pid ${pid} of the group is dead`);
    assert.deepEqual(liveGroupMembers(sandbox.pid), []);
    assert.deepEqual(sandboxProcesses(sandboxId), []);
  });

  it('fails fast with SANDBOX_START_FAILED, the exit code and the output when the function exits at once', async () => {
    const sandboxId = nextId();
    const t0 = performance.now();
    const err = await startFailure(
      runtime.create({ sandboxId, spec: functionSpec('quitter', [NODE, fixture('exits-at-once.js')]), signal: never }),
    );
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(err.code, 'SANDBOX_START_FAILED');
    assert.match(err.message, /exited with code 7 before it was ready/);
    assert.match(err.message, /exits-at-once: failing on purpose/);
    assert.match(err.message, /exits-at-once\.js/);
    assert.equal(err.details?.reason, 'start_failed');
    assert.deepEqual(sandboxProcesses(sandboxId), []);
    assert.equal(ports.size, 0);
    const log = readFileSync(join(dir.path, 'sandboxes', `${sandboxId}.log`), 'utf8');
    assert.match(log, /failing on purpose/, 'a failed sandbox keeps its log');
  });

  it('fails fast naming the cause when the command does not exist', async () => {
    const fdsBefore = readdirSync('/proc/self/fd').length;
    const t0 = performance.now();
    const missing = await startFailure(
      runtime.create({ sandboxId: nextId(), spec: functionSpec('ghost', ['/nonexistent/baton-no-such-command', '--flag']), signal: never }),
    );
    assert.ok(performance.now() - t0 < 500);
    assert.equal(missing.code, 'SANDBOX_START_FAILED');
    assert.match(missing.message, /\/nonexistent\/baton-no-such-command/);
    assert.match(missing.message, /ENOENT/);

    const notOnPath = await startFailure(
      runtime.create({ sandboxId: nextId(), spec: functionSpec('ghost', ['baton-no-such-command']), signal: never }),
    );
    assert.match(notOnPath.message, /baton-no-such-command was not found on PATH/);

    const spec = { ...functionSpec('ghost', [NODE, fixture('echo-server.js')]), workdir: '/nonexistent/baton-workdir' };
    const noWorkdir = await startFailure(runtime.create({ sandboxId: nextId(), spec, signal: never }));
    assert.match(noWorkdir.message, /workdir \/nonexistent\/baton-workdir does not exist/);
    assert.equal(ports.size, 0);
    // At most as many: an fd of an earlier test may finish closing meanwhile.
    const fdsAfter = readdirSync('/proc/self/fd').length;
    assert.ok(fdsAfter <= fdsBefore, `no file descriptor leaks from failed spawns (${fdsBefore} before, ${fdsAfter} after)`);
  });

  it('kills a function that never answers its probe once sandboxStartTimeoutMs has passed', async () => {
    const impatient = new ProcessRuntime(options({ startTimeoutMs: 300 }));
    const sandboxId = nextId();
    const t0 = performance.now();
    const err = await startFailure(
      impatient.create({
        sandboxId,
        spec: functionSpec('mute', [NODE, '-e', 'console.log("never listening"); setInterval(() => {}, 1000)']),
        signal: never,
      }),
    );
    const took = performance.now() - t0;
    assert.ok(took >= 290 && took < 2000, `gave up after the timeout (took ${took.toFixed(0)} ms)`);
    assert.equal(err.code, 'SANDBOX_START_FAILED');
    assert.equal(err.details?.reason, 'probe_timeout');
    assert.match(err.message, /did not answer GET \/health .* within 300 ms/);
    assert.match(err.message, /never listening/);
    assert.deepEqual(sandboxProcesses(sandboxId), []);
  });

  it('stops a sandbox that is deleted while it starts, and rejects the create', async () => {
    const sandboxId = nextId();
    const abort = new AbortController();
    const creating = runtime.create({ sandboxId, spec: functionSpec('slow', [NODE, '-e', 'setInterval(() => {}, 1000)']), signal: abort.signal });
    await waitFor('the process to start', () => sandboxProcesses(sandboxId).length > 0);
    abort.abort();
    const err = await startFailure(creating);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.deepEqual(sandboxProcesses(sandboxId), []);
    assert.equal(ports.size, 0);
  });

  it('reports how a ready sandbox died and frees its port', async () => {
    const sandbox = await runtime.create({ sandboxId: nextId(), spec: functionSpec('echo', [NODE, fixture('echo-server.js')]), signal: never });
    started.push(sandbox);
    await get(sandbox.port, '/crash').catch(() => undefined);
    const exit = await sandbox.exited;
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, null);
    assert.match(exit.message, /exited with code 3/);
    assert.equal(ports.size, 0);
    assert.equal(processAlive(sandbox.pid), false);
  });

  it('kills the children of a sandbox whose leader dies unasked', async () => {
    const sandboxId = nextId();
    const sandbox = await runtime.create({ sandboxId, spec: functionSpec('stubborn', [NODE, fixture('ignores-sigterm.js')]), signal: never });
    started.push(sandbox);
    const members = await waitFor('the grandchild to start', () => {
      const live = liveGroupMembers(sandbox.pid);
      return live.length >= 2 ? live : undefined;
    });
    process.kill(sandbox.pid, 'SIGKILL');
    const exit = await sandbox.exited;
    assert.equal(exit.signal, 'SIGKILL');
    await waitFor('the orphaned grandchild to die', () => members.every((pid) => !processAlive(pid)), 1000);
    assert.deepEqual(sandboxProcesses(sandboxId), []);
  });
});
