// Where a message goes next: a pure policy over the chain's spec and the
// slot header's routing words. Node 0 is the gateway; members are 1..N in
// spec order (SPRIGHT's node ids, reference/spright-kubedirect.md §1.3).
//
// - Static: the gateway picks a route by the path's first segment or a
//   header; each member's hop advances along the route's sequence, and after
//   the last one the message goes back to the gateway.
// - Dynamic: the gateway sends to the entry member; a member returns
//   `{ next: 'name' }` to pass the message on, or calls another member
//   RPC-style (`await msg.call('name')`, which pushes it on the slot's call
//   stack); a member that returns nothing hands the message back to its
//   caller, or to the gateway when the stack is empty.
import type { ChainSpec } from '../shared/chain-spec.js';
import { MAX_CALL_DEPTH, W_DEPTH, W_HOP, W_RETURN, W_ROUTE, W_STACK } from './message.js';

export const GATEWAY_NODE = 0;

export interface ChainPlan {
  readonly names: readonly string[];
  /** Routes as node ids, in spec order. */
  readonly routes: readonly (readonly number[])[];
  readonly entry: number | undefined;
}

export function planOf(spec: Pick<ChainSpec, 'members' | 'routes' | 'entry'>): ChainPlan {
  const names = ['gateway', ...spec.members.map((m) => m.name)];
  const id = (name: string): number => {
    const i = names.indexOf(name);
    if (i <= 0) throw new RangeError(`"${name}" is not a member`);
    return i;
  };
  return {
    names,
    routes: spec.routes.map((r) => r.sequence.map(id)),
    entry: spec.entry === undefined ? undefined : id(spec.entry),
  };
}

/** A member's node id, or undefined when the name is not a member of this chain (the gateway cannot be named). */
export function nodeOf(plan: ChainPlan, name: string): number | undefined {
  const i = plan.names.indexOf(name);
  return i > 0 ? i : undefined;
}

/**
 * The route of a request: the first static route whose path segment or
 * header matches, else dynamic routing from the entry member; undefined when
 * the chain has neither for it.
 */
export function selectRoute(
  spec: Pick<ChainSpec, 'routes'>,
  plan: ChainPlan,
  path: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
): { route: number; first: number } | undefined {
  const segment = firstSegment(path);
  for (let i = 0; i < spec.routes.length; i++) {
    const r = spec.routes[i];
    if (!r) continue;
    const byPath = r.path !== undefined && r.path === segment;
    const byHeader = r.header !== undefined && headers[r.header.name] === r.header.value;
    if (byPath || byHeader) return { route: i, first: plan.routes[i]?.[0] ?? GATEWAY_NODE };
  }
  return plan.entry === undefined ? undefined : { route: -1, first: plan.entry };
}

function firstSegment(path: string): string {
  const start = path.startsWith('/') ? 1 : 0;
  const q = path.indexOf('?');
  const end = q < 0 ? path.length : q;
  const slash = path.indexOf('/', start);
  return path.slice(start, slash < 0 || slash > end ? end : slash);
}

/**
 * Where a message goes when a member is done with it and named no next hop:
 * its caller when it was called (the caller is popped and the message marked
 * as a return), else the next member of its static route, else the gateway.
 */
export function finishHop(plan: ChainPlan, h: Int32Array): number {
  const depth = h[W_DEPTH] ?? 0;
  if (depth > 0) {
    h[W_DEPTH] = depth - 1;
    h[W_RETURN] = 1;
    return h[W_STACK + depth - 1] ?? GATEWAY_NODE;
  }
  const route = h[W_ROUTE] ?? -1;
  if (route < 0) return GATEWAY_NODE;
  const hop = (h[W_HOP] ?? 0) + 1;
  h[W_HOP] = hop;
  return plan.routes[route]?.[hop] ?? GATEWAY_NODE;
}

/** Pushes the caller for an RPC-style call; false when the stack is full. */
export function pushCaller(h: Int32Array, caller: number): boolean {
  const depth = h[W_DEPTH] ?? 0;
  if (depth >= MAX_CALL_DEPTH) return false;
  h[W_STACK + depth] = caller;
  h[W_DEPTH] = depth + 1;
  return true;
}
