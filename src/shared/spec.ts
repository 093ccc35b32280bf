// The function spec (v1): its schema, its defaults, and its conversion to the
// protobuf FunctionSpec that data planes and workers receive.
//
// Defaults follow Dirigent's NewDefaultAutoscalingMetadata and Knative's
// config-autoscaler (reference/dirigent.md §2, §4; workload-peers.md §3):
// concurrency 1 and utilisation 100 % as Dirigent runs its experiments,
// stable 60 s, panic 6 s, panic threshold 200 %, up ×1000, down ÷2, and
// Knative's 30 s scale-to-zero grace. maxScale 0 means unlimited, as
// Knative's max-scale.
import { z } from 'zod';
import { create } from '@bufbuild/protobuf';
import { FunctionSpecSchema, type FunctionSpec as FunctionSpecMessage } from '../gen/baton/v1/common_pb.js';
import { BatonError } from './errors.js';

/**
 * Sandbox runtimes (docs/runtimes.md): `process` runs the command as a plain
 * process; `oci` runs it in a runc container; `node` serves a Lambda-style
 * handler from a pre-booted Node process; `emulated` has no process at all;
 * `chain` runs a function chain's gateway and members in one process
 * (docs/chains.md), and is registered through /v1/chains.
 */
export const RUNTIMES = ['process', 'oci', 'node', 'emulated', 'chain'] as const;
export type RuntimeName = (typeof RUNTIMES)[number];

export function isRuntimeName(name: string): name is RuntimeName {
  return (RUNTIMES as readonly string[]).includes(name);
}

