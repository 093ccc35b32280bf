#!/usr/bin/env node
// The `baton` command: `up` (a whole cluster on this machine), the component
// daemons, and the user verbs that talk to the admin API. Errors print their
// stable code and message and exit non-zero.
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { request } from 'undici';
import { ControlPlane } from '../controlplane/index.js';
import { DataPlane } from '../dataplane/index.js';
import { compileConfig, controlPlaneSchema, dataPlaneSchema, readConfigFile, upSchema, workerSchema, type WorkerConfig } from '../shared/config.js';
import { BatonError, toBatonError } from '../shared/errors.js';
import { createLogger } from '../shared/logging.js';
import { CHAIN_SPEC_ENV, LOAD_BALANCING_POLICIES } from '../shared/spec.js';
import { EMULATED_NODE_CAPACITY, emulatedWorkerConfigs, startEmulatedWorkers, stopWorkers, Worker } from '../worker/index.js';
import { buildSchedule, IAT_DISTRIBUTIONS, readAzure2019Folder, readAzure2021File, type IatDistribution } from '../loadgen/index.js';
import { runTrace, TRACE_RUNTIMES, type TraceRuntime } from '../loadgen/runner.js';
import { rateSteps, RPS_DEFAULTS, stepLengthMs } from '../loadgen/rps.js';
import { formatColdSweep, formatRps, readBody, runColdSweep, runRps, type RpsRequest } from '../loadgen/rps-runner.js';
import type { ProgressMode } from '../loadgen/progress.js';
import { formatSummary } from '../loadgen/summary.js';
import { runScaleBench } from '../bench/scale.js';
import { formatScaleReport, parseSizeList, SCALE_TESTS, type ScaleTest } from '../bench/stats.js';
import { AdminClient } from './client.js';
import { runUp } from './up.js';

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a non-negative number');
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a number above 0');
  return n;
}

