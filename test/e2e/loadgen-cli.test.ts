// Issue 6's CI check, as a person runs it: `baton up` with emulated workers
// as a child, then `baton loadgen trace` (the CLI, another child) replaying a
// minute of the Azure 2019 sample against it, time-scaled so CI spends
// seconds, not a minute. Checks the exit status, that every invocation
// succeeded, and the three output files.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, REPO_ROOT, waitFor } from '../helpers/cluster.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('baton loadgen trace against baton up (the CLI, end to end)', () => {
  let up: ChildProcess;
  let output = '';
  let api = '';
  const dir = mkdtempSync(join(tmpdir(), 'baton-loadgen-cli-'));

  before(async () => {
    up = spawn(process.execPath, [CLI, 'up', '--emulate', '2', '--api-port', '0', '--dataplane-port', '0', '--data-dir', join(dir, 'data')], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    up.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    up.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor('baton up to print its addresses', () => (output.includes('Stop with Ctrl-C') ? true : undefined), 30_000);
    api = /admin API:\s+(\S+)/.exec(output)?.[1] ?? '';
  });

  after(async () => {
    if (up.exitCode === null) {
      const exited = new Promise((resolve) => up.once('exit', resolve));
      up.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (up.exitCode === null) up.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('replays a minute of the sample with the emulated runtime and writes the CSV, the summary and the report', async () => {
    const out = join(dir, 'out');
    const r = await run(
      ['loadgen', 'trace', '--trace', fixture('traces/azure2019-example'), '--minutes', '5-6', '--seed', '1', '--time-scale', '0.1', '--out', out, '--progress', 'lines'],
      cleanEnv({ BATON_API: api }),
    );
    assert.equal(r.status, 0, `exit ${r.status}\n${r.stderr}\n${r.stdout}`);
    assert.match(r.stdout, /invocations: \d+ measured/);
    assert.match(r.stdout, /report\.html/);

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
      invocations: { measured: number; ok: number; failed: number };
      failures: Record<string, number>;
    };
    assert.ok(summary.invocations.measured > 5, `${summary.invocations.measured} invocations in the minute`);
    assert.equal(summary.invocations.failed, 0, JSON.stringify(summary.failures));
    assert.equal(summary.invocations.ok, summary.invocations.measured);

    const csv = readFileSync(join(out, 'invocations.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, summary.invocations.measured + 1, 'a header and one row per invocation');
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.equal((html.match(/<svg/g) ?? []).length, 4, 'the four plots');
  });
});