/** How an `oci` sandbox is networked: the host's stack on an allocated port, or its own namespace behind DNAT. */
export const NETWORK_MODES = ['host', 'isolated'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** Directories whose contents are the host's own state: never bound into an oci sandbox as its function directory. */
const HOST_STATE_DIRS = ['/proc', '/sys', '/dev', '/run', '/boot', '/var/run'];

/** `file.export`: a module path relative to the function's directory, and the name it exports. */
const HANDLER = /^[A-Za-z0-9_@][A-Za-z0-9_./@-]*\.[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * The data plane's load-balancing policies (reference/dirigent.md §3, fixed):
 * a function may name one; otherwise the data plane's default applies.
 */
export const LOAD_BALANCING_POLICIES = ['random', 'round-robin', 'least-inflight', 'power-of-two', 'knative'] as const;
export type LoadBalancingPolicyName = (typeof LOAD_BALANCING_POLICIES)[number];

export function isLoadBalancingPolicyName(name: string): name is LoadBalancingPolicyName {
  return (LOAD_BALANCING_POLICIES as readonly string[]).includes(name);
}

export const SCALING_DEFAULTS = Object.freeze({
  minScale: 0,
  maxScale: 0,
  containerConcurrency: 1,
  targetUtilizationPct: 100,
  stableWindowSec: 60,
  panicWindowSec: 6,
  panicThresholdPct: 200,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleToZeroGraceSec: 30,
});

export const RESOURCE_DEFAULTS = Object.freeze({ cpuMillis: 100, memoryMb: 128 });

/** Knative's revision timeout is 300 s; a minute suits interactive functions and is easy to raise. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** The environment variable that carries a chain's spec (JSON) to its gateway process (shared/chain-spec.ts). */
export const CHAIN_SPEC_ENV = 'BATON_CHAIN_SPEC';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const count = (max: number) => z.number().int().min(0).max(max);

export const scalingSchema = z
  .object({
    minScale: count(100_000),
    maxScale: count(100_000),
    containerConcurrency: count(10_000),
    targetUtilizationPct: z.number().int().min(1).max(100),
    stableWindowSec: z.number().int().min(6).max(3600),
    panicWindowSec: z.number().int().min(1).max(3600),
    panicThresholdPct: z.number().int().min(110).max(1000),
    maxScaleUpRate: z.number().gt(1).max(100_000),
    maxScaleDownRate: z.number().gt(1).max(100_000),
    scaleToZeroGraceSec: z.number().int().min(0).max(3600),
  })
  .strict();

export type ScalingSettings = z.infer<typeof scalingSchema>;

const resourcesSchema = z
  .object({
    cpuMillis: z.number().int().min(1).max(1_000_000),
    memoryMb: z.number().int().min(1).max(10_000_000),
  })
  .strict();

export const functionSpecSchema = z
  .object({
    name: z.string().regex(DNS_LABEL, 'must be a DNS label: lower-case letters, digits and "-", at most 63'),
    runtime: z.enum(RUNTIMES).default('process'),
    /** The program and its arguments: for `process` and `oci`. */
    command: z.array(z.string().min(1)).min(1, 'must name a program').optional(),
    /** `file.export` in workdir: for `node`. */
    handler: z
      .string()
      .regex(HANDLER, 'must be "file.export", the file relative to workdir (e.g. "index.handler")')
      .refine((h) => !h.split('/').includes('..'), 'must stay inside workdir')
      .optional(),
    /** For `oci`: `isolated` (default) or `host`. */
    network: z.enum(NETWORK_MODES).optional(),
    /** For `emulated`: how long a request is held when it does not say (x-baton-emulate-ms). */
    emulation: z.object({ durationMs: z.number().int().min(0).max(3_600_000) }).strict().optional(),
    workdir: z
      .string()
      .refine((p) => p.startsWith('/'), 'must be an absolute path')
      .optional(),
    env: z
      .record(z.string().regex(ENV_NAME, 'environment names are letters, digits and "_"'), z.string())
      .default({}),
    resources: resourcesSchema.partial().default({}),
    scaling: scalingSchema.partial().default({}),
    timeoutMs: z.number().int().min(1).max(3_600_000).default(DEFAULT_TIMEOUT_MS),
    /** The data planes' policy for this function; unset means each data plane's default. */
    loadBalancing: z.enum(LOAD_BALANCING_POLICIES).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const issue = (path: string, message: string): void => void ctx.addIssue({ code: 'custom', path: [path], message });
    const needsCommand = v.runtime === 'process' || v.runtime === 'oci';
    if (needsCommand && !v.command) issue('command', `is required for runtime "${v.runtime}"`);
    if (v.runtime === 'node') {
      if (!v.handler) issue('handler', 'is required for runtime "node" ("file.export")');
      else if (!v.workdir) issue('workdir', 'is required for runtime "node": the directory the handler file is in');
      if (v.command) issue('command', 'is not used by runtime "node": name a handler instead');
    } else if (v.handler) {
      issue('handler', 'is only for runtime "node"');
    }
    if (v.network && v.runtime !== 'oci') issue('network', 'is only for runtime "oci"');
    const workdir = v.workdir;
    if (v.runtime === 'oci' && workdir !== undefined && HOST_STATE_DIRS.some((d) => workdir === d || workdir.startsWith(`${d}/`) || d.startsWith(`${workdir.replace(/\/+$/, '')}/`))) {
      issue('workdir', 'must not be, or hold, the host\'s system state (/, /proc, /sys, /dev, /run, /boot): it is bound into the container');
    }
    if (v.emulation && v.runtime !== 'emulated') issue('emulation', 'is only for runtime "emulated"');
    if (v.runtime === 'chain') {
      if (v.command) issue('command', 'is not used by runtime "chain": its members name handlers');
      if (v.env[CHAIN_SPEC_ENV] === undefined) issue('env', `${CHAIN_SPEC_ENV} is required for runtime "chain": register chains with POST /v1/chains`);
    }
  });

/** A spec as users write it: everything but the name and the runtime's code (command or handler) may be left out. */
export type FunctionSpecInput = z.input<typeof functionSpecSchema>;

/** A spec with every default applied: what the store and the components hold. */
export interface FunctionSpec {
  readonly name: string;
  readonly runtime: RuntimeName;
  /** Empty for runtimes without a command (node, emulated). */
  readonly command: readonly string[];
  /** The function's directory: the working directory, bound read-only into `oci` sandboxes, the handler's home for `node`. */
  readonly workdir?: string | undefined;
  /** `file.export`, for `node`. */
  readonly handler?: string | undefined;
  /** For `oci` (always set for it; `isolated` unless the spec says `host`). */
  readonly network?: NetworkMode | undefined;
  /** For `emulated`: the default time a request is held. */
  readonly emulation?: Readonly<{ durationMs: number }> | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly resources: Readonly<{ cpuMillis: number; memoryMb: number }>;
  readonly scaling: Readonly<ScalingSettings>;
  readonly timeoutMs: number;
  readonly loadBalancing?: LoadBalancingPolicyName | undefined;
}

/** Formats the first zod issue as "field: rule", the field as a dotted path. */
export function describeIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: '', message: 'invalid' };
  const field = issue.path.map(String).join('.');
  return { field, message: field ? `${field}: ${issue.message}` : issue.message };
}

