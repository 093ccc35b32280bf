#!/usr/bin/env node
// Control-plane failover with 3 replicas (issue 5): runs the end-to-end scenario of
// test/e2e/ha.test.ts (3 replicas on etcd and Redis behind HAProxy, a worker, a data plane,
// warm load; the leader SIGKILLed) N times and reports the time from the SIGKILL to a new
// leader answering GET /leader, with the warm requests sent meanwhile and how many failed.
// The scenario lives in the test so that it is checked on every CI run; this script only
// repeats it and collects what it prints.
//
//   node bench/failover/run.mjs [--runs 5]      (lease TTL 2 s, as the test sets it)
//
// Needs: npm run build; etcd-server, redis-server and haproxy installed.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, cleanChildEnv, median, round } from '../lib/harness.mjs';

const { values: flags } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(flags.runs);
const test = path.join(REPO_ROOT, 'dist', 'test', 'e2e', 'ha.test.js');
const results = [];
for (let i = 1; i <= runs; i++) {
  const r = spawnSync(process.execPath, ['--test', test], { env: cleanChildEnv(), encoding: 'utf8' });
  const m = /failover: new leader (\d+) ms after SIGKILL; (\d+) warm requests, none failed/.exec(r.stdout);
  if (r.status !== 0 || !m) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`run ${i} failed (exit ${r.status})`);
  }
  results.push({ failoverMs: Number(m[1]), warmRequests: Number(m[2]), failed: 0 });
  process.stderr.write(`run ${i}: new leader ${m[1]} ms after SIGKILL, ${m[2]} warm requests, none failed\n`);
}
const ms = results.map((x) => x.failoverMs);
process.stdout.write(
  JSON.stringify(
    {
      benchmark: 'failover',
      date: new Date().toISOString(),
      command: `node bench/failover/run.mjs --runs ${runs}`,
      machine: { nproc: os.availableParallelism(), node: process.version, loadavg: os.loadavg().map((x) => round(x, 2)) },
      leaseTtlSec: 2,
      failoverMs: { median: median(ms), min: Math.min(...ms), max: Math.max(...ms) },
      runs: results,
    },
    null,
    2,
  ) + '\n',
);
