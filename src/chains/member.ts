// One member of a chain, whatever runs it: loads the member's handler
// (`file.export`, as the `node` runtime does) and serves the descriptors sent
// to its node. For each one it builds a ChainMessage over the slot, runs the
// handler, and sends the descriptor on (routing.ts). Handlers are async and
// run concurrently. A worker thread (member-thread.ts, the in-process
// transport) or a child process (member-process.ts, the cross-process one)
// runs it; `hooks` are where the cross-process transport brings a slot in
// and publishes it.
//
// A handler that throws fails only its request: the error goes to its caller
// (whose `msg.call` rejects) or to the gateway (a 502). A member that dies
// (process.exit in a handler, an uncaught error) is noticed by the gateway
// (chain.ts), which answers 502 for the requests it held and starts another.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BatonError, toBatonError } from '../shared/errors.js';
import { ChainCallError, ChainMessage, errorOf, MAX_HOPS, setError, W_DEPTH, W_ERROR, W_HOPS, W_OWNER, W_RETURN, W_ROUTE } from './message.js';
import { finishHop, GATEWAY_NODE, nodeOf, pushCaller, type ChainPlan } from './routing.js';
import type { ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';
import type { ChainTransport } from './transport.js';

/** What the gateway tells a member about itself. */
export interface MemberIdentity {
  readonly node: number;
  readonly plan: ChainPlan;
  readonly chain: string;
  readonly handler: string;
  readonly workdir: string;
}

/** Messages from the gateway: cancel the pending calls of slots whose request failed elsewhere. */
export type ToMember = { type: 'cancel'; descriptors: Descriptor[] };
export type FromMember = { type: 'ready' } | { type: 'failed'; message: string };

/** What a handler may return: nothing (go on), or the next member to hand the message to. */
export type HandlerResult = void | undefined | { next: string };
type Handler = (msg: ChainMessage) => HandlerResult | Promise<HandlerResult>;

export interface MemberHooks {
  /** A descriptor arrived: bring its slot into `memory` before it is checked. */
  received?(d: Descriptor): void;
  /** A descriptor is about to leave for node `to`: publish its slot. */
  sending?(d: Descriptor, to: number): void;
  /** This node's load counters changed: publish them. */
  countersChanged?(): void;
}

export interface RunningMember {
  cancel(m: ToMember): void;
}

/** Loads the handler, then serves the node's descriptors; `report` says ready or failed. */
export function runMember(
  data: MemberIdentity,
  memory: ChainMemory,
  transport: ChainTransport,
  hooks: MemberHooks,
  report: (m: FromMember) => void,
): RunningMember {
  const memberName = data.plan.names[data.node] ?? `node ${data.node}`;
  /** Calls waiting for their callee, by slot. */
  const pending = new Map<number, { generation: number; member: string; resolve: () => void; reject: (err: Error) => void }>();

  function send(d: Descriptor, to: number): void {
    const h = memory.header(d.slot);
    const hops = (h[W_HOPS] ?? 0) + 1;
    h[W_HOPS] = hops;
    if (hops > MAX_HOPS && to !== GATEWAY_NODE) {
      setError(memory, d.slot, 'CHAIN_MEMBER_FAILED', `the request made more than ${MAX_HOPS} hops: the chain loops`);
      hooks.sending?.(d, GATEWAY_NODE);
      transport.send(d, GATEWAY_NODE);
      return;
    }
    hooks.sending?.(d, to);
    transport.send(d, to);
  }

  function call(msg: ChainMessage, member: string): Promise<void> {
    const d = msg.descriptor;
    const to = nodeOf(data.plan, member);
    if (to === undefined) return Promise.reject(unknownMember(member));
    if (!pushCaller(memory.header(d.slot), data.node)) {
      return Promise.reject(new BatonError('CHAIN_MEMBER_FAILED', `${memberName} cannot call ${member}: the call stack is full`));
    }
    return new Promise<void>((resolve, reject) => {
      pending.set(d.slot, { generation: d.generation, member, resolve, reject });
      send(d, to);
    });
  }

  function unknownMember(name: string): BatonError {
    return new BatonError('CHAIN_UNKNOWN_MEMBER', `${memberName} named "${name}", which is not a member of chain ${data.chain} (members: ${data.plan.names.slice(1).join(', ')})`);
  }

  /** A handler's failure goes to its caller, else to the gateway. */
  function fail(d: Descriptor, err: unknown): void {
    if (!memory.isCurrent(d)) return;
    const e = toBatonError(err);
    const code = e.code === 'INTERNAL' ? 'CHAIN_MEMBER_FAILED' : e.code;
    setError(memory, d.slot, code, e instanceof ChainCallError || e.code !== 'INTERNAL' ? e.message : `${memberName} threw: ${(err as Error)?.message ?? String(err)}`);
    const h = memory.header(d.slot);
    // Back to a waiting caller (its msg.call rejects), never on along the static route.
    send(d, (h[W_DEPTH] ?? 0) > 0 ? finishHop(data.plan, h) : GATEWAY_NODE);
  }

  async function serve(handler: Handler, d: Descriptor): Promise<void> {
    memory.started(data.node);
    hooks.countersChanged?.();
    let result: HandlerResult;
    try {
      result = await handler(new ChainMessage(memory, d, call));
    } catch (err) {
      memory.finished(data.node, false);
      hooks.countersChanged?.();
      fail(d, err);
      return;
    }
    memory.finished(data.node, true);
    hooks.countersChanged?.();
    // The request may have failed elsewhere meanwhile (a callee's thread died): its slot is no longer ours.
    if (!memory.isCurrent(d)) return;
    const h = memory.header(d.slot);
    if (result && typeof result === 'object' && typeof result.next === 'string') {
      const to = nodeOf(data.plan, result.next);
      if (to === undefined) return fail(d, unknownMember(result.next));
      // Naming the next hop leaves the static route: from here the members route.
      h[W_ROUTE] = -1;
      send(d, to);
      return;
    }
    send(d, finishHop(data.plan, h));
  }

  function receive(handler: Handler, d: Descriptor): void {
    try {
      hooks.received?.(d);
      memory.check(d);
    } catch (err) {
      console.error(`chain ${data.chain}, member ${memberName}: dropped a descriptor:`, (err as Error).message);
      return;
    }
    const h = memory.header(d.slot);
    h[W_OWNER] = data.node;
    if (h[W_RETURN] === 1) {
      h[W_RETURN] = 0;
      const p = pending.get(d.slot);
      if (!p || p.generation !== d.generation) {
        // The caller that made this call is gone (its thread was replaced): the request cannot continue.
        setError(memory, d.slot, 'CHAIN_MEMBER_FAILED', `${memberName} was restarted while it waited for a call`);
        send(d, GATEWAY_NODE);
        return;
      }
      pending.delete(d.slot);
      const err = errorOf(memory, d.slot);
      if (err) {
        h[W_ERROR] = 0;
        p.reject(new ChainCallError(p.member, err));
      } else {
        p.resolve();
      }
      return;
    }
    void serve(handler, d);
  }

  /** Loads `file.export` from the member's directory, finding the file as the `node` runtime does (.js, .mjs, .cjs, then the exact name). */
  async function loadHandler(): Promise<Handler> {
    const dot = data.handler.lastIndexOf('.');
    const file = data.handler.slice(0, dot);
    const exportName = data.handler.slice(dot + 1);
    const name = [`${file}.js`, `${file}.mjs`, `${file}.cjs`, file].find((n) => statSync(join(data.workdir, n), { throwIfNoEntry: false })?.isFile());
    if (!name) throw new Error(`handler "${data.handler}": no ${file}.js, .mjs, .cjs or ${file} in ${data.workdir}`);
    const namespace = (await import(pathToFileURL(join(data.workdir, name)).href)) as Record<string, unknown>;
    let value = namespace[exportName];
    if (value === undefined && namespace.default && typeof namespace.default === 'object') value = (namespace.default as Record<string, unknown>)[exportName];
    if (typeof value !== 'function') throw new Error(`handler "${data.handler}": export "${exportName}" of ${name} is not a function`);
    return value as Handler;
  }

  loadHandler().then(
    (handler) => {
      transport.onReceive((d) => receive(handler, d));
      report({ type: 'ready' });
    },
    (err: unknown) => report({ type: 'failed', message: (err as Error).message }),
  );
  return {
    cancel(m: ToMember): void {
      for (const d of m.descriptors) {
        const p = pending.get(d.slot);
        if (p && p.generation === d.generation) {
          pending.delete(d.slot);
          p.reject(new BatonError('CHAIN_MEMBER_FAILED', `${p.member} failed: its thread or process died`));
        }
      }
    },
  };
}
