// Two data planes behind HAProxy (docs/ha.md): one control plane and one
// worker in this process, a second data plane as a child process, HAProxy in
// front of both with a fast health check on each data plane's /health. A warm
// request loop runs through HAProxy while the second data plane is killed
// with SIGKILL: requests fail at most during the health check's detection
// window, registrations keep working, and the restarted data plane
// re-registers, gets the full state, and serves warm at once.
//
// Needs haproxy (apt-get install haproxy); skipped without it.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { echoSpec, freePort, REPO_ROOT, startTestCluster, type TestCluster, waitFor } from '../helpers/cluster.js';

const HAVE_HAPROXY = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
const SKIP = HAVE_HAPROXY ? false : 'haproxy is not installed (apt-get install haproxy); the two-data-plane test needs it';

/** HAProxy's check interval and failures to mark a server down: detection takes about inter × fall. */
const CHECK_INTER_MS = 200;
const CHECK_FALL = 2;
/** Failures through HAProxy are tolerated only this long after the kill: detection plus slack for a busy 2-core machine. */
const DETECTION_WINDOW_MS = CHECK_INTER_MS * (CHECK_FALL + 1) + 900;

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');


interface Backend {
  name: string;
  port: number;
  rpcPort: number;
}

/** The HAProxy config of docs/ha.md, with the test's ports and a fast check. */
function haproxyConfig(port: number, backends: Backend[]): string {
  return `global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch

frontend baton
    bind 127.0.0.1:${port}
    default_backend dataplanes

backend dataplanes
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter ${CHECK_INTER_MS}ms fall ${CHECK_FALL} rise 1
${backends.map((b) => `    server ${b.name} 127.0.0.1:${b.port} check port ${b.rpcPort}`).join('\n')}
`;
}

