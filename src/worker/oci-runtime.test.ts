// The oci runtime against real runc containers, real cgroups, real network
// namespaces and iptables: everything is checked from outside (/proc, the
// cgroup files, `runc list`, `ip netns`, `iptables-save`), never through the
// code under test. Needs root and runc, as CI has; elsewhere the suite is
// skipped with the reason.
//
// Every worker id, bridge and subnet is unique to the run, and after() removes
// whatever a failed test left (a fresh runtime with the same worker id cleans
// an earlier run's leftovers on start).
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as http from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { workerSchema } from '../shared/config.js';
import { silentLogger } from '../shared/logging.js';
import type { FunctionSpec } from '../shared/spec.js';
import { PortAllocator } from './ports.js';
import type { RuntimeSandbox } from './runtime.js';
import { OciRuntime, ociUnavailable, type OciConfig } from './runtimes/oci.js';
import { fixture, functionSpec, processAlive, tempDir, waitFor, startFailure } from './test-support.js';

const MIB = 1024 * 1024;
const FUNCTION_DIR = dirname(fixture('oci-function.js'));

function get(port: number, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

async function getJson(port: number, path: string): Promise<any> {
  const res = await get(port, path);
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

function run(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Container ids runc knows in a state root. */
function runcIds(root: string): string[] {
  if (!existsSync(root)) return [];
  const out = run('runc', ['--root', root, 'list', '--format', 'json']).trim();
  return ((JSON.parse(out || 'null') as Array<{ id: string; status: string }> | null) ?? []).map((c) => `${c.id}:${c.status}`);
}

/** The cgroup directories of a worker (tag) in every hierarchy. */
function cgroupDirs(tag: string): string[] {
  const found: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup')) {
    if (existsSync(`/sys/fs/cgroup/${h}/baton-${tag}`)) found.push(`/sys/fs/cgroup/${h}/baton-${tag}`);
  }
  if (existsSync(`/sys/fs/cgroup/baton-${tag}`)) found.push(`/sys/fs/cgroup/baton-${tag}`);
  return found;
}

function netnsWith(prefix: string): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(prefix)) : [];
}

function iptablesMentions(text: string): string[] {
  return run('iptables-save', []).split('\n').filter((l) => l.includes(text));
}

/** A file of a process's cgroup for a controller: v1 (<controller>:<path>) or v2 (0::<path>). */
function cgroupFile(pid: number, controller: string, v1File: string, v2File: string): string {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes(controller));
  if (v1) return readFileSync(join('/sys/fs/cgroup', controller, v1.split(':')[2] ?? '', v1File), 'utf8').trim();
  const v2 = lines.find((l) => l.startsWith('0::'));
  return readFileSync(join('/sys/fs/cgroup', v2?.slice(3) ?? '', v2File), 'utf8').trim();
}

function statusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return (line ?? '').slice(field.length + 1).trim();
}

function ociSpec(name: string, over: Partial<FunctionSpec> = {}): FunctionSpec {
  return {
    ...functionSpec(name, [process.execPath, 'oci-function.js'], { GREETING: 'hi' }),
    runtime: 'oci',
    workdir: FUNCTION_DIR,
    // A whole core: Node boots in ~40 ms of CPU, which a 0.1-core quota would stretch to half a second.
    resources: { cpuMillis: 1000, memoryMb: 128 },
    ...over,
  };
}

interface TestWorker {
  readonly id: string;
  readonly runtime: OciRuntime;
  readonly ports: PortAllocator;
  readonly oci: OciConfig;
}

const unavailable = ociUnavailable('runc');

