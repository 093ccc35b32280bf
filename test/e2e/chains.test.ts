// End to end: function chains (docs/chains.md) registered through the admin
// API, run by the `chain` runtime on the cluster's worker, invoked through
// the data plane at /fn/<chain>/…. The pool's counters are read through the
// gateway's metrics endpoint, reached through the data plane too.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { fixture, REPO_ROOT, startTestCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

const WORKDIR = fixture('chains');
const METRICS = '/__baton/chain-metrics';

interface ChainMetrics {
  pid: number;
  pool: { poolId: number; slots: number; inUse: number; free: number };
  members: { name: string; inFlight: number; completed: number; failed: number; restarts: number; threadId: number | null }[];
}

function cli(args: string[], api: string): Promise<{ status: number; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env, BATON_API: api };
  delete env.NODE_EXTRA_CA_CERTS;
  return new Promise((resolve) => {
    execFile(process.execPath, [`${REPO_ROOT}/dist/src/cli/main.js`, ...args], { env, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('function chains in a cluster', () => {
  let c: TestCluster;
  const metrics = async (chain: string): Promise<ChainMetrics> => {
    const r = await c.invoke(chain, METRICS);
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as ChainMetrics;
  };
  const member = (m: ChainMetrics, name: string) => {
    const found = m.members.find((x) => x.name === name);
    assert.ok(found, `no member ${name}`);
    return found;
  };

  before(async () => {
    c = await startTestCluster();
    const shop = await c.admin('POST', '/v1/chains', {
      name: 'shop',
      workdir: WORKDIR,
      members: [
        { name: 'a', handler: 'members.a' },
        { name: 'b', handler: 'members.b' },
        { name: 'c', handler: 'members.c' },
        { name: 'frontend', handler: 'members.frontend' },
        { name: 'cart', handler: 'members.cart' },
        { name: 'prices', handler: 'members.prices' },
        { name: 'fragile', handler: 'members.fragile' },
        { name: 'hold', handler: 'members.hold' },
      ],
      routes: [
        { name: 'abc', path: 'abc', sequence: ['a', 'b', 'c'] },
        { name: 'fragile', path: 'fragile', sequence: ['a', 'fragile'] },
        { name: 'hold', path: 'hold', sequence: ['hold'] },
      ],
      entry: 'frontend',
      pool: { slots: 4 },
      scaling: { minScale: 1, maxScale: 1 },
    });
    assert.equal(shop.status, 201, JSON.stringify(shop.body));
  });
  after(async () => {
    await c.close();
  });

  test('a static route: the request visits a, b and c in order and the gateway answers from the slot', async () => {
    const r = await c.invoke('shop', '/abc/x', { method: 'POST', body: 'parcel' });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { trail: ['a', 'b', 'c'], input: 'parcel' });
    assert.equal(r.headers['content-type'], 'application/json');
    assert.match(String(r.headers['x-baton-sandbox']), /^sb-shop-/);
  });

  test('a dynamic route: the frontend calls cart and prices RPC-style and answers', async () => {
    const r = await c.invoke('shop', '/?user=ann');
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { user: 'ann', items: ['book', 'pen'], total: 10, hops: 0 });
    assert.equal(r.headers['x-chain-frontend'], 'yes');
    const m = await metrics('shop');
    assert.ok(member(m, 'cart').completed >= 1);
    assert.ok(member(m, 'prices').completed >= 1);
  });

  test('a member crashing mid-chain: 502 for that request, its slot back in the pool, the member replaced, the next request served', async () => {
    const before = await metrics('shop');
    const r = await c.invoke('shop', '/fragile?fail=crash');
    assert.equal(r.status, 502, r.body);
    assert.equal(JSON.parse(r.body).code, 'CHAIN_MEMBER_FAILED');
    const after = await waitFor('the member to be replaced', async () => {
      const m = await metrics('shop');
      return member(m, 'fragile').threadId !== null && member(m, 'fragile').restarts === member(before, 'fragile').restarts + 1 ? m : undefined;
    }, 30_000);
    assert.notEqual(member(after, 'fragile').threadId, member(before, 'fragile').threadId);
    assert.equal(after.pool.inUse, 0, 'the crashed request\'s slot is free again');
    const ok = await c.invoke('shop', '/fragile');
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.body, 'ok from thread');
    const thrown = await c.invoke('shop', '/fragile?fail=throw');
    assert.equal(thrown.status, 502);
    assert.match(JSON.parse(thrown.body).message, /asked to throw/);
    assert.equal((await metrics('shop')).pool.inUse, 0);
  });

  test('a full pool answers 503 CHAIN_POOL_FULL at once, not after the held requests', async () => {
    let heldDone = 0;
    const held = [0, 1, 2, 3].map(() => c.invoke('shop', '/hold?ms=8000').finally(() => heldDone++));
    await waitFor('the pool to fill', async () => ((await metrics('shop')).pool.free === 0 ? true : undefined), 30_000);
    const r = await c.invoke('shop', '/abc');
    assert.equal(heldDone, 0, 'the 503 came while every slot was still held, not after');
    assert.equal(r.status, 503, r.body);
    assert.equal(JSON.parse(r.body).code, 'CHAIN_POOL_FULL');
    const results = await Promise.all(held);
    assert.deepEqual(results.map((x) => x.status), [200, 200, 200, 200]);
    assert.equal((await metrics('shop')).pool.inUse, 0);
  });

  test('isolation: a member can only address its own chain, and each chain has its own pool in its own process', async () => {
    const other = await c.admin('POST', '/v1/chains', {
      name: 'other',
      workdir: WORKDIR,
      members: [
        { name: 'intruder', handler: 'members.intruder' },
        { name: 'caller', handler: 'members.intruderCall' },
      ],
      routes: [
        { name: 'next', path: 'next', sequence: ['intruder'] },
        { name: 'call', path: 'call', sequence: ['caller'] },
      ],
    });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const cartBefore = member(await metrics('shop'), 'cart').completed;
    for (const path of ['/next?target=cart', '/call?target=cart', '/next?target=gateway']) {
      const r = await c.invoke('other', path, { method: 'POST', body: '{"user":"eve"}' });
      assert.equal(r.status, 502, `${path}: ${r.body}`);
      assert.equal(JSON.parse(r.body).code, 'CHAIN_UNKNOWN_MEMBER', path);
    }
    const shop = await metrics('shop');
    const otherM = await metrics('other');
    assert.equal(member(shop, 'cart').completed, cartBefore, "shop's cart saw none of other's requests");
    assert.notEqual(shop.pool.poolId, otherM.pool.poolId);
    assert.equal(otherM.pool.inUse, 0);
    assert.notEqual(shop.pid, otherM.pid, 'each chain is its own process');
  });

  test('no slot leaks after 10,000 requests of both kinds', async () => {
    const agent = new Agent({ connections: 8 });
    try {
      let next = 0;
      const failures: string[] = [];
      const worker = async (): Promise<void> => {
        while (next < 10_000) {
          const i = next++;
          const path = i % 2 === 0 ? '/abc' : `/?user=u${i}`;
          const res = await request(`${c.dataPlaneUrl}/fn/shop${path}`, { method: 'POST', body: 'x', dispatcher: agent });
          const text = await res.body.text();
          if (res.statusCode !== 200 && res.statusCode !== 503) failures.push(`${res.statusCode} ${text}`);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      assert.deepEqual(failures.slice(0, 3), []);
      const m = await metrics('shop');
      assert.equal(m.pool.inUse, 0);
      assert.equal(m.pool.free, m.pool.slots);
      assert.ok(member(m, 'c').completed >= 1000, `c completed ${member(m, 'c').completed}`);
      assert.ok(m.members.every((x) => x.inFlight === 0));
    } finally {
      await agent.close();
    }
  });

  test('transport: processes — each member its own process, slots through /dev/shm: a static route, a call tree, a crash replaced, no leak', async () => {
    const res = await c.admin('POST', '/v1/chains', {
      name: 'proc',
      workdir: WORKDIR,
      transport: 'processes',
      members: [
        { name: 'a', handler: 'members.a' },
        { name: 'b', handler: 'members.b' },
        { name: 'frontend', handler: 'members.frontend' },
        { name: 'cart', handler: 'members.cart' },
        { name: 'prices', handler: 'members.prices' },
        { name: 'fragile', handler: 'members.fragile' },
      ],
      routes: [
        { name: 'ab', path: 'ab', sequence: ['a', 'b'] },
        { name: 'fragile', path: 'fragile', sequence: ['fragile'] },
      ],
      entry: 'frontend',
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const ab = await c.invoke('proc', '/ab', { method: 'POST', body: 'p' });
    assert.equal(ab.status, 200, ab.body);
    assert.deepEqual(JSON.parse(ab.body), { trail: ['a', 'b'], input: 'p' });
    const tree = await c.invoke('proc', '/?user=ann');
    assert.deepEqual(JSON.parse(tree.body), { user: 'ann', items: ['book', 'pen'], total: 10, hops: 0 });
    const crash = await c.invoke('proc', '/fragile?fail=crash');
    assert.equal(crash.status, 502, crash.body);
    await waitFor('the member process to be replaced', async () => {
      const f = member(await metrics('proc'), 'fragile') as { ready?: boolean; restarts: number };
      return f.ready && f.restarts === 1 ? true : undefined;
    }, 30_000);
    assert.equal((await c.invoke('proc', '/fragile')).body, 'ok from thread');
    const m = (await metrics('proc')) as ChainMetrics & { transport: string };
    assert.equal(m.transport, 'processes');
    assert.equal(m.pool.inUse, 0);
    assert.ok(member(m, 'cart').completed >= 1, 'the counters come back from the member processes');
    assert.equal((await c.admin('DELETE', '/v1/chains/proc')).status, 200);
  });

  test('a member whose handler cannot be loaded: the chain does not start, and describe says which member and why', async () => {
    const res = await c.admin('POST', '/v1/chains', {
      name: 'broken',
      workdir: WORKDIR,
      members: [
        { name: 'a', handler: 'members.a' },
        { name: 'ghost', handler: 'members.nosuchexport' },
      ],
      routes: [{ name: 'r', path: 'r', sequence: ['a', 'ghost'] }],
      scaling: { minScale: 1 },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const condition = await waitFor('the start failure to show', async () => {
      const d = await c.admin('GET', '/v1/chains/broken');
      return (d.body.status?.condition ?? undefined) as { code: string; message: string } | undefined;
    }, 60_000);
    assert.equal(condition.code, 'SANDBOX_START_FAILED');
    assert.match(condition.message, /member ghost: handler "members.nosuchexport"/);
    assert.equal((await c.admin('DELETE', '/v1/chains/broken')).status, 200);
  });

  test('the CLI lists and describes chains; the admin API deletes them', async () => {
    const ls = await cli(['chains', 'ls'], c.apiUrl);
    assert.equal(ls.status, 0, ls.stderr);
    assert.match(ls.stdout, /^shop\s+a,b,c,frontend,cart,prices,fragile,hold\s+abc,fragile,hold\s+frontend/m);
    const d = await cli(['chains', 'describe', 'shop', '--json'], c.apiUrl);
    assert.equal(d.status, 0, d.stderr);
    const described = JSON.parse(d.stdout);
    assert.equal(described.chain.pool.slots, 4);
    assert.equal(described.spec.runtime, 'chain');
    assert.equal(described.spec.env.BATON_CHAIN_SPEC, undefined);
    const asFunction = await c.admin('POST', '/v1/functions', { name: 'sneaky', runtime: 'chain', env: { BATON_CHAIN_SPEC: '{}' } });
    assert.equal(asFunction.status, 400);
    const bad = await c.admin('POST', '/v1/chains', { name: 'bad', workdir: WORKDIR, members: [{ name: 'a', handler: 'members.a' }], routes: [{ name: 'r', path: 'r', sequence: ['z'] }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'routes.0.sequence.0');
    assert.equal((await c.admin('DELETE', '/v1/chains/other')).status, 200);
    assert.equal((await c.admin('GET', '/v1/chains/other')).status, 404);
    assert.equal((await c.admin('GET', '/v1/chains/nope')).body.code, 'CHAIN_NOT_FOUND');
  });
});
