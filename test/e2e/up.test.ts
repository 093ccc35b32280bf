// `baton up` as a person runs it: a child process with the demo function,
// the CLI verbs against it, and a clean stop that leaves no process behind.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { FIXTURES, pidAlive, REPO_ROOT, waitFor } from '../helpers/cluster.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

function cli(args: string[], env: Record<string, string>): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('baton up', () => {
  let child: ChildProcess;
  let output = '';
  let api = '';
  let dataplane = '';
  const dir = mkdtempSync(join(tmpdir(), 'baton-up-'));

  before(async () => {
    child = spawn(process.execPath, [CLI, 'up', '--demo', '--api-port', '0', '--dataplane-port', '0', '--data-dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor('baton up to print its addresses', () => (output.includes('Stop with Ctrl-C') ? true : undefined), 30_000);
    api = /admin API:\s+(\S+)/.exec(output)?.[1] ?? '';
    dataplane = /data plane:\s+(\S+)/.exec(output)?.[1] ?? '';
  });

  after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('prints both addresses and how to invoke the demo', () => {
    assert.match(api, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(dataplane, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(output, /curl http:\/\/127\.0\.0\.1:\d+\/fn\/hello\//);
  });

  test('the demo function answers', async () => {
    const res = await request(`${dataplane}/fn/hello/?name=test`);
    assert.equal(res.statusCode, 200);
    const body = (await res.body.json()) as { message: string };
    assert.equal(body.message, 'Hello, test!');
  });

  test('the CLI verbs work against it and print codes on errors', () => {
    const env = { BATON_API: api };
    const inv = cli(['invoke', 'hello', '--path', '/?name=cli'], env);
    assert.equal(inv.status, 0, inv.stderr);
    assert.match(inv.stdout, /Hello, cli!/);

    const spec = join(dir, 'echo.yaml');
    writeFileSync(spec, `name: echo\ncommand: ["${process.execPath}", "echo-server.js"]\nworkdir: ${FIXTURES}\nscaling:\n  maxScale: 2\n`);
    const dep = cli(['deploy', spec], env);
    assert.equal(dep.status, 0, dep.stderr);
    assert.match(dep.stdout, /deployed echo/);

    const post = cli(['invoke', 'echo', '--path', '/echo', '--data', 'hi there'], env);
    assert.equal(post.status, 0, post.stderr);
    assert.equal(JSON.parse(post.stdout).body, 'hi there');

    const flags = cli(['deploy', '--name', 'flagged', '--workdir', FIXTURES, '--max', '1', '--', process.execPath, 'echo-server.js'], env);
    assert.equal(flags.status, 0, flags.stderr);

    const list = cli(['list'], env);
    assert.equal(list.status, 0);
    assert.match(list.stdout, /^NAME\s+RUNTIME/m);
    assert.match(list.stdout, /^echo\s+process/m);
    assert.match(list.stdout, /^hello\s+process/m);

    const desc = cli(['describe', 'echo', '--json'], env);
    assert.equal(desc.status, 0);
    assert.equal(JSON.parse(desc.stdout).spec.scaling.maxScale, 2);

    const scale = cli(['scale', 'echo', '--min', '1', '--max', '3'], env);
    assert.equal(scale.status, 0, scale.stderr);
    assert.match(scale.stdout, /min 1, max 3, load balancing data-plane default/);
    const tuned = cli(['scale', 'echo', '--set', 'stableWindowSec=30', '--lb', 'least-inflight'], env);
    assert.equal(tuned.status, 0, tuned.stderr);
    assert.match(tuned.stdout, /load balancing least-inflight/);
    const tunedSpec = JSON.parse(cli(['describe', 'echo', '--json'], env).stdout).spec;
    assert.equal(tunedSpec.scaling.stableWindowSec, 30);
    assert.equal(tunedSpec.scaling.minScale, 1, 'other settings are kept');
    const badSet = cli(['scale', 'echo', '--set', 'stableWindowSec=2'], env);
    assert.equal(badSet.status, 1);
    assert.match(badSet.stderr, /error: INVALID_SPEC: scaling\.stableWindowSec/);

    const workers = cli(['workers'], env);
    assert.equal(workers.status, 0);
    assert.match(workers.stdout, /CPU RESERVED/);
    assert.match(workers.stdout, /\d+m \/ \d+m/);

    const del = cli(['delete', 'flagged'], env);
    assert.equal(del.status, 0);

    const missing = cli(['describe', 'nope'], env);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /error: FUNCTION_NOT_FOUND: /);

    const invMissing = cli(['invoke', 'nope'], env);
    assert.equal(invMissing.status, 1);
    assert.match(invMissing.stderr, /error: FUNCTION_NOT_FOUND/);

    const badSpec = cli(['deploy', '--name', 'Bad_Name', '--', 'x'], env);
    assert.equal(badSpec.status, 1);
    assert.match(badSpec.stderr, /error: INVALID_SPEC: name: /);

    const down = cli(['list'], { BATON_API: 'http://127.0.0.1:1' });
    assert.equal(down.status, 1);
    assert.match(down.stderr, /error: PEER_UNAVAILABLE/);
  });

  test('SIGTERM stops everything and leaves no process behind', async () => {
    const pids: number[] = [];
    for (const path of ['/fn/hello/', '/fn/echo/echo']) {
      const res = await request(`${dataplane}${path}`);
      pids.push(((await res.body.json()) as { pid: number }).pid);
    }
    for (const pid of pids) assert.ok(pidAlive(pid));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    for (const pid of pids) assert.equal(pidAlive(pid), false, `sandbox process ${pid} is gone`);
  });
});
