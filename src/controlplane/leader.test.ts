// Leader election against a real etcd (Debian's etcd-server), started by the
// test on free loopback ports and stopped after it. Skipped, saying why, when
// etcd is not installed; CI installs it.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../shared/logging.js';
import { freePort } from '../shared/test-support.js';
import { LeaderElection, type LeadershipState } from './leader.js';

const ETCD = spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
const skip = ETCD ? false : 'etcd is not installed (apt-get install etcd-server)';


async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('leader election on etcd', { skip }, () => {
  let dir: string;
  let etcd: ChildProcess;
  let endpoint: string;
  const replicas: LeaderElection[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-etcd-'));
    const [client, peer] = [await freePort(), await freePort()];
    endpoint = `http://127.0.0.1:${client}`;
    etcd = spawn(
      'etcd',
      [
        '--data-dir', join(dir, 'data'),
        '--listen-client-urls', endpoint,
        '--advertise-client-urls', endpoint,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `default=http://127.0.0.1:${peer}`,
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`${endpoint}/health`).then((r) => r.ok).catch(() => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    for (const r of replicas) await r.stop();
    etcd.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const replica = (self: string, changes: LeadershipState[] = []): LeaderElection => {
    const r = new LeaderElection({ endpoints: [endpoint], name: 'baton-test', self, leaseTtlSec: 2, log: silentLogger(), onChange: (s) => changes.push(s) });
    replicas.push(r);
    r.start();
    return r;
  };

  test('one of three replicas leads, every one knows which, and a resignation hands over at once', async () => {
    const rs = ['http://a:9090', 'http://b:9090', 'http://c:9090'].map((u) => replica(u));
    const leader = await until('a leader', () => rs.find((r) => r.state === 'LEADER'));
    assert.equal(rs.filter((r) => r.state === 'LEADER').length, 1);
    const url = rs.map((r, i) => (r === leader ? ['http://a:9090', 'http://b:9090', 'http://c:9090'][i] : undefined)).find(Boolean);
    await until('every replica to see the leader', () => (rs.every((r) => r.leader === url) ? true : undefined));

    const t0 = Date.now();
    await leader.stop();
    const next = await until('a new leader', () => rs.find((r) => r !== leader && r.state === 'LEADER'));
    assert.ok(Date.now() - t0 < 2000, 'a resignation elects the next at once, not after the TTL');
    assert.equal(rs.filter((r) => r.state === 'LEADER').length, 1);
    await next.stop();
    for (const r of rs) await r.stop();
  });

  test('a leader killed with SIGKILL is replaced within the lease TTL', async () => {
    // The leader runs in a child process, so it can die without resigning.
    const script = join(dir, 'campaign.mjs');
    const leaderModule = fileURLToPath(new URL('./leader.js', import.meta.url));
    writeFileSync(
      script,
      `import { LeaderElection } from ${JSON.stringify(leaderModule)};
const log = { info() {}, warn() {}, error() {}, debug() {} };
const e = new LeaderElection({ endpoints: [${JSON.stringify(endpoint)}], name: 'baton-kill', self: 'http://child:9090', leaseTtlSec: 2, log,
  onChange: (s) => { if (s === 'LEADER') process.stdout.write('LEADER\\n'); } });
e.start();
`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout?.on('data', (d: Buffer) => d.toString().includes('LEADER') && resolve()));
    const follower = new LeaderElection({ endpoints: [endpoint], name: 'baton-kill', self: 'http://me:9090', leaseTtlSec: 2, log: silentLogger(), onChange: () => {} });
    replicas.push(follower);
    follower.start();
    await until('the follower to see the child lead', () => (follower.leader === 'http://child:9090' ? true : undefined));
    assert.equal(follower.state, 'FOLLOWER');

    const t0 = Date.now();
    child.kill('SIGKILL');
    await until('the follower to be elected', () => (follower.state === 'LEADER' ? true : undefined), 10_000);
    const tookMs = Date.now() - t0;
    // The lease is 2 s; etcd's lease granularity and the keep-alive cadence add up to about 1 s more.
    assert.ok(tookMs < 3500, `elected ${tookMs} ms after the leader died (lease TTL 2 s)`);
    assert.equal(follower.leader, 'http://me:9090');
  });
});
