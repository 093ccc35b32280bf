// The chain spec (v1): a gateway and member functions that hand a request to
// each other through shared memory (docs/chains.md). A chain is stored and
// placed as one function of runtime `chain`: its spec travels to the worker
// in that function's environment (CHAIN_SPEC_ENV), where the chain's gateway
// process reads it, so the store, the placement and the data plane need
// nothing new for it.
import { z } from 'zod';
import { BatonError } from './errors.js';
import { CHAIN_SPEC_ENV, describeIssue, scalingSchema } from './spec.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const HANDLER = /^[A-Za-z0-9_@][A-Za-z0-9_./@-]*\.[A-Za-z_$][A-Za-z0-9_$]*$/;
const PATH_SEGMENT = /^[A-Za-z0-9._~-]+$/;

export { CHAIN_SPEC_ENV };

/** The most members a chain may have: node ids are 1..255, the gateway is 0 (SPRIGHT's uint8 node id). */
export const MAX_CHAIN_MEMBERS = 255;

/**
 * Pool defaults: SPRIGHT's slot holds 4 KiB of headers and 64 KiB of body
 * (reference/spright-kubedirect.md §1.1); 256 slots of 64 KiB is 16 MiB per
 * chain sandbox, enough for 256 requests in the chain at once.
 */
export const CHAIN_POOL_DEFAULTS = Object.freeze({ slots: 256, slotBytes: 65_536 });

/** Below this a slot cannot hold a request's metadata area (docs/chains.md, "The slot"). */
export const MIN_SLOT_BYTES = 16_384;

const memberSchema = z
  .object({
    name: z.string().regex(DNS_LABEL, 'must be a DNS label'),
    handler: z
      .string()
      .regex(HANDLER, 'must be "file.export", the file relative to workdir (e.g. "index.handler")')
      .refine((h) => !h.split('/').includes('..'), 'must stay inside workdir'),
    /** Defaults to the chain's workdir. */
    workdir: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
  })
  .strict();

const routeSchema = z
  .object({
    name: z.string().regex(DNS_LABEL, 'must be a DNS label'),
    /** Chosen when the request path's first segment is this (`/fn/<chain>/<path>/...`). */
    path: z.string().regex(PATH_SEGMENT, 'must be one path segment').optional(),
    /** Or when this header has this value. */
    header: z.object({ name: z.string().regex(/^[A-Za-z0-9-]+$/).transform((n) => n.toLowerCase()), value: z.string() }).strict().optional(),
    /** The members the request visits in turn; then the gateway answers. */
    sequence: z.array(z.string()).min(1, 'must name at least one member').max(256),
  })
  .strict();

export const chainSpecSchema = z
  .object({
    name: z.string().regex(DNS_LABEL, 'must be a DNS label: lower-case letters, digits and "-", at most 63'),
    workdir: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
    members: z.array(memberSchema).min(1, 'a chain needs at least one member').max(MAX_CHAIN_MEMBERS),
    routes: z.array(routeSchema).default([]),
    /** Dynamic routing: the member a request goes to when no static route matches; members then name the next hop. */
    entry: z.string().optional(),
    pool: z
      .object({
        slots: z.number().int().min(1).max(65_536).default(CHAIN_POOL_DEFAULTS.slots),
        slotBytes: z.number().int().min(MIN_SLOT_BYTES).max(64 * 1024 * 1024).multipleOf(8).default(CHAIN_POOL_DEFAULTS.slotBytes),
      })
      .strict()
      .default(CHAIN_POOL_DEFAULTS),
    /**
     * How members run: `threads` (one process, zero-copy, the default) or
     * `processes` (one process per member, slots copied through a /dev/shm
     * file: isolated from each other, not zero-copy).
     */
    transport: z.enum(['threads', 'processes']).default('threads'),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    scaling: scalingSchema.partial().default({}),
    timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const issue = (path: (string | number)[], message: string): void => void ctx.addIssue({ code: 'custom', path, message });
    const names = new Set<string>();
    v.members.forEach((m, i) => {
      if (names.has(m.name)) issue(['members', i, 'name'], `"${m.name}" is named twice`);
      names.add(m.name);
      if (!m.workdir && !v.workdir) issue(['members', i, 'workdir'], 'is required when the chain has no workdir');
    });
    const routeNames = new Set<string>();
    v.routes.forEach((r, i) => {
      if (routeNames.has(r.name)) issue(['routes', i, 'name'], `"${r.name}" is named twice`);
      routeNames.add(r.name);
      if (!r.path && !r.header) issue(['routes', i], 'needs a path or a header to be chosen by');
      r.sequence.forEach((s, j) => {
        if (!names.has(s)) issue(['routes', i, 'sequence', j], `"${s}" is not a member of the chain`);
      });
    });
    if (v.entry !== undefined && !names.has(v.entry)) issue(['entry'], `"${v.entry}" is not a member of the chain`);
    if (v.routes.length === 0 && v.entry === undefined) issue(['routes'], 'a chain needs static routes, an entry member for dynamic routing, or both');
  });

export type ChainSpecInput = z.input<typeof chainSpecSchema>;
export type ChainSpec = Readonly<z.output<typeof chainSpecSchema>>;

/** Validates a chain spec and applies the defaults. Throws INVALID_SPEC naming the field. */
export function parseChainSpec(input: unknown): ChainSpec {
  const parsed = chainSpecSchema.safeParse(input);
  if (!parsed.success) {
    const { field, message } = describeIssue(parsed.error);
    throw new BatonError('INVALID_SPEC', message, { details: { field } });
  }
  return parsed.data;
}

/** The spec of the function a chain runs as: one sandbox of runtime `chain` holds the gateway and every member. */
export function chainFunctionInput(chain: ChainSpec): Record<string, unknown> {
  return {
    name: chain.name,
    runtime: 'chain',
    ...(chain.workdir ? { workdir: chain.workdir } : {}),
    env: { ...chain.env, [CHAIN_SPEC_ENV]: JSON.stringify(chain) },
    // The gateway takes requests concurrently up to its pool: the pool, not the data plane, is the limit (a full pool is a 503).
    scaling: { containerConcurrency: 0, ...chain.scaling },
    ...(chain.timeoutMs === undefined ? {} : { timeoutMs: chain.timeoutMs }),
  };
}

/** The chain a function of runtime `chain` runs, read back from its environment. */
export function chainOfFunction(env: Readonly<Record<string, string>>): ChainSpec {
  const raw = env[CHAIN_SPEC_ENV];
  if (raw === undefined) throw new BatonError('INVALID_SPEC', `env.${CHAIN_SPEC_ENV}: is required for runtime "chain" (register chains with POST /v1/chains)`, { details: { field: `env.${CHAIN_SPEC_ENV}` } });
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new BatonError('INVALID_SPEC', `env.${CHAIN_SPEC_ENV}: is not JSON`, { details: { field: `env.${CHAIN_SPEC_ENV}` } });
  }
  return parseChainSpec(json);
}