describe('oci runtime', { skip: unavailable ? `needs root and runc: ${unavailable}` : false }, () => {
  const dir = tempDir('oci-runtime');
  const suffix = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const never = new AbortController().signal;
  const workers: TestWorker[] = [];
  const started: RuntimeSandbox[] = [];
  const children: ChildProcess[] = [];
  let seq = 0;
  const nextId = (): string => `sb-oci-${suffix}-${seq++}`;

  function makeWorker(name: string, over: Partial<OciConfig> = {}, stopGraceMs = 1000, startTimeoutMs = 15_000): TestWorker {
    const id = `test-${name}-${suffix}`;
    const oci = workerSchema.parse({
      oci: {
        bridge: `bt${randomBytes(4).toString('hex')}`,
        subnet: `10.${randomInt(200, 250)}.${randomInt(0, 256)}.0/24`,
        networkPoolSize: 2,
        precreate: 1,
        ...over,
      },
    }).oci;
    const ports = new PortAllocator('127.0.0.1');
    const runtime = new OciRuntime({
      workerId: id,
      host: '127.0.0.1',
      dataDir: dir.path,
      startTimeoutMs,
      stopGraceMs,
      log: silentLogger(),
      ports,
      oci,
    });
    const worker = { id, runtime, ports, oci };
    workers.push(worker);
    return worker;
  }

  const main = makeWorker('main');
  const { runtime } = main;
  const runcRoot = join(dir.path, 'runc');

  before(async () => {
    await runtime.start();
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(started.map((s) => s.stop()));
    for (const w of workers) {
      await w.runtime.close().catch(() => undefined);
      // Whatever a failed test left: a new runtime of the same worker removes it on start.
      const sweeper = new OciRuntime({ workerId: w.id, host: '127.0.0.1', dataDir: dir.path, startTimeoutMs: 1000, stopGraceMs: 0, log: silentLogger(), ports: w.ports, oci: w.oci });
      await sweeper.start().catch(() => undefined);
      await sweeper.close().catch(() => undefined);
    }
    dir.remove();
  });

  it('confines a function: own namespaces, non-root, no capabilities, cgroup limits, read-only root and function dir, clean environment', async () => {
    process.env.NODE_EXTRA_CA_CERTS ??= '/nonexistent/extra-ca.pem';
    const sandboxId = nextId();
    const spec = ociSpec('confined', { resources: { cpuMillis: 500, memoryMb: 160 } });
    const sandbox = await runtime.create({ sandboxId, spec, signal: never });
    started.push(sandbox);
    const { pid, port } = sandbox;
    assert.ok(pid > 0 && processAlive(pid));
    assert.equal(sandbox.latency.pooled, false);
    assert.ok(sandbox.latency.runtimeCreateUs > 0 && sandbox.latency.spawnUs > 0 && sandbox.latency.readinessProbeUs > 0);

    // Namespaces: its own pid, mount, ipc and uts; the host's network (network "host").
    for (const ns of ['pid', 'mnt', 'ipc', 'uts']) {
      assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `${ns} namespace`);
    }
    assert.equal(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync('/proc/self/ns/net'));
    // The user, capabilities and no_new_privs, from the kernel's view.
    assert.equal(statusField(pid, 'Uid').split(/\s+/).join(' '), '65534 65534 65534 65534');
    assert.equal(statusField(pid, 'Gid').split(/\s+/)[0], '65534');
    assert.equal(statusField(pid, 'CapEff'), '0000000000000000');
    assert.equal(statusField(pid, 'CapBnd'), '0000000000000000');
    assert.equal(statusField(pid, 'NoNewPrivs'), '1');
    // The limits, from its cgroups.
    assert.equal(Number(cgroupFile(pid, 'memory', 'memory.limit_in_bytes', 'memory.max')), 160 * MIB);
    if (existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')) {
      assert.equal(Number(cgroupFile(pid, 'memory', 'memory.memsw.limit_in_bytes', 'memory.swap.max')), 160 * MIB);
    }
    const quota = cgroupFile(pid, 'cpu', 'cpu.cfs_quota_us', 'cpu.max').split(' ')[0];
    assert.equal(Number(quota), 50_000);
    assert.equal(cgroupFile(pid, 'pids', 'pids.max', 'pids.max'), String(main.oci.pidsLimit));

    const who = await getJson(port, '/whoami');
    assert.equal(who.pid, 1, 'pid 1 of its own namespace');
    assert.equal(who.uid, 65534);
    assert.equal(who.cwd, '/function');
    assert.equal(who.hostname, 'confined');

    const env = await getJson(port, '/env');
    assert.deepEqual(Object.keys(env).sort(), ['BATON_FUNCTION', 'GREETING', 'HOME', 'HOST', 'LANG', 'PATH', 'PORT']);
    assert.equal(env.PORT, String(port));
    assert.equal(env.HOST, '127.0.0.1');
    assert.equal(env.HOME, '/tmp');

    // Read-only root and function directory; /tmp is its own.
    assert.deepEqual(await getJson(port, '/write?path=/x'), { ok: false, code: 'EROFS' });
    assert.deepEqual(await getJson(port, '/write?path=/function/x'), { ok: false, code: 'EROFS' });
    assert.deepEqual(await getJson(port, '/write?path=/usr/x'), { ok: false, code: 'EROFS' });
    assert.deepEqual(await getJson(port, '/write?path=/tmp/x'), { ok: true });
    assert.equal(existsSync(join(FUNCTION_DIR, 'x')), false);

    const memoryCgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    const containerId = runcIds(runcRoot).find((c) => c.includes(sandboxId));
    assert.ok(containerId?.endsWith(':running'), `runc lists it as running: ${runcIds(runcRoot).join(', ')}`);
    const logPath = runtime.logPath(sandboxId);
    assert.ok(existsSync(logPath));

    await sandbox.stop();
    assert.equal(processAlive(pid), false);
    assert.equal(runcIds(runcRoot).filter((c) => c.includes(sandboxId)).length, 0, 'runc forgot it');
    const path = /memory:(\S+)/.exec(memoryCgroup)?.[1];
    if (path) assert.equal(existsSync(join('/sys/fs/cgroup/memory', path)), false, 'its cgroup is gone');
    assert.equal(existsSync(logPath), false, 'a deleted sandbox leaves no log');
    assert.equal(existsSync(join(dir.path, 'oci', main.id, `s-${sandboxId}`)), false, 'its bundle is gone');
    await sandbox.stop(); // idempotent
  });

  it('reports a function that outgrows its memory limit as an OOM kill', async () => {
    const sandboxId = nextId();
    const sandbox = await runtime.create({ sandboxId, spec: ociSpec('hungry', { resources: { cpuMillis: 1000, memoryMb: 96 } }), signal: never });
    started.push(sandbox);
    await assert.rejects(get(sandbox.port, '/alloc?mb=400', 10_000), (err: Error) => {
      console.log('alloc rejected', err.message);
      return true;
    });
    const exit = await sandbox.exited;
    assert.equal(exit.reason, 'oom');
    assert.equal(exit.signal, 'SIGKILL');
    assert.match(exit.message, /memory limit of 96 MB/);
    // Nobody deletes a sandbox that died: it removes itself (its log stays for the report).
    await waitFor('the dead container to be removed', () => runcIds(runcRoot).every((c) => !c.includes(sandboxId)), 5000);
    await sandbox.stop();
  });

  it('starts the next sandbox of a function from a precreated container', async () => {
    const spec = ociSpec('pooled');
    const waiting = (): number => runcIds(runcRoot).filter((c) => c.endsWith(':created')).length;
    const waitingBefore = waiting();
    const first = await runtime.create({ sandboxId: nextId(), spec, signal: never });
    started.push(first);
    assert.equal(first.latency.pooled, false);
    await runtime.settled();
    assert.equal(runtime.precreated(spec), 1);
    assert.equal(waiting(), waitingBefore + 1, 'one more container waits for runc start');

    const second = await runtime.create({ sandboxId: nextId(), spec, signal: never });
    started.push(second);
    assert.equal(second.latency.pooled, true);
    assert.equal(second.latency.networkUs, 0);
    assert.ok(second.latency.runtimeCreateUs < 20_000, `taking a precreated container is quick (${second.latency.runtimeCreateUs} µs)`);
    assert.notEqual(second.pid, first.pid);
    assert.equal((await get(second.port, '/')).status, 200);
    await runtime.settled();
    assert.equal(runtime.precreated(spec), 1, 'the pool is refilled');
    // Another spec of the same function (a new revision) does not take it.
    assert.equal(runtime.precreated({ ...spec, env: { GREETING: 'hello' } }), 0);
    await Promise.all([first.stop(), second.stop()]);
  });

  it('isolates sandboxes of network "isolated" from each other while the host reaches both through DNAT', async () => {
    const spec = ociSpec('isolated', { network: 'isolated' });
    const a = await runtime.create({ sandboxId: nextId(), spec, signal: never });
    started.push(a);
    await runtime.settled(); // the pool holds a precreated container of it, in a namespace of its own
    const b = await runtime.create({ sandboxId: nextId(), spec, signal: never });
    started.push(b);
    assert.equal(b.latency.pooled, true);

    const hostNet = readlinkSync('/proc/self/ns/net');
    assert.notEqual(readlinkSync(`/proc/${a.pid}/ns/net`), hostNet);
    assert.notEqual(readlinkSync(`/proc/${b.pid}/ns/net`), readlinkSync(`/proc/${a.pid}/ns/net`));
    const whoA = await getJson(a.port, '/whoami');
    const whoB = await getJson(b.port, '/whoami');
    const ipA: string = whoA.addresses[0];
    const ipB: string = whoB.addresses[0];
    const subnetPrefix = main.oci.subnet.split('.').slice(0, 3).join('.');
    assert.ok(ipA.startsWith(`${subnetPrefix}.`) && ipB.startsWith(`${subnetPrefix}.`) && ipA !== ipB, `${ipA} ${ipB}`);
    const env = await getJson(a.port, '/env');
    assert.equal(env.PORT, '8080');
    assert.equal(env.HOST, '0.0.0.0');

    // A reaches itself, but neither B's address nor B's host port through the bridge.
    assert.equal((await getJson(a.port, `/connect?host=${ipA}&port=8080`)).connected, true);
    assert.equal((await getJson(a.port, `/connect?host=${ipB}&port=8080`)).connected, false, 'A must not reach B');
    assert.equal((await getJson(b.port, `/connect?host=${ipA}&port=8080`)).connected, false, 'B must not reach A');
    const bridgeIp = `${subnetPrefix}.1`;
    assert.equal((await getJson(a.port, `/connect?host=${bridgeIp}&port=${b.port}`)).connected, false, 'nor through the host');

    const dnat = (port: number): string[] => iptablesMentions(runtime.names.chain).filter((l) => l.includes(`--dport ${port} `) && l.includes('DNAT'));
    assert.equal(dnat(a.port).length, 1);
    assert.match(dnat(b.port)[0] ?? '', new RegExp(`--to-destination ${ipB.replace(/\./g, '\\.')}:8080`));
    const used = [a.pid, b.pid].map((pid) => run('ip', ['netns', 'identify', String(pid)]).trim());
    assert.ok(used.every((n) => n.startsWith(runtime.names.netnsPrefix)), used.join(' '));
    await Promise.all([a.stop(), b.stop()]);
    assert.deepEqual([...dnat(a.port), ...dnat(b.port)], [], 'DNAT rules removed');
    await runtime.settled();
    assert.equal(runtime.pooledNetworks, main.oci.networkPoolSize);
    const left = netnsWith(runtime.names.netnsPrefix);
    assert.ok(used.every((n) => !left.includes(n)), 'used namespaces are destroyed, not reused');
  });

  it('fails with runc\'s own words when the container cannot start, and with the output when it exits', async () => {
    const missing = await startFailure(runtime.create({ sandboxId: nextId(), spec: ociSpec('missing', { command: ['/nonexistent/program'] }), signal: never }));
    assert.equal(missing.code, 'SANDBOX_START_FAILED');
    assert.equal(missing.details?.reason, 'start_failed');
    assert.match(missing.message, /runc create failed/);
    assert.match(missing.message, /\/nonexistent\/program.*no such file or directory/);

    const noDir = await startFailure(runtime.create({ sandboxId: nextId(), spec: ociSpec('nodir', { workdir: '/nonexistent/dir' }), signal: never }));
    assert.match(noDir.message, /workdir \/nonexistent\/dir does not exist/);

    const spec = ociSpec('crashes', { command: ['/bin/sh', '-c', 'echo "boom: bad config" >&2; exit 3'] });
    const crashed = await startFailure(runtime.create({ sandboxId: nextId(), spec, signal: never }));
    assert.equal(crashed.details?.reason, 'start_failed');
    assert.match(crashed.message, /exited with code 3 before it was ready/);
    assert.match(crashed.message, /boom: bad config/);

    await runtime.settled();
    assert.deepEqual(
      runcIds(runcRoot).filter((c) => !c.endsWith(':created')),
      [],
      'no container is left of the failed starts',
    );
  });

  it('stops a starting sandbox when its start is aborted', async () => {
    const quick = makeWorker('abort', { precreate: 0 }, 300);
    await quick.runtime.start();
    const abort = new AbortController();
    const sandboxId = nextId();
    const creating = quick.runtime.create({ sandboxId, spec: ociSpec('never-ready', { command: ['/bin/sleep', '30'] }), signal: abort.signal });
    await waitFor('the container to run', () => runcIds(runcRoot).some((c) => c.includes(sandboxId) && c.endsWith(':running')), 10_000);
    abort.abort();
    const err = await startFailure(creating);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.details?.reason, 'deleted');
    assert.equal(runcIds(runcRoot).filter((c) => c.includes(sandboxId)).length, 0);
    assert.equal(quick.ports.size, 0);
    await quick.runtime.close();
  });

  it('kills a sandbox that does not answer its probe in time, saying so', async () => {
    const slow = makeWorker('timeout', { precreate: 0 }, 200, 600);
    await slow.runtime.start();
    const sandboxId = nextId();
    const err = await startFailure(
      slow.runtime.create({ sandboxId, spec: ociSpec('mute', { command: ['/bin/sh', '-c', 'echo "listening soon"; exec sleep 30'], network: 'isolated' }), signal: never }),
    );
    assert.equal(err.code, 'SANDBOX_START_FAILED');
    assert.equal(err.details?.reason, 'probe_timeout');
    assert.match(err.message, /did not answer GET \/health on 127\.0\.0\.1:\d+ within 600 ms/);
    assert.match(err.message, /listening soon/);
    assert.equal(runcIds(runcRoot).filter((c) => c.includes(sandboxId)).length, 0);
    await slow.runtime.close();
    assert.equal(slow.ports.size, 0);
  });

  it('removes on start what a crashed run of the same worker left, and leaves nothing after close', async () => {
    const crashed = makeWorker('crash');
    await crashed.runtime.start();
    const host = await crashed.runtime.create({ sandboxId: nextId(), spec: ociSpec('left-host'), signal: never });
    const isolated = await crashed.runtime.create({ sandboxId: nextId(), spec: ociSpec('left-isolated', { network: 'isolated' }), signal: never });
    await crashed.runtime.settled();
    const tag = crashed.runtime.names.tag;
    const prefix = crashed.runtime.names.containerPrefix;
    // The worker process dies: its exit hook kills every init, nothing is cleaned.
    crashed.runtime.killAllNow();
    await waitFor('the inits to die', () => !processAlive(host.pid) && !processAlive(isolated.pid), 5000);
    assert.ok(runcIds(runcRoot).some((c) => c.startsWith(prefix)));
    assert.ok(cgroupDirs(tag).length > 0);
    assert.ok(netnsWith(crashed.runtime.names.netnsPrefix).length > 0);

    const restarted = new OciRuntime({
      workerId: crashed.id,
      host: '127.0.0.1',
      dataDir: dir.path,
      startTimeoutMs: 15_000,
      stopGraceMs: 1000,
      log: silentLogger(),
      ports: new PortAllocator('127.0.0.1'),
      oci: crashed.oci,
    });
    await restarted.start();
    assert.deepEqual(runcIds(runcRoot).filter((c) => c.startsWith(prefix)), []);
    assert.deepEqual(cgroupDirs(tag), []);
    assert.deepEqual(netnsWith(crashed.runtime.names.netnsPrefix), []);
    assert.deepEqual(iptablesMentions(crashed.runtime.names.chain), []);

    // A run that closes leaves nothing either: no container, cgroup, namespace, chain, bridge or bundle.
    const sandbox = await restarted.create({ sandboxId: nextId(), spec: ociSpec('left-isolated', { network: 'isolated' }), signal: never });
    await sandbox.stop();
    await restarted.settled();
    await restarted.close();
    assert.deepEqual(runcIds(runcRoot).filter((c) => c.startsWith(prefix)), []);
    assert.deepEqual(cgroupDirs(tag), []);
    assert.deepEqual(netnsWith(crashed.runtime.names.netnsPrefix), []);
    assert.deepEqual(iptablesMentions(crashed.runtime.names.chain), []);
    assert.equal(existsSync(`/sys/class/net/${crashed.oci.bridge}`), false, 'the bridge it made is gone');
    assert.equal(existsSync(join(dir.path, 'oci', crashed.id)), false);
  });

  it('removes what a worker that was SIGKILLed left, when any other worker starts', async () => {
    // A worker in its own process, with a random id as by default: SIGKILL gives it no chance to clean up.
    const dead = { id: `test-dead-${suffix}`, oci: workerSchema.parse({ oci: { bridge: `bt${randomBytes(4).toString('hex')}`, subnet: `10.${randomInt(200, 250)}.${randomInt(0, 256)}.0/24`, precreate: 1 } }).oci };
    const sandboxId = nextId();
    const code = `
      const { OciRuntime } = await import(${JSON.stringify(new URL('./runtimes/oci.js', import.meta.url).href)});
      const { PortAllocator } = await import(${JSON.stringify(new URL('./ports.js', import.meta.url).href)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../shared/logging.js', import.meta.url).href)});
      const rt = new OciRuntime({ workerId: ${JSON.stringify(dead.id)}, host: '127.0.0.1', dataDir: ${JSON.stringify(dir.path)},
        startTimeoutMs: 15000, stopGraceMs: 1000, log: silentLogger(), ports: new PortAllocator('127.0.0.1'), oci: ${JSON.stringify(dead.oci)} });
      await rt.start();
      const sb = await rt.create({ sandboxId: ${JSON.stringify(sandboxId)}, spec: ${JSON.stringify(ociSpec('orphan', { network: 'isolated' }))}, signal: new AbortController().signal });
      await rt.settled();
      process.stdout.write(JSON.stringify({ pid: sb.pid, port: sb.port, tag: rt.names.tag }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const { pid, port, tag } = JSON.parse(await waitFor('the worker process to start its sandbox', () => out.includes('\n') && out, 20_000)) as { pid: number; port: number; tag: string };
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(processAlive(pid), 'its container outlived it');
    assert.equal((await get(port, '/')).status, 200);
    assert.ok(existsSync(`/run/baton/workers/${tag}`));

    const other = makeWorker('sweeper');
    await other.runtime.start();
    assert.equal(processAlive(pid), false, 'the orphaned container is killed');
    assert.deepEqual(runcIds(runcRoot).filter((c) => c.startsWith(`baton-${tag}-`)), []);
    assert.deepEqual(cgroupDirs(tag), []);
    assert.deepEqual(netnsWith(`baton-${tag}-`), []);
    assert.deepEqual(iptablesMentions(`BATON-${tag.toUpperCase()}`), []);
    assert.equal(existsSync(`/sys/class/net/${dead.oci.bridge}`), false, 'its bridge, unused now, is gone');
    assert.equal(existsSync(`/run/baton/workers/${tag}`), false);
    assert.ok(existsSync(`/run/baton/workers/${other.runtime.names.tag}`), 'the running worker is recorded');
    await other.runtime.close();
    assert.equal(existsSync(`/run/baton/workers/${other.runtime.names.tag}`), false);
  });

  it('close() leaves no container, cgroup, namespace, chain or bridge of the worker', async () => {
    await runtime.settled();
    await runtime.close();
    assert.deepEqual(runcIds(runcRoot), []);
    assert.deepEqual(cgroupDirs(runtime.names.tag), []);
    assert.deepEqual(netnsWith(runtime.names.netnsPrefix), []);
    assert.deepEqual(iptablesMentions(runtime.names.chain), []);
    assert.equal(existsSync(`/sys/class/net/${main.oci.bridge}`), false);
    assert.equal(main.ports.size, 0, 'every host port is released');
    assert.equal(existsSync(join(dir.path, 'oci', main.id)), false);
    await startFailure(runtime.create({ sandboxId: nextId(), spec: ociSpec('late'), signal: never }));
  });
});