function checkScaling(s: ScalingSettings): void {
  if (s.maxScale !== 0 && s.minScale > s.maxScale) {
    throw new BatonError('INVALID_SPEC', 'scaling.minScale: must not exceed scaling.maxScale', {
      details: { field: 'scaling.minScale' },
    });
  }
  if (s.panicWindowSec > s.stableWindowSec) {
    throw new BatonError('INVALID_SPEC', 'scaling.panicWindowSec: must not exceed scaling.stableWindowSec', {
      details: { field: 'scaling.panicWindowSec' },
    });
  }
}

/** Validates a user's spec and applies every default. Throws INVALID_SPEC naming the field. */
export function parseFunctionSpec(input: unknown): FunctionSpec {
  const parsed = functionSpecSchema.safeParse(input);
  if (!parsed.success) {
    const { field, message } = describeIssue(parsed.error);
    throw new BatonError('INVALID_SPEC', message, { details: { field } });
  }
  const v = parsed.data;
  const spec: FunctionSpec = {
    name: v.name,
    runtime: v.runtime,
    command: v.command ?? [],
    workdir: v.workdir,
    ...(v.handler === undefined ? {} : { handler: v.handler }),
    // An oci sandbox gets its own network unless the spec asks for the host's: on the host's
    // network it shares loopback with the worker's RPC and the admin API (docs/runtimes.md).
    ...(v.runtime === 'oci' ? { network: v.network ?? 'isolated' } : {}),
    ...(v.emulation === undefined ? {} : { emulation: v.emulation }),
    env: v.env,
    resources: { ...RESOURCE_DEFAULTS, ...v.resources },
    scaling: { ...SCALING_DEFAULTS, ...v.scaling },
    timeoutMs: v.timeoutMs,
    ...(v.loadBalancing === undefined ? {} : { loadBalancing: v.loadBalancing }),
  };
  checkScaling(spec.scaling);
  return deepFreeze(spec);
}

/**
 * A spec as a user would write it, to store or show: what parseFunctionSpec
 * reads back to the same spec (a runtime without a command has none).
 */
export function toSpecInput(spec: FunctionSpec): FunctionSpecInput {
  const { command, ...rest } = spec;
  return command.length > 0 ? { ...rest, command: [...command] } : { ...rest };
}

/** The fields a PATCH may change in place: they steer scaling and routing, not the sandboxes. */
const patchSchema = z
  .object({
    scaling: scalingSchema.partial().optional(),
    /** null goes back to the data planes' default. */
    loadBalancing: z.enum(LOAD_BALANCING_POLICIES).nullable().optional(),
  })
  .strict();

/**
 * Applies a PATCH body (`{"scaling": {...}, "loadBalancing": ...}`) to a
 * spec, validating the result. Other fields would need new sandboxes, so
 * they are refused with the field named.
 */
