#!/usr/bin/env node
// Async invocations: how fast the data plane accepts them (each submit is one
// fsynced write to its SQLite queue before the 202) and how fast its
// dispatcher drains them, next to sync requests to the same warm sandbox in
// the same run.
//
// What runs: `baton up` (default async config: SQLite queue in the data dir,
// concurrency 64), one function "hello" kept at exactly one sandbox
// (minScale = maxScale = 1, containerConcurrency 0). wrk sends sync GETs, then
// async POSTs (x-baton-invocation: async) for the same duration; then one
// marker invocation is submitted and the drain time is when it has
// succeeded (the queue is FIFO, so everything before it has been claimed).
//
//   node bench/async/run.mjs [--connections 16] [--duration 5s]
//
// Needs: npm run build; apt-get install wrk.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { adminApi, helloSpec, makeTempDir, requirePrograms, round, runMain, sleep, startBaton, waitForReadySandboxes } from '../lib/harness.mjs';

const { values: flags } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    duration: { type: 'string', default: '5s' },
  },
});

function wrk(url, script) {
  return new Promise((resolve, reject) => {
    const args = ['--latency', '-t1', `-c${flags.connections}`, `-d${flags.duration}`, ...(script ? ['-s', script] : []), url];
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.once('error', reject);
    child.once('exit', () => {
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const p50 = /^\s*50%\s+(\S+)/m.exec(out);
      const requests = /(\d+) requests in/.exec(out);
      const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      if (!rps || !p50 || !requests) return reject(new Error(`cannot parse wrk output:\n${out}`));
      resolve({ rps: Number(rps[1]), p50: p50[1], requests: Number(requests[1]), non2xx: non2xx ? Number(non2xx[1]) : 0 });
    });
  });
}

async function main() {
  await requirePrograms(['wrk'], 'apt-get install wrk');
  const baton = await startBaton();
  try {
    await adminApi(baton.apiUrl, 'POST', '/v1/functions', helloSpec('hello', { minScale: 1, maxScale: 1, containerConcurrency: 0 }));
    await waitForReadySandboxes(baton.apiUrl, 'hello');
    const url = `${baton.dataPlaneUrl}/fn/hello/`;
    const sync = await wrk(url);
    const dir = makeTempDir('baton-bench-async-');
    const script = path.join(dir, 'async.lua');
    writeFileSync(script, 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["x-baton-invocation"] = "async"\n');
    const started = Date.now();
    const submits = await wrk(url, script);
    const accepted = submits.requests - submits.non2xx;
    const marker = await fetch(url, { method: 'POST', headers: { 'x-baton-invocation': 'async' } });
    const { id } = await marker.json();
    for (;;) {
      const r = await (await fetch(`${baton.dataPlaneUrl}/v1/invocations/${id}`)).json();
      if (r.state === 'succeeded' || r.state === 'failed') break;
      await sleep(20);
    }
    const drainS = (Date.now() - started) / 1000;
    const out = {
      command: `node bench/async/run.mjs --connections ${flags.connections} --duration ${flags.duration}`,
      syncReqPerS: sync.rps,
      syncP50: sync.p50,
      asyncSubmitsPerS: submits.rps,
      asyncSubmitP50: submits.p50,
      asyncAccepted: accepted,
      asyncRejected: submits.non2xx,
      drainedPerS: round((accepted + 1) / drainS, 0),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await baton.stop();
  }
}

runMain(main);
