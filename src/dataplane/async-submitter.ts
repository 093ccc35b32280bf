// The data plane's door to asynchronous invocations: the Lambda Invoke API
// (InvocationType Event) and `x-baton-invocation: async` both submit here.
// Implemented by src/dataplane/async/ (durable queue in the cluster store).

export interface AsyncInvocationRequest {
  /** The function's name. */
  readonly function: string;
  readonly method: string;
  /** The path and query the sandbox receives, e.g. `/` or `/orders?id=3`. */
  readonly path: string;
  /** Request headers to pass on (lower-case names; hop-by-hop headers removed). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

export interface AsyncSubmitter {
  /**
   * Writes the invocation durably and returns its id once it is written.
   * Throws BatonError `ASYNC_QUEUE_FULL` (HTTP 429, with retryAfterMs in its
   * details) when the queue is full, and `FUNCTION_NOT_FOUND` for an unknown function.
   */
  submit(req: AsyncInvocationRequest): Promise<{ readonly id: string }>;
}
