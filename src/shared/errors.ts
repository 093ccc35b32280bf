// One registry of Baton's error codes. Every failure a user or a peer can see
// carries one of these codes, and the code fixes the HTTP status. The
// `{code, message}` pair crosses process boundaries unchanged: a CLI user sees
// the code the worker raised (over RPC it travels in the `baton-error-code`
// response header of a ConnectError).
//
// docs/errors.md lists every code; a unit test fails when one is missing.

export const ERROR_CODES = {
  // Input
  INVALID_SPEC: { status: 400, summary: 'The function spec breaks a rule; the message names the field.' },
  INVALID_REQUEST: { status: 400, summary: 'The request is malformed (bad JSON, bad path, bad header).' },
  UNAUTHORIZED: { status: 401, summary: 'A bearer token is configured and the call did not carry it.' },
  FUNCTION_NOT_FOUND: { status: 404, summary: 'No function has that name.' },
  NOT_FOUND: { status: 404, summary: 'No such API route or object.' },
  INVOCATION_NOT_FOUND: { status: 404, summary: 'No async invocation has that id on this data plane, or its result expired.' },
  METHOD_NOT_ALLOWED: { status: 405, summary: 'The route exists but not with this method.' },
  FUNCTION_EXISTS: { status: 409, summary: 'A function with that name is already registered.' },
  CONFLICT: { status: 409, summary: 'Another change to the same object won; read it again and retry.' },
  BODY_TOO_LARGE: { status: 413, summary: 'The request body is over the configured limit.' },
  // Capacity and timing
  QUEUE_FULL: { status: 503, summary: "The function's cold-start queue is full; retry after Retry-After." },
  ASYNC_QUEUE_FULL: { status: 429, summary: "The data plane's async invocation queue is full; retry after Retry-After." },
  QUEUE_TIMEOUT: { status: 504, summary: 'No sandbox became ready before the request timeout.' },
  REQUEST_TIMEOUT: { status: 504, summary: 'The sandbox did not answer before the request timeout.' },
  NO_WORKERS: { status: 503, summary: 'No worker is registered or alive to place a sandbox on.' },
  NO_CAPACITY: { status: 503, summary: "No worker has room for the function's resources; describe shows what is free." },
  SANDBOX_START_FAILED: { status: 503, summary: "The function's sandboxes fail to start; describe shows why." },
  // Sandbox and upstream
  SANDBOX_CRASHED: { status: 502, summary: 'The sandbox closed the connection or died while serving the request.' },
  SANDBOX_UNREACHABLE: { status: 502, summary: 'The sandbox could not be connected to.' },
  RESULT_TOO_LARGE: { status: 502, summary: "An async invocation's response body was over the data plane's maxBodyBytes; it is not kept." },
  SANDBOX_NOT_FOUND: { status: 404, summary: 'No sandbox has that id on this worker.' },
  UNSUPPORTED_RUNTIME: { status: 400, summary: 'The worker has no runtime of that name.' },
  // Function chains (docs/chains.md)
  CHAIN_NOT_FOUND: { status: 404, summary: 'No chain has that name.' },
  CHAIN_POOL_FULL: { status: 503, summary: "Every slot of the chain's shared-memory pool is in use; retry." },
  CHAIN_MEMBER_FAILED: { status: 502, summary: 'A member of the chain threw, or its thread or process died, while handling the request.' },
  CHAIN_UNKNOWN_MEMBER: { status: 502, summary: 'A member named a next hop that is not a member of its chain.' },
  CHAIN_STALE_DESCRIPTOR: { status: 500, summary: "A descriptor names a slot that was freed since, or another pool's slot." },
  // Components
  UNAVAILABLE: { status: 503, summary: 'The component is starting, draining or stopped.' },
  ASYNC_DISABLED: { status: 501, summary: 'Async invocations are turned off on this data plane (async.enabled: false).' },
  PEER_UNAVAILABLE: { status: 503, summary: 'A peer component (worker, data plane, control plane) could not be reached.' },
  NOT_LEADER: { status: 503, summary: 'This control-plane replica is a follower: calls go to the leader (admin calls are redirected to it when it is known).' },
  TRACE_INVALID: { status: 400, summary: 'A workload trace file is malformed; the message names the file, the line and the column.' },
  BENCH_TIMEOUT: { status: 504, summary: 'A benchmark waited longer than its timeout for the cluster to reach a state (all sandboxes ready, or gone).' },
  CONFIG_INVALID: { status: 400, summary: 'A configuration file or flag breaks a rule; the message names the key.' },
  STORE_UNAVAILABLE: { status: 503, summary: 'The cluster store (Redis) cannot be reached; writes fail until it is back, and the control plane reconnects by itself.' },
  STORE_ERROR: { status: 500, summary: 'The cluster store failed to read or write.' },
  INTERNAL: { status: 500, summary: 'A bug: the message and the logs say more.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

export class BatonError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra fields for the JSON body, such as `field` for INVALID_SPEC. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BatonError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = options?.details;
  }

  toJSON(): { code: ErrorCode; message: string } & Record<string, unknown> {
    return { ...this.details, code: this.code, message: this.message };
  }
}

/** Wraps anything thrown into a BatonError, keeping a BatonError as it is. */
export function toBatonError(err: unknown, fallback: ErrorCode = 'INTERNAL'): BatonError {
  if (err instanceof BatonError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BatonError(fallback, message, { cause: err });
}
