#!/usr/bin/env node
// Warm invocations: requests/s and latency through Baton's data plane against
// HAProxy forwarding to the very same sandbox, with the same client (wrk), in the
// same run.
//
// Why: DESIGN.md, "Performance targets": warm invocations through the data plane
// must reach ≥ 0.75× the requests/s of HAProxy, with ≤ 0.3 ms added to p50. Its
// baselines on this machine (2 vCPUs, wrk -t2 -c64 -d10s): the Node server directly
// 81–83k req/s, p50 0.74 ms; HAProxy with one thread 45–47k req/s, p50 1.3 ms; a
// straightforward undici proxy only 24–30k. The machine is shared and noisy, so the
// three paths are measured in interleaved rounds (baton, haproxy, direct, baton, …)
// and compared by their medians, never against numbers from another day.
//
// What runs: `baton up` (one process: control plane, data plane, worker), one
// function "hello" (bench/fixtures/hello-server.js) kept at exactly one sandbox
// (minScale 1, maxScale 1, containerConcurrency 0 = unlimited, so that one sandbox
// takes all of wrk's connections, as it does behind HAProxy), and HAProxy
// (nbthread 1, http-reuse always) whose only server is that sandbox's address.
//
//   node bench/warm/run.mjs [--threads 2] [--connections 64] [--duration 10s] [--rounds 3]
//
// Needs: npm run build; apt-get install haproxy wrk.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  FIXTURES,
  HELLO_SERVER,
  REPO_ROOT,
  adminApi,
  freePort,
  helloSpec,
  makeTempDir,
  median,
  requirePrograms,
  round,
  runMain,
  spawnChild,
  startBaton,
  waitForPort,
  waitForReadySandboxes,
} from '../lib/harness.mjs';

const TARGET_RATIO = 0.75; // × HAProxy req/s (DESIGN.md)
const TARGET_ADDED_P50_MS = 0.3; // Baton p50 − direct p50 (DESIGN.md)
const FUNCTION = 'hello';

const { values: flags } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '10s' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '3s' },
    'log-level': { type: 'string', default: 'warn' },
    // Without Baton: the script starts the fixture itself and measures only HAProxy and
    // direct. For checking the peer half, or recording it while Baton does not build.
    'peer-only': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('node bench/warm/run.mjs [--threads 2] [--connections 64] [--duration 10s] [--rounds 3] [--warmup 3s] [--log-level warn] [--peer-only]\n');
  process.exit(0);
}
const rounds = Number(flags.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');

// ---- wrk ----------------------------------------------------------------------------

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`cannot read wrk latency "${text}"`);
  return Number(m[1]) * UNIT_MS[m[2]];
}

/** Parses `wrk --latency` output: req/s, p50, p99, and everything that went wrong. */
function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /^\s*50%\s+(\S+)/m.exec(out);
  const p99 = /^\s*99%\s+(\S+)/m.exec(out);
  if (!rps || !p50 || !p99) throw new Error(`cannot parse wrk output:\n${out}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(rps[1]),
    p50Ms: toMs(p50[1]),
    p99Ms: toMs(p99[1]),
    requests: num(/(\d+) requests in/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    socketErrors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    socketErrorDetail: socket ? socket[0] : '',
  };
}

function runWrk(url, { threads, connections, duration }) {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['--latency', `-t${threads}`, `-c${connections}`, `-d${duration}`, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`wrk exited with ${code}:\n${out}`));
      else {
        try {
          resolve(parseWrk(out));
        } catch (err) {
          reject(err);
        }
      }
    });
  });
}

// ---- HAProxy ------------------------------------------------------------------------

function haproxyConfig(frontendPort, sandboxAddress) {
  return `# Written by bench/warm/run.mjs: the peer Baton's data plane is measured against.
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    http-reuse always
    timeout connect 30s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:${frontendPort}
    default_backend sandbox

backend sandbox
    server s1 ${sandboxAddress}
`;
}

async function startHaproxy(sandboxAddress) {
  const dir = makeTempDir('baton-bench-haproxy-');
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(port, sandboxAddress));
  const child = spawnChild('haproxy', 'haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const exited = child.exited.then(({ code }) => {
    throw new Error(`haproxy exited with ${code}:\n${stderr}`);
  });
  await Promise.race([waitForPort('127.0.0.1', port), exited]);
  exited.catch(() => {}); // after start-up, an exit shows up as wrk failures
  return { url: `http://127.0.0.1:${port}/`, child };
}