/** FROM-TO, trace minutes, 0-based, TO excluded. */
function minuteRange(value: string): { from: number; to: number } {
  const m = /^(\d+)-(\d+)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected FROM-TO, e.g. 0-30');
  return { from: Number(m[1]), to: Number(m[2]) };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Repeated `--header name:value` flags as a header object (names lower-cased). */
function headerMap(flags: readonly string[] | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of flags ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) throw new BatonError('INVALID_REQUEST', `--header ${h}: expected name:value`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return headers;
}

/** A comma-separated list of rates, e.g. 10,50,100. */
function rateList(value: string): number[] {
  const rates = value.split(',').map((v) => Number(v.trim()));
  if (value.trim() === '' || rates.some((r) => !Number.isFinite(r) || r < 0)) throw new InvalidArgumentError('expected a rate or a comma-separated list of rates ≥ 0, e.g. 10,50,100');
  return rates;
}

/** Drops undefined values, so flags that were not given do not hide config-file values. */
function defined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function fileConfig(path: string | undefined): Record<string, unknown> {
  return path ? readConfigFile(path) : {};
}

/** A daemon's config as written: its YAML file (--config), overridden by the flags that were given, with the token from --token or BATON_TOKEN. */
function daemonInput(cmd: Command, flags: Record<string, unknown>): Record<string, unknown> {
  const o = cmd.opts<{ config?: string }>();
  const g = cmd.optsWithGlobals<{ token?: string }>();
  return { ...fileConfig(o.config), ...defined({ ...flags, token: g.token ?? process.env.BATON_TOKEN }) };
}

/** A daemon's config: daemonInput(), validated and frozen. */
function daemonConfig<S extends Parameters<typeof compileConfig>[0]>(
  schema: S,
  cmd: Command,
  flags: Record<string, unknown>,
): ReturnType<typeof compileConfig<S>> {
  return compileConfig(schema, daemonInput(cmd, flags), cmd.opts<{ config?: string }>().config ?? 'flags');
}

/** A nested config section as written, or {} (a malformed one is the schema's to reject). */
function section(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** The worker's config as written, with the --start-delay-* flags merged into emulation.startDelay. */
function workerInput(cmd: Command, o: Record<string, unknown>): Record<string, unknown> {
  const input = daemonInput(cmd, {
    host: o.host,
    rpcPort: o.rpcPort,
    controlPlaneUrl: o.controlPlane,
    dataDir: o.dataDir,
    cpuMillis: o.cpuMillis,
    memoryMb: o.memoryMb,
  });
  const startDelay = defined({
    distribution: o.startDelayDistribution,
    ms: o.startDelayMs,
    spreadMs: o.startDelaySpreadMs,
    seed: o.startDelaySeed,
  });
  if (Object.keys(startDelay).length > 0) {
    const emulation = section(input.emulation);
    input.emulation = { ...emulation, startDelay: { ...section(emulation.startDelay), ...startDelay } };
  }
  return input;
}

function clientOf(cmd: Command): AdminClient {
  const o = cmd.optsWithGlobals<{ api?: string; token?: string }>();
  return new AdminClient({ api: o.api, token: o.token });
}

function parseEnvPairs(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new BatonError('INVALID_REQUEST', `--env ${p}: expected KEY=VALUE`);
    env[p.slice(0, i)] = p.slice(i + 1);
  }
  return env;
}

/** Reads a spec file (YAML or JSON); a relative workdir is relative to the file. */
function readSpecFile(path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new BatonError('INVALID_SPEC', `${path}: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new BatonError('INVALID_SPEC', `${path}: must be a mapping`);
  const spec = { ...(doc as Record<string, unknown>) };
  const base = dirname(resolve(path));
  spec.workdir = typeof spec.workdir === 'string' ? resolve(base, spec.workdir) : (spec.workdir ?? base);
  return spec;
}

function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n');
}

export function buildProgram(): Command {
  const program = new Command('baton')
    .description('Baton: a serverless cluster manager. Register functions; Baton runs, scales and routes them.')
    .option('--api <url>', 'admin API address (env BATON_API, default http://127.0.0.1:9090)')
    .option('--token <token>', 'bearer token for the admin API (env BATON_TOKEN)')
    .showHelpAfterError();

  program
    .command('up')
    .description('start a whole single-machine cluster: control plane, data plane and worker')
    .option('--config <file>', 'YAML config (see docs/configuration.md); flags override it')
    .option('--host <host>', 'address to bind and advertise (default 127.0.0.1)')
    .option('--api-port <port>', 'admin API and control-plane RPC port (default 9090)', int)
    .option('--dataplane-port <port>', 'invocation port, HTTP/1.1 and h2c (default 8080)', int)
    .option('--workers <n>', 'workers to run, each a node with its share of the machine (default 1)', int)
    .option('--emulate <n>', 'emulated workers to run besides them, for scale experiments (default 0)', int)
    .option('--data-dir <dir>', 'where the store and sandbox logs live (default .baton)')
    .addOption(new Option('--log-level <level>', 'log level (default warn)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--demo', 'deploy the demo function "hello"')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ token?: string }>();
      const cfg = compileConfig(
        upSchema,
        {
          logLevel: 'warn',
          ...fileConfig(o.config as string | undefined),
          ...defined({
            host: o.host,
            apiPort: o.apiPort,
            dataplanePort: o.dataplanePort,
            workers: o.workers,
            emulate: o.emulate,
            dataDir: o.dataDir,
            logLevel: o.logLevel,
            token: g.token,
          }),
        },
        (o.config as string | undefined) ?? 'flags',
      );
      await runUp(cfg, o.demo === true);
    });

  program
    .command('controlplane')
    .description('run a control plane')
    .option('--config <file>', 'YAML config')
    .option('--host <host>', 'bind address')
    .option('--api-port <port>', 'admin API and RPC port', int)
    .option('--data-dir <dir>', 'data directory')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const cfg = daemonConfig(controlPlaneSchema, cmd, { host: o.host, apiPort: o.apiPort, dataDir: o.dataDir });
      const cp = await stopOnSignal(
        ControlPlane.create(cfg, {
          // A replica that lost its leadership has stopped; its supervisor starts it again as a follower.
          onFailed: (reason) => {
            process.stderr.write(`control plane stopped: ${reason}\n`);
            process.exit(1);
          },
        }),
        (cp) => cp.stop(),
      );
      process.stdout.write(`control plane: ${cp.url}\n`);
    });

  program
    .command('dataplane')
    .description('run a data plane')
    .option('--config <file>', 'YAML config')
    .option('--host <host>', 'bind address')
    .option('--port <port>', 'invocation port', int)
    .option('--rpc-port <port>', 'internal RPC port', int)
    .option('--control-plane <url>', 'control plane URL')
    .option('--data-dir <dir>', 'data directory: the durable async invocation queue (default .baton, as the other daemons)')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      // The daemon defaults to a data dir, so an accepted async invocation is on
      // disk (the config leaves it unset so that in-process data planes, in
      // tests, do not all lock one file).
      const input = daemonInput(cmd, { host: o.host, port: o.port, rpcPort: o.rpcPort, controlPlaneUrl: o.controlPlane, dataDir: o.dataDir });
      const cfg = compileConfig(dataPlaneSchema, { dataDir: '.baton', ...input }, cmd.opts<{ config?: string }>().config ?? 'flags');
      const dp = await stopOnSignal(DataPlane.create(cfg), (dp) => dp.stop());
      process.stdout.write(`data plane: http://${dp.proxyAddress} (rpc ${dp.rpcAddress})\n`);
    });

  program
    .command('worker')
    .description('run a worker daemon, or with --emulate N, N emulated workers in this process')
    .option('--config <file>', 'YAML config')
    .option('--host <host>', 'bind address')
    .option('--rpc-port <port>', 'internal RPC port (with --emulate: the first of N consecutive ports; default ephemeral)', int)
    .option('--control-plane <url>', 'control plane URL')
    .option('--data-dir <dir>', 'data directory (sandbox logs)')
    .option('--cpu-millis <n>', `CPU to advertise, millicores (default: the machine's; ${EMULATED_NODE_CAPACITY.cpuMillis} per emulated worker)`, int)
    .option('--memory-mb <n>', `memory to advertise, MB (default: the machine's; ${EMULATED_NODE_CAPACITY.memoryMb} per emulated worker)`, int)
    .option('--emulate <n>', 'run N emulated workers (nodes) in this process, offering only the emulated runtime', int)
    .addOption(
      new Option('--start-delay-distribution <d>', 'emulated sandbox start delay distribution (default constant)').choices([
        'constant',
        'uniform',
        'exponential',
        'lognormal',
      ]),
    )
    .option('--start-delay-ms <ms>', 'emulated start delay: constant value, uniform low bound, or mean (default 0)', nonNegative)
    .option('--start-delay-spread-ms <ms>', 'uniform: width above --start-delay-ms; lognormal: standard deviation', nonNegative)
    .option('--start-delay-seed <n>', 'seed of the start delays; emulated worker i uses seed + i - 1 (default 1)', int)
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const input = workerInput(cmd, o);
      if (o.emulate !== undefined) {
        const configs = emulatedWorkerConfigs(input, o.emulate as number, cmd.opts<{ config?: string }>().config ?? 'flags');
        const first = configs[0] as WorkerConfig;
        const began = performance.now();
        const workers = await stopOnSignal(startEmulatedWorkers(configs, createLogger('worker', { level: first.logLevel })), (workers) => stopWorkers(workers));
        const ports = workers.map((w) => w.port);
        process.stdout.write(
          `${workers.length} emulated workers (${first.id} … ${configs[configs.length - 1]?.id ?? ''}) on ${first.host}, ` +
            `RPC ports ${Math.min(...ports)}–${Math.max(...ports)}, ${first.cpuMillis}m CPU and ${first.memoryMb} MB each, ` +
            `started in ${Math.round(performance.now() - began)} ms; they register with ${first.controlPlaneUrl} in the background\n`,
        );
        return;
      }
      const cfg = compileConfig(workerSchema, input, cmd.opts<{ config?: string }>().config ?? 'flags');
      const w = await stopOnSignal(Worker.create(cfg), (w) => w.stop());
      process.stdout.write(`worker ${w.id}: ${w.address}\n`);
    });

  program
    .command('deploy')
    .description(
      'register a function from a spec file (YAML or JSON), or from flags: baton deploy --name NAME -- COMMAND [ARGS…], ' +
        'or baton deploy --name NAME --handler FILE.EXPORT for the node runtime',
    )
    .argument('[file]', 'spec file')
    .argument('[command...]', 'the command, after --')
    .option('--name <name>', 'function name')
    .option('--workdir <dir>', 'working directory (default: the current one, or the spec file’s)')
    .option('--handler <file.export>', 'a Lambda-style handler in the workdir, served by the node runtime')
    .option('--env <KEY=VALUE>', 'environment variable, repeatable', collect)
    .option('--min <n>', 'minScale', int)
    .option('--max <n>', 'maxScale', int)
    .option('--concurrency <n>', 'containerConcurrency (0 = unlimited)', int)
    .option('--timeout-ms <ms>', 'request timeout', int)
    .option('--cpu-millis <n>', 'CPU to reserve, millicores', int)
    .option('--memory-mb <n>', 'memory to reserve, MB', int)
    .action(async (file: string | undefined, command: string[], o: Record<string, unknown>, cmd: Command) => {
      let spec: Record<string, unknown>;
      if (o.name !== undefined) {
        // With --name, every positional word is the command.
        const argv = [file, ...command].filter((a): a is string => a !== undefined);
        spec = { name: o.name, workdir: resolve((o.workdir as string | undefined) ?? process.cwd()) };
        // A handler and a command together are left for the control plane to refuse, naming the field.
        if (argv.length > 0 || o.handler === undefined) spec.command = argv;
      } else if (file) {
        spec = readSpecFile(file);
        if (o.workdir !== undefined) spec.workdir = resolve(o.workdir as string);
      } else {
        throw new BatonError('INVALID_SPEC', 'give a spec file, or --name NAME -- COMMAND');
      }
      if (o.handler !== undefined) {
        spec.handler = o.handler;
        spec.runtime ??= 'node';
      }
      if (o.env) spec.env = { ...(spec.env as Record<string, string> | undefined), ...parseEnvPairs(o.env as string[]) };
      const scaling = defined({ minScale: o.min, maxScale: o.max, containerConcurrency: o.concurrency });
      if (Object.keys(scaling).length > 0) spec.scaling = { ...(spec.scaling as Record<string, unknown> | undefined), ...scaling };
      const resources = defined({ cpuMillis: o.cpuMillis, memoryMb: o.memoryMb });
      if (Object.keys(resources).length > 0) spec.resources = { ...(spec.resources as Record<string, unknown> | undefined), ...resources };
      if (o.timeoutMs !== undefined) spec.timeoutMs = o.timeoutMs;
      if (typeof spec.workdir === 'string' && !isAbsolute(spec.workdir)) spec.workdir = resolve(spec.workdir);
      const res = await clientOf(cmd).call('POST', '/v1/functions', spec);
      process.stdout.write(`deployed ${String(res.name)} (revision ${String(res.revision)})\n`);
    });

  program
    .command('invoke')
    .description('call a function through the data plane and print its answer')
    .argument('<name>', 'function name')
    .option('-d, --data <body>', 'request body (sends a POST)')
    .option('--data-file <file>', 'request body from a file (sends a POST)')
    .option('-X, --method <method>', 'HTTP method')
    .option('--path <path>', 'path inside the function', '/')
    .option('-H, --header <name:value>', 'request header, repeatable', collect)
    .option('-v, --verbose', 'print the status and Baton headers to stderr')
    .action(async (name: string, o: Record<string, unknown>, cmd: Command) => {
      const client = clientOf(cmd);
      const base = await client.dataPlaneUrl();
      const body = o.dataFile ? readFileSync(o.dataFile as string) : (o.data as string | undefined);
      const headers = headerMap(o.header as string[] | undefined);
      const path = String(o.path).startsWith('/') ? String(o.path) : `/${String(o.path)}`;
      const method = (o.method as string | undefined) ?? (body === undefined ? 'GET' : 'POST');
      let res;
      try {
        res = await request(`${base}/fn/${encodeURIComponent(name)}${path}`, { method: method as 'GET', headers, body });
      } catch (err) {
        throw new BatonError('PEER_UNAVAILABLE', `cannot reach the data plane at ${base}: ${(err as Error).message}`);
      }
      const text = await res.body.text();
      if (o.verbose) {
        process.stderr.write(
          `HTTP ${res.statusCode}  sandbox=${String(res.headers['x-baton-sandbox'] ?? '-')}  queue-ms=${String(res.headers['x-baton-queue-ms'] ?? '-')}\n`,
        );
      }
      if (res.statusCode >= 400) {
        let err: { code?: string; message?: string } = {};
        try {
          err = JSON.parse(text) as typeof err;
        } catch {
          /* not a Baton error body: print it as is */
        }
        process.stderr.write(err.code ? `error: ${err.code}: ${err.message ?? ''}\n` : `error: HTTP ${res.statusCode}: ${text}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(text);
    });

  program
    .command('list')
    .description('list functions')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const { functions } = await clientOf(cmd).call<{ functions: Record<string, unknown>[] }>('GET', '/v1/functions');
      if (o.json) {
        process.stdout.write(JSON.stringify(functions, null, 2) + '\n');
        return;
      }
      printTable([
        ['NAME', 'RUNTIME', 'READY', 'DESIRED', 'CONDITION'],
        ...functions.map((f) => [String(f.name), String(f.runtime), String(f.readySandboxes), String(f.desiredScale), typeof f.condition === 'string' ? f.condition : '-']),
      ]);
    });

  program
    .command('describe')
    .description('show a function with its spec, status and sandboxes')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const fn = await clientOf(cmd).call('GET', `/v1/functions/${encodeURIComponent(name)}`);
      process.stdout.write(o.json ? JSON.stringify(fn, null, 2) + '\n' : toYaml(fn));
    });

  program
    .command('scale')
    .description('change scaling settings or the load-balancing policy in place; nothing restarts')
    .argument('<name>')
    .option('--min <n>', 'minScale', int)
    .option('--max <n>', 'maxScale (0 = unlimited)', int)
    .option('--concurrency <n>', 'containerConcurrency', int)
    .option('--set <key=value>', 'any scaling setting, e.g. stableWindowSec=30; repeatable', collect)
    .addOption(new Option('--lb <policy>', "load-balancing policy ('default' for the data plane's)").choices([...LOAD_BALANCING_POLICIES, 'default']))
    .action(async (name: string, o: Record<string, unknown>, cmd: Command) => {
      const scaling: Record<string, unknown> = defined({ minScale: o.min, maxScale: o.max, containerConcurrency: o.concurrency });
      for (const kv of (o.set as string[] | undefined) ?? []) {
        const eq = kv.indexOf('=');
        const value = Number(kv.slice(eq + 1));
        if (eq <= 0 || kv.slice(eq + 1) === '' || !Number.isFinite(value)) throw new BatonError('INVALID_REQUEST', `--set ${kv}: expected key=number`);
        scaling[kv.slice(0, eq)] = value;
      }
      const body: Record<string, unknown> = {};
      if (Object.keys(scaling).length > 0) body.scaling = scaling;
      if (o.lb !== undefined) body.loadBalancing = o.lb === 'default' ? null : o.lb;
      if (Object.keys(body).length === 0) throw new BatonError('INVALID_REQUEST', 'give --min, --max, --concurrency, --set or --lb');
      const fn = await clientOf(cmd).call<{ spec: { scaling: Record<string, unknown>; loadBalancing?: string } }>(
        'PATCH',
        `/v1/functions/${encodeURIComponent(name)}`,
        body,
      );
      const lb = fn.spec.loadBalancing ?? 'data-plane default';
      process.stdout.write(`scaled ${name}: min ${String(fn.spec.scaling.minScale)}, max ${String(fn.spec.scaling.maxScale)}, load balancing ${lb}\n`);
    });

  program
    .command('delete')
    .description('delete a function and its sandboxes')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).call('DELETE', `/v1/functions/${encodeURIComponent(name)}`);
      process.stdout.write(`deleted ${name}\n`);
    });

  const chains = program.command('chains').description('function chains on shared memory (see docs/chains.md)');
  chains
    .command('create')
    .description('register a chain from a spec file (YAML or JSON); relative workdirs are relative to the file')
    .argument('<file>')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const spec = readSpecFile(file);
      const base = dirname(resolve(file));
      if (Array.isArray(spec.members)) {
        spec.members = (spec.members as Record<string, unknown>[]).map((m) => (typeof m.workdir === 'string' ? { ...m, workdir: resolve(base, m.workdir) } : m));
      }
      const res = await clientOf(cmd).call('POST', '/v1/chains', spec);
      process.stdout.write(`created chain ${String(res.name)}: invoke it at /fn/${String(res.name)}/…\n`);
    });
  chains
    .command('ls')
    .description('list chains')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const { chains: list } = await clientOf(cmd).call<{ chains: Record<string, unknown>[] }>('GET', '/v1/chains');
      if (o.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      printTable([
        ['NAME', 'MEMBERS', 'ROUTES', 'ENTRY', 'READY', 'DESIRED'],
        ...list.map((c) => [
          String(c.name),
          (c.members as string[]).join(','),
          (c.routes as string[]).join(',') || '-',
          typeof c.entry === 'string' ? c.entry : '-',
          String(c.readySandboxes),
          String(c.desiredScale),
        ]),
      ]);
    });
  chains
    .command('describe')
    .description('show a chain: its members, routes, pool, status and sandboxes')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const c = await clientOf(cmd).call<Record<string, unknown>>('GET', `/v1/chains/${encodeURIComponent(name)}`);
      // The chain's spec is shown once, as `chain`, not again inside the function's environment.
      const spec = c.spec as { env?: Record<string, string> } | undefined;
      if (spec?.env) delete spec.env[CHAIN_SPEC_ENV];
      process.stdout.write(o.json ? JSON.stringify(c, null, 2) + '\n' : toYaml(c));
    });
  chains
    .command('delete')
    .description('delete a chain and its sandboxes')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).call('DELETE', `/v1/chains/${encodeURIComponent(name)}`);
      process.stdout.write(`deleted chain ${name}\n`);
    });

  program
    .command('workers')
    .description('list workers')
    .action(async (_o: unknown, cmd: Command) => {
      const { workers } = await clientOf(cmd).call<{ workers: Record<string, unknown>[] }>('GET', '/v1/workers');
      printTable([
        ['ID', 'ADDRESS', 'STATUS', 'SANDBOXES', 'CPU RESERVED', 'MEMORY RESERVED'],
        ...workers.map((w) => {
          const cap = w.capacity as { cpuMillis: number; memoryMb: number };
          const res = w.reserved as { cpuMillis: number; memoryMb: number };
          return [
            String(w.id),
            String(w.address),
            String(w.status),
            String(w.sandboxes),
            `${res.cpuMillis}m / ${cap.cpuMillis}m`,
            `${res.memoryMb} / ${cap.memoryMb} MB`,
          ];
        }),
      ]);
    });

  const loadgen = program.command('loadgen').description('load generation: replay traces or send a set rate against a cluster (see docs/loadgen.md)');
  loadgen
    .command('trace')
    .description('replay an Azure Functions trace open-loop: deploy trace-<i> functions, send each invocation on schedule, write a CSV, a summary and an HTML report')
    .requiredOption('--trace <path>', 'the trace: a folder (azure2019) or a CSV file (azure2021)')
    .addOption(new Option('--format <format>', 'trace format').choices(['azure2019', 'azure2021']).default('azure2019'))
    .option('--dataplane <url>', 'data plane to send through (env BATON_DATAPLANE; default: the first the control plane lists)')
    .option('--seed <n>', 'seed of the schedule', int, 42)
    .option('--sample <n>', 'replay N functions chosen by the seed (default all)', int)
    .option('--minutes <from-to>', 'trace minutes to replay, 0-based, TO excluded (default the whole trace)', minuteRange)
    .addOption(new Option('--iat <rule>', 'inter-arrival times within a minute').choices([...IAT_DISTRIBUTIONS]).default('exponential'))
    .option('--warmup-minutes <n>', 'first minutes of the window, replayed but left out of the summary', int, 0)
    .addOption(new Option('--runtime <runtime>', 'runtime of the deployed functions').choices([...TRACE_RUNTIMES]).default('emulated'))
    .option('--time-scale <x>', 'multiply every time and duration by x (test and debugging aid; 0.01 = 100× faster)', positive, 1)
    .option('--out <dir>', 'where to write invocations.csv, summary.json and report.html', 'loadgen-results')
    .option('--keep', 'keep the deployed functions afterwards')
    .option('--emulate-memory', 'with --runtime emulated, make each request hold its drawn memory (x-baton-emulate-mb; off by default, see docs/loadgen.md)')
    .addOption(new Option('--progress <mode>', 'progress on stderr (default: bar on a terminal, else lines)').choices(['bar', 'lines', 'none']))
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ api?: string; token?: string }>();
      const path = o.trace as string;
      const trace = o.format === 'azure2021' ? await readAzure2021File(path) : await readAzure2019Folder(path);
      const schedule = buildSchedule(trace, {
        seed: o.seed as number,
        iat: o.iat as IatDistribution,
        ...(o.sample === undefined ? {} : { sampleFunctions: o.sample as number }),
        ...(o.minutes === undefined ? {} : { minutes: o.minutes as { from: number; to: number } }),
        warmupMinutes: o.warmupMinutes as number,
      });
      const timeScale = o.timeScale as number;
      process.stderr.write(
        `replaying ${schedule.invocations.length} invocations of ${schedule.functions.length} functions over ` +
          `${((schedule.durationMs * timeScale) / 1000).toFixed(1)} s (${schedule.warmupMs / 60_000} warm-up minutes)\n`,
      );
      const api = new AdminClient({ api: g.api, token: g.token });
      const result = await runTrace(schedule, {
        api: api.api,
        token: g.token,
        dataPlane: (o.dataplane as string | undefined) ?? process.env.BATON_DATAPLANE,
        runtime: o.runtime as TraceRuntime,
        timeScale,
        keep: o.keep === true,
        outDir: o.out as string,
        emulateMemory: o.emulateMemory === true,
        ...(o.progress === undefined ? {} : { progress: o.progress as ProgressMode }),
        reportSubtitle: `${path} (${o.format as string}), seed ${o.seed as number}, iat ${o.iat as string}, runtime ${o.runtime as string}, time scale ${timeScale}`,
      });
      process.stdout.write(formatSummary(result.summary));
      process.stdout.write(`\nwrote ${result.csvPath ?? '-'}, ${result.summaryPath ?? '-'} and ${result.reportPath ?? '-'}\n`);
    });

  loadgen
    .command('rps')
    .description('an open-loop constant or stepped rate to one function, or (--cold-sweep) latency against forced cold starts per second')
    .option('--function <name>', 'the function to call (must exist unless --deploy)')
    .option('--deploy', 'deploy --function (default name loadgen-rps) with --runtime first, and delete it afterwards unless --keep')
    .option('--rps <rates>', 'a rate, or comma-separated rates one step each (e.g. 10,50,100)', rateList)
    .option('--rps-start <r>', 'stepped rate: first step', nonNegative)
    .option('--rps-step <r>', 'stepped rate: increment', positive)
    .option('--rps-end <r>', 'stepped rate: last step (included)', nonNegative)
    .option('--step-seconds <s>', `length of each step (default ${RPS_DEFAULTS.stepSeconds}, or --duration split over the steps)`, positive)
    .option('--duration <s>', 'length of the whole run, seconds', positive)
    .addOption(new Option('--iat <rule>', 'inter-arrival times within a step').choices([...IAT_DISTRIBUTIONS]).default(RPS_DEFAULTS.iat))
    .option('--seed <n>', 'seed of the arrivals', int, RPS_DEFAULTS.seed)
    .option('-X, --method <method>', 'HTTP method (default GET, POST with a body)')
    .option('--path <path>', 'path inside the function', '/')
    .option('--body <string>', 'request body')
    .option('--body-file <file>', 'request body from a file')
    .option('-H, --header <name:value>', 'request header, repeatable', collect)
    .addOption(new Option('--runtime <runtime>', 'runtime of deployed functions (--deploy, --cold-sweep)').choices([...TRACE_RUNTIMES]).default('emulated'))
    .option('--cold-sweep', 'cold-start sweep: --rps are cold starts per second; every call hits a function at zero')
    .option('--cooldown <s>', 'cold sweep: seconds between two calls of one function (default stable window + grace + --cooldown-margin)', positive)
    .option('--cooldown-margin <s>', 'cold sweep: margin for reports, ticks and the drain', nonNegative)
    .option('--stable-window <s>', 'cold sweep: the functions\' stableWindowSec (≥ 6)', int)
    .option('--saturation-cold-fraction <x>', 'cold sweep: saturated when achieved cold starts/s < x × target', positive)
    .option('--saturation-p99-multiple <x>', "cold sweep: saturated when p99 > x × the lowest rate's p99", positive)
    .option('--dataplane <url>', 'data plane to send through (env BATON_DATAPLANE; default: the first the control plane lists)')
    .option('--out <dir>', 'where to write invocations.csv and summary.json', 'loadgen-results')
    .option('--keep', 'keep a function deployed with --deploy')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ api?: string; token?: string }>();
      const rates = rateSteps({
        rps: o.rps as number[] | undefined,
        rpsStart: o.rpsStart as number | undefined,
        rpsStep: o.rpsStep as number | undefined,
        rpsEnd: o.rpsEnd as number | undefined,
      });
      const stepMs = stepLengthMs(rates.length, { stepSeconds: o.stepSeconds as number | undefined, durationSeconds: o.duration as number | undefined });
      if (o.body !== undefined && o.bodyFile !== undefined) throw new BatonError('CONFIG_INVALID', 'give --body or --body-file, not both');
      const request: RpsRequest = {
        method: o.method as string | undefined,
        path: o.path as string,
        headers: headerMap(o.header as string[] | undefined),
        body: o.bodyFile !== undefined ? readBody(o.bodyFile as string) : (o.body as string | undefined),
      };
      const common = {
        api: new AdminClient({ api: g.api, token: g.token }).api,
        token: g.token,
        dataPlane: (o.dataplane as string | undefined) ?? process.env.BATON_DATAPLANE,
        runtime: o.runtime as TraceRuntime,
        request,
        outDir: o.out as string,
      };
      const total = ((rates.length * stepMs) / 1000).toFixed(1);
      if (o.coldSweep) {
        if (o.function !== undefined || o.deploy) throw new BatonError('CONFIG_INVALID', '--cold-sweep deploys its own functions: leave out --function and --deploy');
        if (o.iat !== RPS_DEFAULTS.iat) throw new BatonError('CONFIG_INVALID', '--cold-sweep calls at a constant rate, so each function waits its cooldown: leave out --iat');
        process.stderr.write(`cold-start sweep over ${rates.join(', ')} cold starts/s, ${stepMs / 1000} s each (${total} s of load)\n`);
        const result = await runColdSweep({
          ...common,
          rates,
          stepMs,
          scaling: o.stableWindow === undefined ? undefined : { stableWindowSec: o.stableWindow as number },
          cooldownSec: o.cooldown as number | undefined,
          cooldownMarginSec: o.cooldownMargin as number | undefined,
          saturationColdFraction: o.saturationColdFraction as number | undefined,
          saturationP99Multiple: o.saturationP99Multiple as number | undefined,
        });
        process.stdout.write(formatColdSweep(result));
        process.stdout.write(`\nwrote ${result.csvPath ?? '-'} and ${result.summaryPath ?? '-'}\n`);
        return;
      }
      const name = (o.function as string | undefined) ?? (o.deploy ? 'loadgen-rps' : undefined);
      if (name === undefined) throw new BatonError('CONFIG_INVALID', 'give --function NAME (an existing function), --deploy, or --cold-sweep');
      process.stderr.write(`sending ${rates.join(', ')} req/s to ${name}, ${stepMs / 1000} s per step (${total} s)\n`);
      const result = await runRps({
        ...common,
        function: name,
        deploy: o.deploy === true,
        keep: o.keep === true,
        rates,
        stepMs,
        iat: o.iat as IatDistribution,
        seed: o.seed as number,
      });
      process.stdout.write(formatRps(result));
      process.stdout.write(`\nwrote ${result.csvPath ?? '-'} and ${result.summaryPath ?? '-'}\n`);
    });

  const bench = program.command('bench').description('benchmarks of a cluster (see docs/benchmarks.md)');
  bench
    .command('scale')
    .description(
      "Kubedirect's scale microbenchmarks on the emulated runtime: time until every sandbox is ready and routable on every data plane, " +
        'stage breakdown, creations per second',
    )
    .addArgument(new Argument('<test>', 'which test').choices([...SCALE_TESTS]))
    .option('--sandboxes <list>', 'scale-sandboxes: sandbox counts, e.g. 100,1000,5000', '100,1000')
    .option('--functions <list>', 'scale-functions: function counts, e.g. 100,1000', '100,1000')
    .option('--nodes <list>', 'scale-nodes: node counts, e.g. 100,500 (with --api: the nodes the cluster has)', '100')
    .option('--per-node <k>', 'scale-nodes: sandboxes per node', int, 10)
    .option('--local', 'start an in-process cluster with emulated nodes (store in a temporary directory) instead of using --api')
    .option('--local-nodes <n>', 'with --local, emulated nodes for scale-sandboxes and scale-functions', int, 20)
    .option('--batch <n>', 'scale-functions: deployments in flight at once; also deletions', int, 50)
    .option('--poll-ms <ms>', 'how often to poll the control plane and the data planes', int, 100)
    .option('--timeout-s <s>', 'per point, for the sandboxes to be ready and visible, and again for them to be gone', positive, 300)
    .addOption(new Option('--log-level <level>', 'with --local, the cluster log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('error'))
    .option('--out <file>', 'also write the points as JSON')
    .action(async (test: ScaleTest, o: Record<string, unknown>, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ api?: string; token?: string }>();
      const list = { 'scale-sandboxes': '--sandboxes', 'scale-functions': '--functions', 'scale-nodes': '--nodes' }[test];
      const sizes = parseSizeList(o[list.slice(2)] as string, list);
      if ((o.perNode as number) < 1) throw new BatonError('INVALID_REQUEST', '--per-node must be at least 1');
      const points = await runScaleBench({
        test,
        sizes,
        perNode: o.perNode as number,
        batch: Math.max(1, o.batch as number),
        api: g.api,
        token: g.token,
        local: o.local === true ? { nodes: Math.max(1, o.localNodes as number), logLevel: o.logLevel as string } : undefined,
        pollMs: Math.max(1, o.pollMs as number),
        timeoutMs: (o.timeoutS as number) * 1000,
        progress: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(formatScaleReport(points));
      if (typeof o.out === 'string') {
        mkdirSync(dirname(resolve(o.out)), { recursive: true });
        writeFileSync(o.out, JSON.stringify({ test, at: new Date().toISOString(), points }, null, 2) + '\n');
        process.stdout.write(`\nwrote ${o.out}\n`);
      }
    });

  return program;
}

/**
 * Stops the daemon on SIGINT, SIGTERM or SIGHUP, and returns `starting`. The
 * handlers go in before the start finishes: a signal during the start (a
 * worker sweeping what its killed predecessor left, say) waits for it, then
 * stops cleanly, where the default action would kill the process mid-start
 * and leave that behind.
 */
function stopOnSignal<T>(starting: Promise<T>, stop: (started: T) => Promise<void>): Promise<T> {
  let stopping = false;
  const handler = (): void => {
    if (stopping) return;
    stopping = true;
    starting.then(stop).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, handler);
  return starting;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    const e = toBatonError(err);
    process.stderr.write(`error: ${e.code}: ${e.message}\n`);
    process.exit(1);
  });
