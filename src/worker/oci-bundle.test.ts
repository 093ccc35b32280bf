// The pure parts of the oci runtime, without root or runc: the OCI spec a
// sandbox gets, its environment, pool keys, names, subnets, /proc and
// mountinfo parsing, and the reasons the runtime gives when it cannot work.
import { strict as assert } from 'node:assert';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { FunctionSpec } from '../shared/spec.js';
import { ociConfig, nodePrefixBind, sandboxEnv, type BundleInput } from './runtimes/oci/bundle.js';
import { readCgroupMounts } from './runtimes/oci/cgroups.js';
import { decodeWaitStatus, parseInitStat } from './runtimes/oci/init-process.js';
import { ociNames, safeSegment } from './runtimes/oci/names.js';
import { parseSubnet } from './runtimes/oci/network.js';
import { ociUnavailable, poolKey } from './runtimes/oci.js';
import { functionSpec, tempDir } from './test-support.js';

function spec(over: Partial<FunctionSpec> = {}): FunctionSpec {
  return { ...functionSpec('fn', ['/usr/bin/node', 'index.js'], { A: '1' }), runtime: 'oci', workdir: '/srv/fn', ...over };
}

function input(over: Partial<BundleInput> = {}): BundleInput {
  return {
    spec: spec({ resources: { cpuMillis: 250, memoryMb: 64 } }),
    env: { PATH: '/usr/bin', PORT: '8080' },
    uid: 65534,
    gid: 65534,
    pidsLimit: 100,
    cgroupsPath: '/baton-abc/c1',
    netnsPath: undefined,
    layout: { symlinks: [['bin', 'usr/bin']], directories: ['/lib64'], extraBinds: ['/opt/node'], nofile: 4096 },
    swapLimit: true,
    ...over,
  };
}

interface Config {
  process: any;
  root: any;
  mounts: Array<{ destination: string; type: string; source: string; options?: string[] }>;
  linux: any;
  hostname: string;
}

describe('oci bundle', () => {
  it('confines the process: non-root, no capabilities, no new privileges, a clean environment', () => {
    const c = ociConfig(input()) as unknown as Config;
    assert.deepEqual(c.process.user, { uid: 65534, gid: 65534, additionalGids: [65534] });
    assert.equal(c.process.noNewPrivileges, true);
    for (const set of ['bounding', 'effective', 'inheritable', 'permitted', 'ambient']) assert.deepEqual(c.process.capabilities[set], [], set);
    assert.deepEqual(c.process.env, ['PATH=/usr/bin', 'PORT=8080']);
    assert.deepEqual(c.process.args, ['/usr/bin/node', 'index.js']);
    assert.equal(c.process.cwd, '/function');
    assert.deepEqual(c.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }]);
    assert.equal(c.process.terminal, false);
    assert.equal(c.hostname, 'fn');
    const noWorkdir = ociConfig(input({ spec: spec({ workdir: undefined }) })) as unknown as Config;
    assert.equal(noWorkdir.process.cwd, '/');
  });

  it('mounts a read-only root, the host /usr and the function read-only, and tmpfs where it may write', () => {
    const c = ociConfig(input()) as unknown as Config;
    assert.deepEqual(c.root, { path: 'rootfs', readonly: true });
    const byDest = new Map(c.mounts.map((m) => [m.destination, m]));
    for (const ro of ['/usr', '/etc', '/lib64', '/opt/node', '/function']) {
      const m = byDest.get(ro);
      assert.ok(m, ro);
      assert.equal(m.type, 'bind');
      assert.ok(m.options?.includes('ro'), `${ro} is read-only`);
      assert.ok(m.options?.includes('nosuid') && m.options.includes('nodev'), `${ro} is nosuid,nodev`);
    }
    assert.equal(byDest.get('/function')?.source, '/srv/fn');
    assert.equal(byDest.get('/tmp')?.type, 'tmpfs');
    assert.ok(byDest.get('/tmp')?.options?.includes('size=64m'));
    assert.ok(byDest.get('/sys')?.options?.includes('ro'));
    for (const d of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue']) assert.ok(byDest.has(d), d);
    assert.equal(byDest.has('/sys/fs/cgroup'), false, "the host's cgroup tree is not shown");
    const noWorkdir = ociConfig(input({ spec: spec({ workdir: undefined }) })) as unknown as Config;
    assert.equal(noWorkdir.mounts.some((m) => m.destination === '/function'), false);
  });

  it('limits CPU, memory (swap included) and pids from the spec, in the cgroup it is given', () => {
    const c = ociConfig(input()) as unknown as Config;
    assert.deepEqual(c.linux.resources.cpu, { shares: 256, quota: 25_000, period: 100_000 });
    assert.deepEqual(c.linux.resources.memory, { limit: 64 * 1024 * 1024, swap: 64 * 1024 * 1024 });
    assert.deepEqual(c.linux.resources.pids, { limit: 100 });
    assert.deepEqual(c.linux.resources.devices, [{ allow: false, access: 'rwm' }]);
    assert.equal(c.linux.cgroupsPath, '/baton-abc/c1');
    const noSwap = ociConfig(input({ swapLimit: false })) as unknown as Config;
    assert.deepEqual(noSwap.linux.resources.memory, { limit: 64 * 1024 * 1024 });
  });

  it('gives the sandbox its own pid, ipc, uts and mount namespaces, and a network one only when isolated', () => {
    const host = ociConfig(input()) as unknown as Config;
    assert.deepEqual(
      host.linux.namespaces.map((n: { type: string }) => n.type),
      ['pid', 'ipc', 'uts', 'mount'],
    );
    const isolated = ociConfig(input({ netnsPath: '/run/netns/baton-x-1' })) as unknown as Config;
    assert.deepEqual(isolated.linux.namespaces.at(-1), { type: 'network', path: '/run/netns/baton-x-1' });
    assert.ok(host.linux.maskedPaths.includes('/proc/kcore'));
    assert.ok(host.linux.readonlyPaths.includes('/proc/sys'));
  });

  it('builds the environment from the spec; PORT, HOST and BATON_FUNCTION win', () => {
    const env = sandboxEnv(spec({ env: { A: '1', PORT: '1', HOST: 'evil', BATON_FUNCTION: 'x', HOME: '/home/me' } }), '0.0.0.0', 8080);
    assert.deepEqual(env, {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/home/me',
      LANG: 'C.UTF-8',
      A: '1',
      PORT: '8080',
      HOST: '0.0.0.0',
      BATON_FUNCTION: 'fn',
    });
  });

  it('binds the install prefix of a Node that lives outside /usr', () => {
    const dir = tempDir('oci-node');
    try {
      mkdirSync(join(dir.path, 'v20', 'bin'), { recursive: true });
      writeFileSync(join(dir.path, 'v20', 'bin', 'node'), '');
      chmodSync(join(dir.path, 'v20', 'bin', 'node'), 0o755);
      assert.deepEqual(nodePrefixBind(join(dir.path, 'v20', 'bin', 'node')), [join(dir.path, 'v20')]);
      assert.deepEqual(nodePrefixBind('/usr/bin/env'), []);
      assert.deepEqual(nodePrefixBind('/nonexistent/bin/node'), []);
    } finally {
      dir.remove();
    }
  });
});