export function patchFunctionSpec(spec: FunctionSpec, patch: unknown): FunctionSpec {
  const parsed = patchSchema.safeParse(patch);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    if (issue?.code === 'unrecognized_keys' && issue.path.length === 0) {
      const key = issue.keys[0] ?? '';
      throw new BatonError('INVALID_SPEC', `${key}: only scaling and loadBalancing can be changed in place`, { details: { field: key } });
    }
    const { field, message } = describeIssue(parsed.error);
    throw new BatonError('INVALID_SPEC', message, { details: { field } });
  }
  const scaling = { ...spec.scaling, ...parsed.data.scaling };
  checkScaling(scaling);
  const { loadBalancing: _old, ...rest } = spec;
  const lb = parsed.data.loadBalancing === undefined ? spec.loadBalancing : (parsed.data.loadBalancing ?? undefined);
  return deepFreeze({ ...rest, scaling, ...(lb === undefined ? {} : { loadBalancing: lb }) });
}

export function toFunctionSpecMessage(spec: FunctionSpec, revision: bigint): FunctionSpecMessage {
  return create(FunctionSpecSchema, {
    name: spec.name,
    runtime: spec.runtime,
    command: [...spec.command],
    workdir: spec.workdir ?? '',
    env: { ...spec.env },
    resources: { ...spec.resources },
    scaling: { ...spec.scaling },
    timeoutMs: spec.timeoutMs,
    revision,
    loadBalancing: spec.loadBalancing ?? '',
    handler: spec.handler ?? '',
    network: spec.network ?? '',
    emulatedDurationMs: spec.emulation?.durationMs ?? 0,
    hasEmulation: spec.emulation !== undefined,
  });
}

/**
 * The inverse of toFunctionSpecMessage, for receivers (data planes, workers).
 * A runtime this build does not know (a newer control plane's) is refused
 * with UNSUPPORTED_RUNTIME rather than guessed at.
 */
export function fromFunctionSpecMessage(m: FunctionSpecMessage): FunctionSpec {
  const runtime = m.runtime === '' ? 'process' : m.runtime;
  if (!isRuntimeName(runtime)) {
    throw new BatonError('UNSUPPORTED_RUNTIME', `function "${m.name}" needs runtime "${runtime}", which this build does not know`);
  }
  return deepFreeze({
    name: m.name,
    runtime,
    command: [...m.command],
    workdir: m.workdir === '' ? undefined : m.workdir,
    ...(m.handler === '' ? {} : { handler: m.handler }),
    ...(runtime === 'oci' ? { network: networkMode(m) } : {}),
    ...(m.hasEmulation ? { emulation: { durationMs: m.emulatedDurationMs } } : {}),
    env: { ...m.env },
    resources: {
      cpuMillis: m.resources?.cpuMillis ?? RESOURCE_DEFAULTS.cpuMillis,
      memoryMb: m.resources?.memoryMb ?? RESOURCE_DEFAULTS.memoryMb,
    },
    scaling: m.scaling
      ? {
          minScale: m.scaling.minScale,
          maxScale: m.scaling.maxScale,
          containerConcurrency: m.scaling.containerConcurrency,
          targetUtilizationPct: m.scaling.targetUtilizationPct,
          stableWindowSec: m.scaling.stableWindowSec,
          panicWindowSec: m.scaling.panicWindowSec,
          panicThresholdPct: m.scaling.panicThresholdPct,
          maxScaleUpRate: m.scaling.maxScaleUpRate,
          maxScaleDownRate: m.scaling.maxScaleDownRate,
          scaleToZeroGraceSec: m.scaling.scaleToZeroGraceSec,
        }
      : { ...SCALING_DEFAULTS },
    timeoutMs: m.timeoutMs || DEFAULT_TIMEOUT_MS,
    ...(isLoadBalancingPolicyName(m.loadBalancing) ? { loadBalancing: m.loadBalancing } : {}),
  });
}

/** An oci spec's network from the wire: empty is the default, an unknown mode is refused rather than run on the host's. */
function networkMode(m: FunctionSpecMessage): NetworkMode {
  if (m.network === '') return 'isolated';
  if ((NETWORK_MODES as readonly string[]).includes(m.network)) return m.network as NetworkMode;
  throw new BatonError('INVALID_SPEC', `function "${m.name}": network "${m.network}" is not known to this build`, { details: { field: 'network' } });
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
