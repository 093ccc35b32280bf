// The messages between a worker's `node` runtime and one runtime process, on
// the IPC channel child_process sets up (a Unix socket pair, JSON lines).
//
//   runtime process → worker: booted              (once, when it can take a load)
//   worker → runtime process: load                (once: binds it to one sandbox)
//   runtime process → worker: loaded | failed     (the answer to load)
//
// After `failed` the process exits with LOAD_FAILED_EXIT_CODE. The channel
// stays open for the process's life: when the worker goes away, the channel
// closes and the process exits, so no runtime process outlives its worker.

/** Sent by the runtime process once it is ready to be told which function to serve. */
export interface BootedMessage {
  readonly type: 'booted';
}

/** Binds a booted runtime process to one sandbox of one function. */
export interface LoadMessage {
  readonly type: 'load';
  readonly sandboxId: string;
  readonly functionName: string;
  /** The function's directory (absolute): the cwd, and what `handler`'s file is relative to. */
  readonly dir: string;
  /** `file.export`. */
  readonly handler: string;
  /** Where to listen; the port is the kernel's choice (port 0), reported in `loaded`. */
  readonly host: string;
  /** The whole environment the function gets but PORT, which the runtime adds once it listens; nothing of its own is kept. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly memoryMb: number;
}

/** The handler is loaded and the HTTP server listens. */
export interface LoadedMessage {
  readonly type: 'loaded';
  /** The port the sandbox listens on. */
  readonly port: number;
  /** Microseconds from receiving `load` to sending this, and of those importing the handler: for the worker's debug log. */
  readonly loadUs: number;
  readonly importUs: number;
}

/** The handler could not be loaded; the process exits after sending this. */
export interface FailedMessage {
  readonly type: 'failed';
  /** One line for humans, naming the handler: `handler "index.handler": index.js has no export "handler"`. */
  readonly message: string;
}

export type RuntimeToWorker = BootedMessage | LoadedMessage | FailedMessage;
export type WorkerToRuntime = LoadMessage;

export const LOAD_FAILED_EXIT_CODE = 70;
/** The exit code of a runtime process started without an IPC channel, or that lost its worker. */
export const NO_WORKER_EXIT_CODE = 71;

/**
 * The readiness probe's User-Agent (probe.ts): a GET /health carrying it is
 * answered by the runtime itself, so probes never invoke the handler, while
 * a client's own GET /health still reaches it.
 */
export const PROBE_USER_AGENT = 'baton-probe';
