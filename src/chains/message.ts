// The message in a slot, and the typed view a member's handler gets of it.
//
// A slot's data area (after the pool's 128-byte header) holds, at fixed
// offsets: the request's metadata (method, target, headers as JSON, written
// once by the gateway), the response headers a member set (JSON), and the
// body, which members read in place and replace in place. The routing state
// (route, hop, RPC call stack, status, error) is in the slot header words
// the pool leaves to this layer, so a hop moves only a descriptor.
//
// Like SPRIGHT's `struct http_transaction` (reference/spright-kubedirect.md
// §1.1): a flat, pre-allocated record; nothing is serialised between nodes.
import { BatonError, type ErrorCode } from '../shared/errors.js';
import { SLOT_HEADER_FIRST_FREE_WORD, type ChainMemory } from './shm/pool.js';
import type { Descriptor } from './shm/ring.js';

// Header words (after the pool's own).
const W = SLOT_HEADER_FIRST_FREE_WORD;
export const W_ROUTE = W; // static route index, or -1 for dynamic routing
export const W_HOP = W + 1; // position in the static route
export const W_DEPTH = W + 2; // call-stack depth
export const W_STACK = W + 3; // MAX_CALL_DEPTH words: the callers' node ids
export const MAX_CALL_DEPTH = 8;
export const W_META_LEN = W_STACK + MAX_CALL_DEPTH;
export const W_BODY_LEN = W_META_LEN + 1;
export const W_STATUS = W_BODY_LEN + 1;
export const W_ERROR = W_STATUS + 1; // 0, or an ERROR_KINDS index + 1
export const W_RETURN = W_ERROR + 1; // 1 when this hop is a callee returning to its caller
export const W_RES_META_LEN = W_RETURN + 1;
export const W_OWNER = W_RES_META_LEN + 1; // the node that last took the slot off its ring
export const W_HOPS = W_OWNER + 1; // hops so far, to stop a loop

/** A request may not make more hops than this: a chain that loops answers 502 instead of holding a slot forever. */
export const MAX_HOPS = 1024;

/** The error codes a message can carry back to the gateway. */
export const ERROR_KINDS: readonly ErrorCode[] = ['CHAIN_MEMBER_FAILED', 'CHAIN_UNKNOWN_MEMBER', 'CHAIN_STALE_DESCRIPTOR', 'BODY_TOO_LARGE'];

/** Data-area offsets: request metadata, then response headers, then the body. */
export const REQUEST_META_BYTES = 6144;
export const RESPONSE_META_BYTES = 2048;
export const BODY_OFFSET = REQUEST_META_BYTES + RESPONSE_META_BYTES;

export interface RequestMeta {
  readonly method: string;
  /** Path and query, as the gateway received them (the data plane has already removed `/fn/<chain>`). */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Writes an error into the message: the gateway answers with its code, and the body says why. */
export function setError(memory: ChainMemory, slot: number, code: ErrorCode, message: string): void {
  const h = memory.header(slot);
  const kind = ERROR_KINDS.indexOf(code);
  h[W_ERROR] = (kind < 0 ? 0 : kind) + 1;
  const data = memory.data(slot);
  const text = message.slice(0, 1024);
  h[W_BODY_LEN] = data.write(text, BODY_OFFSET, 'utf8');
}

/** The error a message carries, if any. */
export function errorOf(memory: ChainMemory, slot: number): BatonError | undefined {
  const h = memory.header(slot);
  const kind = h[W_ERROR] ?? 0;
  if (kind === 0) return undefined;
  const code = ERROR_KINDS[kind - 1] ?? 'CHAIN_MEMBER_FAILED';
  const len = h[W_BODY_LEN] ?? 0;
  return new BatonError(code, memory.data(slot).toString('utf8', BODY_OFFSET, BODY_OFFSET + len));
}

/** What `msg.call()` rejects with when the callee failed: the callee's error code and message. */
export class ChainCallError extends BatonError {
  constructor(readonly member: string, cause: BatonError) {
    super(cause.code, `${member}: ${cause.message}`);
  }
}

/** The view a member's handler gets: reads and writes go straight to the slot. */
export class ChainMessage {
  private meta: RequestMeta | undefined;
  private resHeaders: Record<string, string> | undefined;
  private readonly data: Buffer;
  private readonly header: Int32Array;

  constructor(
    private readonly memory: ChainMemory,
    readonly descriptor: Descriptor,
    /** Sends the message to a member and resolves when it returns (set by the member thread). */
    private readonly invoke: (msg: ChainMessage, member: string) => Promise<void>,
  ) {
    this.data = memory.data(descriptor.slot);
    this.header = memory.header(descriptor.slot);
  }

  private requestMeta(): RequestMeta {
    this.meta ??= JSON.parse(this.data.toString('utf8', 0, this.header[W_META_LEN] ?? 0)) as RequestMeta;
    return this.meta;
  }