async function get(url: string, dispatcher: Agent): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(url, { dispatcher, headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

describe('two data planes behind HAProxy', { skip: SKIP }, () => {
  let c: TestCluster;
  let dir: string;
  let dp2: ChildProcess | undefined;
  let haproxy: ChildProcess | undefined;
  let dp2Port: number;
  let dp2RpcPort: number;
  let frontPort: number;
  const agent = new Agent({ connections: 16 });

  /** Starts the second data plane as `baton dataplane` and waits until it has registered. */
  async function startDp2(): Promise<ChildProcess> {
    const child = spawn(process.execPath, [MAIN, 'dataplane', '--config', join(dir, 'dp2.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor('the second data plane to register', async () => {
      try {
        const h = await get(`http://127.0.0.1:${dp2RpcPort}/health`, agent);
        return h.status === 200 && (JSON.parse(h.body) as { registered: boolean }).registered ? true : undefined;
      } catch {
        return undefined;
      }
    });
    return child;
  }

  before(async () => {
    if (SKIP) return;
    dir = mkdtempSync(join(tmpdir(), 'baton-haproxy-'));
    c = await startTestCluster({ controlplane: { scalingPeriodMs: 200 } });
    dp2Port = await freePort();
    dp2RpcPort = await freePort();
    frontPort = await freePort();
    writeFileSync(
      join(dir, 'dp2.yaml'),
      [
        'id: dp2',
        `port: ${dp2Port}`,
        `rpcPort: ${dp2RpcPort}`,
        `controlPlaneUrl: ${c.controlPlane.url}`,
        // Its own: the async queue's file is locked, and the default (.baton in the cwd) is shared with other tests.
        `dataDir: ${join(dir, 'dp2')}`,
        'heartbeatIntervalMs: 500',
        'shutdownGraceMs: 500',
        `logLevel: ${process.env.BATON_TEST_LOG ?? 'silent'}`,
        '',
      ].join('\n'),
    );
    dp2 = await startDp2();
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      haproxyConfig(frontPort, [
        { name: 'dp1', port: c.dataPlane.proxyPort, rpcPort: c.dataPlane.rpcPort },
        { name: 'dp2', port: dp2Port, rpcPort: dp2RpcPort },
      ]),
    );
    haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'ignore'] });
  });

  after(async () => {
    haproxy?.kill('SIGKILL');
    dp2?.kill('SIGKILL');
    await agent.close();
    await c?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('one data plane killed: the other serves, registrations work, the restarted one re-syncs and serves warm', async () => {
    const front = `http://127.0.0.1:${frontPort}`;
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('ha', { scaling: { minScale: 1, maxScale: 1, containerConcurrency: 0 } }))).status, 201);
    // Both data planes route to the warm sandbox, and HAProxy has both up.
    for (const port of [c.dataPlane.proxyPort, dp2Port]) {
      await waitFor(`data plane :${port} to serve`, async () => (await get(`http://127.0.0.1:${port}/fn/ha/`, agent)).status === 200 || undefined);
    }
    await waitFor('HAProxy to serve', async () => {
      try {
        return (await get(`${front}/fn/ha/`, agent)).status === 200 || undefined;
      } catch {
        return undefined;
      }
    });
    const sandbox = String((await get(`http://127.0.0.1:${dp2Port}/fn/ha/`, agent)).headers['x-baton-sandbox']);

    // Warm load through HAProxy: four loops of sequential requests.
    const results: { at: number; ok: boolean }[] = [];
    let running = true;
    const loops = Array.from({ length: 4 }, async () => {
      while (running) {
        try {
          const r = await get(`${front}/fn/ha/`, agent);
          results.push({ at: performance.now(), ok: r.status === 200 });
        } catch {
          results.push({ at: performance.now(), ok: false });
        }
      }
    });
    await sleep(800);
    const killedAt = performance.now();
    dp2?.kill('SIGKILL');
    dp2 = undefined;

    // A registration while one data plane is down.
    await sleep(DETECTION_WINDOW_MS);
    assert.equal((await c.admin('POST', '/v1/functions', echoSpec('ha-late', { scaling: { minScale: 1, maxScale: 1, containerConcurrency: 0 } }))).status, 201);
    await waitFor('ha-late to serve through HAProxy', async () => (await get(`${front}/fn/ha-late/`, agent)).status === 200 || undefined);
    await sleep(1000);

    // The restarted data plane re-registers and gets the full state, including the function registered while it
    // was down; its /health stays 503 until then, so HAProxy sends it nothing it cannot serve. The load goes on.
    const restartedAt = performance.now();
    dp2 = await startDp2();
    for (const fn of ['ha', 'ha-late']) {
      const r = await waitFor(`the restarted data plane to route ${fn}`, async () => {
        const res = await get(`http://127.0.0.1:${dp2Port}/fn/${fn}/`, agent);
        return res.status === 200 ? res : undefined;
      });
      assert.equal(r.headers['x-baton-queue-ms'] ?? '0', '0', `${fn}: served warm, without waiting for a cold start`);
      if (fn === 'ha') assert.equal(String(r.headers['x-baton-sandbox']), sandbox, 'the same sandbox, not a new one');
    }
    // Requests through HAProxy reach it again (its request counter passes the two direct requests above).
    await waitFor('HAProxy to send requests to the restarted data plane again', async () => {
      const metrics = (await get(`http://127.0.0.1:${dp2RpcPort}/metrics`, agent)).body;
      let served = 0;
      for (const m of metrics.matchAll(/^baton_dataplane_requests_total\{[^}]*\} (\d+)$/gm)) served += Number(m[1]);
      return served > 10 || undefined;
    });
    await sleep(500);
    running = false;
    await Promise.all(loops);

    const before = results.filter((r) => r.at < killedAt);
    const window = results.filter((r) => r.at >= killedAt && r.at < killedAt + DETECTION_WINDOW_MS);
    const down = results.filter((r) => r.at >= killedAt + DETECTION_WINDOW_MS && r.at < restartedAt);
    const restarted = results.filter((r) => r.at >= restartedAt);
    const failed = (rs: { ok: boolean }[]): number => rs.filter((r) => !r.ok).length;
    console.log(
      `before the kill: ${before.length} requests, ${failed(before)} failed; detection window (${DETECTION_WINDOW_MS} ms): ${window.length}, ${failed(window)} failed; ` +
        `one data plane down: ${down.length}, ${failed(down)} failed; after its restart: ${restarted.length}, ${failed(restarted)} failed`,
    );
    assert.equal(failed(before), 0);
    assert.ok(down.length > 20, 'requests kept flowing after the detection window');
    assert.equal(failed(down), 0, 'no request fails once HAProxy has marked the killed data plane down');
    assert.equal(failed(restarted), 0, 'no request fails while the data plane comes back');
    const d = await c.admin('GET', '/v1/functions/ha');
    assert.equal(d.body.sandboxes.length, 1, 'no sandbox was started for the restarted data plane');
  });
});