describe('oci runtime, pure parts', () => {
  it('keys precreated containers by everything their config is made from', () => {
    const base = spec();
    assert.equal(poolKey(base), poolKey({ ...base, scaling: { ...base.scaling, maxScale: 9 } }), 'scaling does not matter');
    assert.equal(poolKey(spec({ env: { A: '1', B: '2' } })), poolKey(spec({ env: { B: '2', A: '1' } })));
    for (const other of [
      spec({ env: { A: '2' } }),
      spec({ command: ['/usr/bin/node', 'other.js'] }),
      spec({ resources: { cpuMillis: 100, memoryMb: 256 } }),
      spec({ network: 'isolated' }),
      spec({ workdir: '/srv/other' }),
      spec({ name: 'other' }),
    ]) {
      assert.notEqual(poolKey(other), poolKey(base));
    }
  });

  it('names everything with a fixed-length tag of the worker id', () => {
    const a = ociNames('worker-host-abc123');
    const b = ociNames('worker-host-abc123-x');
    assert.match(a.tag, /^[0-9a-f]{8}$/);
    assert.notEqual(a.tag, b.tag);
    assert.ok(!b.containerPrefix.startsWith(a.containerPrefix), 'no worker prefix is the prefix of another');
    assert.ok(a.vethPrefix.length <= 8, 'veth names keep 7 characters for a counter');
    assert.ok(`${a.chain}-POST`.length <= 28, 'iptables chain names are at most 28 characters');
    assert.equal(ociNames('a/b').workerDir, 'a_b');
    assert.equal(safeSegment('../etc'), '__etc');
  });

  it('parses the subnet into the bridge address and the range sandboxes get', () => {
    const s = parseSubnet('10.88.0.0/16');
    assert.equal(s.bridgeIp, '10.88.0.1');
    assert.equal(s.cidr, '10.88.0.0/16');
    assert.equal(s.last - s.first + 1, 65_533);
    assert.equal(parseSubnet('10.99.7.200/24').cidr, '10.99.7.0/24');
    assert.throws(() => parseSubnet('10.0.0/24'), /oci.subnet/);
  });

  it('reads a container init from /proc/<pid>/stat, zombie exit status included', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = 'Z';
    fields[19] = '123456';
    fields[49] = String(7 << 8);
    const stat = parseInitStat(`42 (node (x) y) ${fields.join(' ')}\n`);
    assert.deepEqual(stat, { state: 'Z', startTime: '123456', exitStatus: 7 << 8 });
    assert.deepEqual(decodeWaitStatus(7 << 8), { exitCode: 7, signal: null });
    assert.deepEqual(decodeWaitStatus(9), { exitCode: null, signal: 'SIGKILL' });
    assert.equal(parseInitStat('garbage'), undefined);
  });

  it('finds the cgroup hierarchies, hybrid or unified', () => {
    const dir = tempDir('oci-mountinfo');
    try {
      const hybrid = join(dir.path, 'hybrid');
      writeFileSync(
        hybrid,
        [
          '30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755',
          '31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw',
          '33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
          '34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
          '',
        ].join('\n'),
      );
      const h = readCgroupMounts(hybrid);
      assert.deepEqual(h.hierarchies, ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/cpu,cpuacct']);
      assert.deepEqual(h.memory, { mount: '/sys/fs/cgroup/memory', v2: false });
      const unified = join(dir.path, 'unified');
      writeFileSync(unified, '29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n');
      assert.deepEqual(readCgroupMounts(unified), { hierarchies: ['/sys/fs/cgroup'], memory: { mount: '/sys/fs/cgroup', v2: true }, swapLimit: true });
    } finally {
      dir.remove();
    }
  });

  it('says why it cannot run: not root, or runc missing', () => {
    if (process.platform !== 'linux') return;
    assert.match(ociUnavailable('runc', 1000) ?? '', /needs root .* uid 1000/);
    assert.match(ociUnavailable('/nonexistent/runc', 0) ?? '', /runc \("\/nonexistent\/runc"\) was not found or is not executable.*oci\.runc/);
    assert.match(ociUnavailable('no-such-runc-here', 0) ?? '', /was not found on PATH/);
  });
});