  get method(): string {
    return this.requestMeta().method;
  }

  get url(): string {
    return this.requestMeta().url;
  }

  get path(): string {
    const url = this.url;
    const q = url.indexOf('?');
    return q < 0 ? url : url.slice(0, q);
  }

  get query(): URLSearchParams {
    const url = this.url;
    const q = url.indexOf('?');
    return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  }

  /** The request's headers, lower-cased names (repeated headers joined with ", "). */
  get headers(): Readonly<Record<string, string>> {
    return this.requestMeta().headers;
  }

  /** The hop count so far, and the static route's index (-1 when the route is dynamic). */
  get hop(): number {
    return this.header[W_HOP] ?? 0;
  }

  get route(): number {
    return this.header[W_ROUTE] ?? -1;
  }

  /** The body: a view of the slot, not a copy. It is valid only during this hop. */
  get body(): Uint8Array {
    return this.data.subarray(BODY_OFFSET, BODY_OFFSET + (this.header[W_BODY_LEN] ?? 0));
  }

  text(): string {
    return this.data.toString('utf8', BODY_OFFSET, BODY_OFFSET + (this.header[W_BODY_LEN] ?? 0));
  }

  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  /**
   * Replaces the body, in place: bytes and strings as they are, anything
   * else as JSON (with content-type application/json unless one is set).
   * Throws BODY_TOO_LARGE when it does not fit in the slot.
   */
  write(value: Uint8Array | string | object): void {
    this.ensureCurrent();
    const room = this.data.length - BODY_OFFSET;
    let len: number;
    if (value instanceof Uint8Array) {
      if (value.length > room) throw tooLarge(value.length, room);
      this.data.set(value, BODY_OFFSET);
      len = value.length;
    } else {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      if (Buffer.byteLength(text) > room) throw tooLarge(Buffer.byteLength(text), room);
      len = this.data.write(text, BODY_OFFSET, 'utf8');
      if (typeof value !== 'string' && this.getResponseHeaders()['content-type'] === undefined) this.setHeader('content-type', 'application/json');
    }
    this.header[W_BODY_LEN] = len;
  }

  /** The response status (200 unless a member sets one). */
  get status(): number {
    return this.header[W_STATUS] || 200;
  }

  set status(code: number) {
    if (!Number.isInteger(code) || code < 100 || code > 599) throw new RangeError(`status must be 100..599, not ${code}`);
    this.header[W_STATUS] = code;
  }

  /** Sets a response header (the gateway writes them). */
  setHeader(name: string, value: string): void {
    this.ensureCurrent();
    const headers = { ...this.getResponseHeaders(), [name.toLowerCase()]: String(value) };
    const json = JSON.stringify(headers);
    if (Buffer.byteLength(json) > RESPONSE_META_BYTES) throw tooLarge(Buffer.byteLength(json), RESPONSE_META_BYTES);
    this.header[W_RES_META_LEN] = this.data.write(json, REQUEST_META_BYTES, 'utf8');
    this.resHeaders = headers;
  }

  getResponseHeaders(): Readonly<Record<string, string>> {
    if (!this.resHeaders) {
      const len = this.header[W_RES_META_LEN] ?? 0;
      this.resHeaders = len === 0 ? {} : (JSON.parse(this.data.toString('utf8', REQUEST_META_BYTES, REQUEST_META_BYTES + len)) as Record<string, string>);
    }
    return this.resHeaders;
  }

  /**
   * RPC-style: hands the message to `member` and resolves when that member
   * returns it, with the callee's result as the body. The caller is pushed on
   * the call stack in the slot header; a callee's failure rejects with its
   * code (ChainCallError). Only members of this chain can be called.
   */
  call(member: string): Promise<void> {
    this.ensureCurrent();
    // The response headers may change in the callee.
    this.resHeaders = undefined;
    return this.invoke(this, member);
  }

  private ensureCurrent(): void {
    if (!this.memory.isCurrent(this.descriptor)) {
      throw new BatonError('CHAIN_STALE_DESCRIPTOR', 'this message was released (its request failed or was answered): a handler must not keep it past its hop');
    }
  }
}

function tooLarge(size: number, room: number): BatonError {
  return new BatonError('BODY_TOO_LARGE', `${size} bytes do not fit in the slot's ${room}`);
}

/** Writes the request into a freshly allocated slot (the gateway's one copy); returns false when it does not fit. */
export function writeRequestMeta(memory: ChainMemory, slot: number, meta: RequestMeta): boolean {
  const json = JSON.stringify(meta);
  if (Buffer.byteLength(json) > REQUEST_META_BYTES) return false;
  memory.header(slot)[W_META_LEN] = memory.data(slot).write(json, 0, 'utf8');
  return true;
}