// ---- the run ------------------------------------------------------------------------

/** One GET that must answer 200 "hello\n": a path that does not is not worth timing. */
async function checkPath(name, url) {
  const res = await fetch(url);
  const body = await res.text();
  if (res.status !== 200 || body !== 'hello\n') {
    throw new Error(`${name} (${url}) answered ${res.status} ${JSON.stringify(body.slice(0, 200))}`);
  }
  return res.headers;
}

function commandLine() {
  const peerOnly = flags['peer-only'] ? ' --peer-only' : '';
  return `node bench/warm/run.mjs --threads ${flags.threads} --connections ${flags.connections} --duration ${flags.duration} --rounds ${rounds}${peerOnly}`;
}

async function main() {
  await requirePrograms(['haproxy', 'wrk'], 'apt-get install haproxy wrk');
  const wrkOptions = { threads: flags.threads, connections: flags.connections, duration: flags.duration };

  const peerOnly = flags['peer-only'];
  let baton;
  let sandbox;
  if (peerOnly) {
    const port = await freePort();
    const child = spawnChild('hello-server', process.execPath, [HELLO_SERVER], {
      cwd: FIXTURES,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port), HOST: '127.0.0.1' },
      stdio: 'ignore',
    });
    await waitForPort('127.0.0.1', port);
    sandbox = { id: `pid-${child.pid}`, address: `127.0.0.1:${port}` };
    process.stderr.write(`--peer-only: hello-server at ${sandbox.address}, Baton not measured\n`);
  } else {
    if (!existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'))) {
      throw new Error('dist/src/cli/main.js is missing: run `npm run build` first');
    }
    process.stderr.write('starting baton up…\n');
    baton = await startBaton({ logLevel: flags['log-level'] });
    process.stderr.write(`  admin API ${baton.apiUrl}, data plane ${baton.dataPlaneUrl}\n`);
    await adminApi(baton.apiUrl, 'POST', '/v1/functions', helloSpec(FUNCTION, { minScale: 1, maxScale: 1, containerConcurrency: 0 }));
    [sandbox] = await waitForReadySandboxes(baton.apiUrl, FUNCTION);
    process.stderr.write(`  function ${FUNCTION}: sandbox ${sandbox.id} ready at ${sandbox.address}\n`);
  }

  const haproxy = await startHaproxy(sandbox.address);
  const paths = [
    ...(peerOnly ? [] : [{ name: 'baton', url: `${baton.dataPlaneUrl}/fn/${FUNCTION}/` }]),
    { name: 'haproxy', url: haproxy.url },
    { name: 'direct', url: `http://${sandbox.address}/` },
  ];
  if (!peerOnly) {
    const batonHeaders = await checkPath('baton', paths[0].url);
    if (batonHeaders.get('x-baton-sandbox') !== sandbox.id) {
      process.stderr.write(`warning: x-baton-sandbox is ${batonHeaders.get('x-baton-sandbox')}, expected ${sandbox.id}\n`);
    }
  }
  for (const p of paths) if (p.name !== 'baton') await checkPath(p.name, p.url);

  // Warm-up: JIT, connection pools, HAProxy's idle server connections. Not recorded.
  for (const p of paths) {
    process.stderr.write(`warm-up ${p.name} (${flags.warmup})…\n`);
    await runWrk(p.url, { ...wrkOptions, duration: flags.warmup });
  }

  const results = Object.fromEntries(paths.map((p) => [p.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const p of paths) {
      const res = await runWrk(p.url, wrkOptions);
      results[p.name].push(res);
      const trouble = res.non2xx + res.socketErrors > 0 ? `  non-2xx ${res.non2xx}, ${res.socketErrorDetail}` : '';
      process.stderr.write(
        `round ${r}/${rounds} ${p.name.padEnd(8)} ${res.rps.toFixed(0).padStart(7)} req/s  p50 ${res.p50Ms.toFixed(3)} ms  p99 ${res.p99Ms.toFixed(3)} ms${trouble}\n`,
      );
    }
    // Still one sandbox? If Baton scaled or replaced it, HAProxy would be measuring something else.
    if (peerOnly) continue;
    const fn = await adminApi(baton.apiUrl, 'GET', `/v1/functions/${FUNCTION}`);
    const ids = (fn.sandboxes ?? []).map((s) => `${s.id}:${s.state}`);
    if (ids.length !== 1 || fn.sandboxes[0].id !== sandbox.id) {
      process.stderr.write(`warning: after round ${r} the function's sandboxes are [${ids.join(', ')}], expected only ${sandbox.id}\n`);
    }
  }

  // Added latency is read at one connection: at 64, p50 is mostly time spent
  // queued behind other connections, which says little about the proxy hop.
  const unloaded = Object.fromEntries(paths.map((p) => [p.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const p of paths) {
      const res = await runWrk(p.url, { threads: 1, connections: 1, duration: flags.duration });
      unloaded[p.name].push(res.p50Ms);
      process.stderr.write(`latency ${r}/${rounds} ${p.name.padEnd(8)} 1 connection: p50 ${res.p50Ms.toFixed(3)} ms\n`);
    }
  }
  const p50At1 = Object.fromEntries(paths.map((p) => [p.name, round(median(unloaded[p.name]), 3)]));

  const summaryOf = (name) => {
    const rs = results[name];
    return {
      rps: round(median(rs.map((x) => x.rps)), 0),
      p50Ms: round(median(rs.map((x) => x.p50Ms)), 3),
      p99Ms: round(median(rs.map((x) => x.p99Ms)), 3),
      rpsPerRound: rs.map((x) => round(x.rps, 0)),
      non2xx: rs.reduce((a, x) => a + x.non2xx, 0),
      socketErrors: rs.reduce((a, x) => a + x.socketErrors, 0),
    };
  };
  const medians = Object.fromEntries(paths.map((p) => [p.name, summaryOf(p.name)]));
  const summary = {
    benchmark: 'warm',
    date: new Date().toISOString(),
    command: commandLine(),
    machine: { nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version },
    wrk: { ...wrkOptions, rounds, warmup: flags.warmup },
    medians,
    p50MsAtOneConnection: p50At1,
    haproxyAddedP50Ms: round(p50At1.haproxy - p50At1.direct, 3),
  };
  const verdict = [];
  if (!peerOnly) {
    const ratio = medians.baton.rps / medians.haproxy.rps;
    const pairedRatios = results.baton.map((b, i) => round(b.rps / results.haproxy[i].rps, 3));
    const addedP50Ms = p50At1.baton - p50At1.direct;
    summary.batonOverHaproxy = { ratio: round(ratio, 3), perRound: pairedRatios, target: TARGET_RATIO, met: ratio >= TARGET_RATIO };
    summary.batonAddedP50Ms = { batonMinusDirect: round(addedP50Ms, 3), target: TARGET_ADDED_P50_MS, met: addedP50Ms <= TARGET_ADDED_P50_MS };
    verdict.push(
      `baton / haproxy req/s: ${ratio.toFixed(3)}× (per round ${pairedRatios.join(', ')}); target ≥ ${TARGET_RATIO}×: ${summary.batonOverHaproxy.met ? 'MET' : 'NOT MET'}`,
      `added p50 at 1 connection (baton − direct): ${addedP50Ms.toFixed(3)} ms (haproxy adds ${summary.haproxyAddedP50Ms.toFixed(3)} ms); target ≤ ${TARGET_ADDED_P50_MS} ms: ${summary.batonAddedP50Ms.met ? 'MET' : 'NOT MET'}`,
    );
  } else {
    verdict.push(`haproxy / direct req/s: ${(medians.haproxy.rps / medians.direct.rps).toFixed(3)}×; haproxy adds ${summary.haproxyAddedP50Ms.toFixed(3)} ms to p50`);
  }

  const row = (cells) => cells.map((c, i) => String(c)[i === 0 ? 'padEnd' : 'padStart'](i === 0 ? 8 : 12)).join(' ');
  const lines = [
    '',
    `warm invocations, ${summary.command} (${summary.machine.nproc} CPUs, node ${summary.machine.node})`,
    row(['path', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'vs haproxy']),
    ...paths.map((p) => {
      const m = medians[p.name];
      return row([p.name, m.rps, m.p50Ms.toFixed(3), m.p99Ms.toFixed(3), m.non2xx + m.socketErrors, (m.rps / medians.haproxy.rps).toFixed(3) + '×']);
    }),
    '',
    ...verdict,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');

  const outDir = path.join(REPO_ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `warm-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(outFile, JSON.stringify({ ...summary, rounds: results }, null, 2) + '\n');
  process.stderr.write(`wrote ${path.relative(REPO_ROOT, outFile)}\n`);

  if (!peerOnly) await adminApi(baton.apiUrl, 'DELETE', `/v1/functions/${FUNCTION}`);
}

runMain(main);
