// The `emulated` runtime: sandboxes without processes, for measuring the
// control plane, data plane and load generator at the scale of the papers
// (hundreds of nodes, thousands of sandboxes) on one machine. Dirigent's
// fake_snapshot runtime and Kubedirect's custom kubelet do the same
// (reference/dirigent.md §5, spright-kubedirect.md part 2).
//
// create: wait the start delay (emulation.startDelay, seeded, honouring the
// abort signal) → listen on <host>:<port> with a net.Server of its own, the
// port from a cursor below the ephemeral range (emulated-ports.ts) → the
// sandbox is ready. Each sandbox has a real address the data plane proxies
// to, as with any runtime, and nothing in the data plane knows it is
// emulated. The listener hands its connections to one HTTP parser per
// runtime (an http.Server that never listens), which looks the sandbox up by
// socket: a sandbox costs one listening socket and a few small objects, not
// an HTTP server with its own timers.
//
// A request is answered from the worker's event loop, with a timer and no
// CPU burnt: GET /health at once; anything else after the hold (the
// x-baton-emulate-ms header, capped at the function's timeoutMs, or else
// emulation.durationMs, or 0), with 200 and
// {"sandbox","heldMs","queuedMs","allocatedMb"}.
// x-baton-emulate-mb: <MiB> makes the hold use memory as the function would:
// that many MiB (capped at the function's resources.memoryMb) are allocated
// in the worker's process when the hold begins, every page written so the
// memory is resident, and dropped when it ends. This costs the worker real
// memory and the CPU of the page faults, which is the point: a trace replay
// on emulated nodes then loads the machine's memory as the trace did. The
// pages are written a slice at a time between other events (a page fault
// costs ~50 µs on these VMs, so 200 MiB would otherwise stop every emulated
// node of the process for 2.5 s); the answer waits for both the hold and the
// writing, as a real function's allocation counts in its time.
// With containerConcurrency > 0 at most that many requests are held at once;
// more wait in a FIFO inside the sandbox, as they would in front of a
// single-threaded function (the data plane should not send them, but a
// sandbox must not do more work at once than it could).
// x-baton-emulate-fail: <status> answers that status after the hold;
// `crash` makes the sandbox die after the hold (every connection reset, the
// listener closed, `exited` settles), so failure reports can be tested.
//
// stop: the listener closes and idle connections are closed at once. Held
// and queued requests get stopGraceMs to finish, as a server given SIGTERM
// would; what is left then is destroyed, as SIGKILL would. It resolves once
// the listener and every connection are gone.
import * as http from 'node:http';
import * as net from 'node:net';
import { BatonError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { FunctionSpec } from '../../shared/spec.js';
import { EMPTY_LATENCY, type RuntimeSandbox, type SandboxExit, type SandboxLatency, type SandboxRuntime, type SandboxStartRequest } from '../runtime.js';
import { sharedSandboxPorts, type SandboxPorts } from './emulated-ports.js';
import { startDelaySampler, type StartDelayConfig, type StartDelaySampler } from './start-delay.js';

export const EMULATE_MS_HEADER = 'x-baton-emulate-ms';
export const EMULATE_FAIL_HEADER = 'x-baton-emulate-fail';
export const EMULATE_MB_HEADER = 'x-baton-emulate-mb';
/**
 * The most one request may allocate, whatever the function's memoryMb: every
 * emulated sandbox lives in the worker's process, and the header comes from
 * any client, so it must not be able to take the worker down (a Buffer over
 * buffer.constants.MAX_LENGTH throws; a few large ones exhaust the heap).
 */
export const EMULATE_MAX_MB_PER_REQUEST = 1024;

export interface EmulatedRuntimeOptions {
  /** The worker's bind host: every sandbox listens there. */
  readonly host: string;
  readonly startDelay: StartDelayConfig;
  /** A drawn delay longer than this fails the start, as a sandbox that never passes its probe would. */
  readonly startTimeoutMs: number;
  /** How long held requests may finish after stop() before their connections are destroyed. */
  readonly stopGraceMs: number;
  readonly log: Logger;
  /** Where sandbox ports come from; default: the process's cursor below the ephemeral range. */
  readonly ports?: SandboxPorts;
}

/** As the worker's own listener: Node's 5 s default makes a data plane reconnect needlessly. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** x-baton-emulate-ms: whole milliseconds, digits only (the function's timeoutMs caps the value). */
const HOLD_MS_PATTERN = /^\d{1,9}$/;
const FAIL_STATUS_PATTERN = /^[2-5]\d\d$/;
/** x-baton-emulate-mb: whole MiB, digits only (the function's memoryMb caps the value). */
const MEMORY_MB_PATTERN = /^\d{1,9}$/;
const PAGE_BYTES = 4096;
/** Pages written per turn of the event loop: 1 MiB, ~0.3–12 ms of page faults. */
const TOUCH_SLICE_BYTES = 1024 * 1024;
const HEALTH_BODY = '{"status":"ok"}';

export class EmulatedRuntime implements SandboxRuntime {
  readonly name = 'emulated';
  private readonly nextDelayMs: StartDelaySampler;
  /** The HTTP parser for every sandbox's connections; it never listens itself. */
  private readonly http: http.Server;
  private readonly bySocket = new WeakMap<net.Socket, EmulatedSandbox>();
  /** Sandboxes with a listener that may still be open, for killAllNow(). */
  private readonly live = new Set<EmulatedSandbox>();
  /** Cancels of the start delays in progress, so killAllNow() and close() can cut them short. */
  private readonly starting = new Set<() => void>();
  private readonly ports: SandboxPorts;

  constructor(private readonly options: EmulatedRuntimeOptions) {
    this.nextDelayMs = startDelaySampler(options.startDelay);
    this.ports = options.ports ?? sharedSandboxPorts();
    this.http = http.createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
      const sandbox = this.bySocket.get(req.socket);
      if (sandbox) sandbox.serve(req, res);
      else res.destroy();
    });
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      options.log.debug({ err: err.message, code: err.code }, 'bad HTTP/1.1 request to an emulated sandbox');
      socket.destroy();
    });
  }

  async create(request: SandboxStartRequest): Promise<RuntimeSandbox> {
    const { sandboxId, spec, signal } = request;
    const { startTimeoutMs } = this.options;
    if (signal.aborted) throw deletedWhileStarting(sandboxId);
    const t0 = process.hrtime.bigint();
    const delayMs = Math.round(this.nextDelayMs());
    if (delayMs > startTimeoutMs) {
      await this.sleep(startTimeoutMs, signal, sandboxId);
      throw new BatonError(
        'SANDBOX_START_FAILED',
        `function "${spec.name}": the emulated start delay drawn (${delayMs} ms) is over sandboxStartTimeoutMs (${startTimeoutMs} ms)`,
        { details: { reason: 'probe_timeout' } },
      );
    }
    if (delayMs > 0) await this.sleep(delayMs, signal, sandboxId);
    const t1 = process.hrtime.bigint();

    const sandbox = new EmulatedSandbox(sandboxId, spec, this.options, this.bySocket, this.http);
    try {
      await sandbox.listen(this.options.host, this.ports);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      const hint = code === 'EMFILE' || code === 'ENFILE' ? ' (too many open files: raise `ulimit -n`)' : '';
      throw new BatonError(
        'SANDBOX_START_FAILED',
        `function "${spec.name}": cannot listen on ${this.options.host} for emulated sandbox ${sandboxId}: ${code}${hint}`,
        { cause: err, details: { reason: 'start_failed' } },
      );
    }
    this.live.add(sandbox);
    void sandbox.exited.then(() => this.live.delete(sandbox));
    if (signal.aborted) {
      await sandbox.stop();
      throw deletedWhileStarting(sandboxId);
    }
    const t2 = process.hrtime.bigint();
    sandbox.latency = {
      portAllocationUs: 0,
      runtimeCreateUs: us(t1 - t0),
      networkUs: 0,
      spawnUs: us(t2 - t1),
      // listen() has returned, so the kernel accepts connections: a probe would prove nothing more, and
      // one (probe.ts) costs ~0.6 ms of worker CPU and a TIME_WAIT socket, more than the rest of the
      // creation (bench/emulated/cost.mjs).
      readinessProbeUs: 0,
      totalUs: us(t2 - t0),
      pooled: false,
    };
    return sandbox;
  }

  killAllNow(): void {
    for (const cancel of this.starting) cancel();
    for (const sandbox of this.live) sandbox.killNow();
  }

  async close(): Promise<void> {
    for (const cancel of this.starting) cancel();
    await Promise.all([...this.live].map((s) => s.stop()));
    this.http.close(() => undefined);
  }

  /** Waits ms; rejects with the "deleted while starting" error when the signal (or killAllNow) aborts first. */
  private sleep(ms: number, signal: AbortSignal, sandboxId: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', cancel);
        this.starting.delete(cancel);
      };
      const cancel = (): void => {
        done();
        reject(deletedWhileStarting(sandboxId));
      };
      const timer = setTimeout(() => {
        done();
        resolve();
      }, ms);
      signal.addEventListener('abort', cancel, { once: true });
      this.starting.add(cancel);
    });
  }
}

type SandboxState = 'BINDING' | 'READY' | 'STOPPING' | 'GONE';

/** One request inside a sandbox: queued, then held, then answered. */
interface Held {
  readonly res: http.ServerResponse;
  readonly holdMs: number;
  readonly failWith: number | 'crash' | undefined;
  /** MiB to hold while the hold lasts (already capped). */
  readonly memoryMb: number;
  /** The held memory, from begin() until the answer or abandonment. */
  memory: Buffer | undefined;
  readonly arrivedAt: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
  /** The hold is over; the answer waits only for the request body to end. */
  holdDone: boolean;
  bodyDone: boolean;
  /** Answered, or given up because the client went away. */
  settled: boolean;
}

class EmulatedSandbox implements RuntimeSandbox {
  readonly pid = 0;
  latency: SandboxLatency = EMPTY_LATENCY;
  readonly exited: Promise<SandboxExit>;
  private settleExit!: (exit: SandboxExit) => void;
  private state: SandboxState = 'BINDING';
  private readonly server: net.Server;
  private boundPort = 0;
  private readonly sockets = new Set<net.Socket>();
  /** Sockets with a request in the sandbox (HTTP/1.1 serves one at a time per connection). */
  private readonly busy = new Set<net.Socket>();
  private readonly concurrency: number;
  private readonly defaultHoldMs: number;
  private readonly maxHoldMs: number;
  private readonly maxMemoryMb: number;
  /** The start of every answer's body, built once. */
  private readonly bodyHead: string;
  private active = 0;
  private readonly queue: Held[] = [];
  private queueHead = 0;
  private stopping: Promise<void> | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private closed: Promise<void> | undefined;

  constructor(
    readonly sandboxId: string,
    spec: FunctionSpec,
    private readonly options: EmulatedRuntimeOptions,
    private readonly bySocket: WeakMap<net.Socket, EmulatedSandbox>,
    private readonly parser: http.Server,
  ) {
    this.concurrency = spec.scaling.containerConcurrency;
    this.defaultHoldMs = Math.min(spec.emulation?.durationMs ?? 0, spec.timeoutMs);
    this.maxHoldMs = spec.timeoutMs;
    this.maxMemoryMb = Math.min(spec.resources.memoryMb, EMULATE_MAX_MB_PER_REQUEST);
    this.bodyHead = `{"sandbox":${JSON.stringify(sandboxId)},"heldMs":`;
    this.exited = new Promise((resolve) => (this.settleExit = resolve));
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  get port(): number {
    return this.boundPort;
  }

  async listen(host: string, ports: SandboxPorts): Promise<void> {
    try {
      this.boundPort = await ports.listen(this.server, host);
    } catch (err) {
      this.state = 'GONE';
      throw err;
    }
    // From here on an error is one of accept() (EMFILE): the listener stays, the connection is lost.
    this.server.on('error', (err) => this.options.log.warn({ err, sandboxId: this.sandboxId }, 'emulated sandbox listener error'));
    this.state = 'READY';
  }

  private accept(socket: net.Socket): void {
    if (this.state !== 'READY') {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.bySocket.set(socket, this);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.busy.delete(socket);
    });
    this.parser.emit('connection', socket);
  }

  serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const socket = req.socket;
    if (this.state === 'STOPPING') res.shouldKeepAlive = false;
    if (req.url === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': HEALTH_BODY.length });
      res.end(HEALTH_BODY);
      return;
    }
    const holdHeader = req.headers[EMULATE_MS_HEADER];
    const failHeader = req.headers[EMULATE_FAIL_HEADER];
    const memoryHeader = req.headers[EMULATE_MB_HEADER];
    let holdMs = this.defaultHoldMs;
    if (holdHeader !== undefined) {
      if (typeof holdHeader !== 'string' || !HOLD_MS_PATTERN.test(holdHeader)) {
        return badRequest(req, res, `${EMULATE_MS_HEADER}: expected a whole number of milliseconds, got ${JSON.stringify(holdHeader)}`);
      }
      holdMs = Math.min(Number(holdHeader), this.maxHoldMs);
    }
    let memoryMb = 0;
    if (memoryHeader !== undefined) {
      if (typeof memoryHeader !== 'string' || !MEMORY_MB_PATTERN.test(memoryHeader)) {
        return badRequest(req, res, `${EMULATE_MB_HEADER}: expected a whole number of MiB, got ${JSON.stringify(memoryHeader)}`);
      }
      memoryMb = Math.min(Number(memoryHeader), this.maxMemoryMb);
    }
    let failWith: Held['failWith'];
    if (failHeader !== undefined) {
      if (failHeader === 'crash') failWith = 'crash';
      else if (typeof failHeader === 'string' && FAIL_STATUS_PATTERN.test(failHeader)) failWith = Number(failHeader);
      else return badRequest(req, res, `${EMULATE_FAIL_HEADER}: expected an HTTP status from 200 to 599 or "crash", got ${JSON.stringify(failHeader)}`);
    }
    const held: Held = {
      res,
      holdMs,
      failWith,
      memoryMb,
      memory: undefined,
      arrivedAt: performance.now(),
      startedAt: 0,
      timer: undefined,
      holdDone: false,
      bodyDone: false,
      settled: false,
    };
    this.busy.add(socket);
    req.on('end', () => {
      held.bodyDone = true;
      if (held.holdDone) this.answer(held);
    });
    req.resume();
    // The client went away (or stop() destroyed the connection) before the answer.
    res.on('close', () => {
      if (!held.settled) this.abandon(held);
      this.busy.delete(socket);
    });
    if (this.concurrency > 0 && this.active >= this.concurrency) this.queue.push(held);
    else this.begin(held);
  }

  private begin(held: Held): void {
    this.active++;
    held.startedAt = performance.now();
    // The hold is over when its time has passed and its memory is written, whichever is last.
    let pending = held.memoryMb > 0 ? 2 : 1;
    const partDone = (): void => {
      if (--pending === 0) this.holdOver(held);
    };
    if (held.memoryMb > 0) {
      let memory: Buffer;
      try {
        memory = Buffer.allocUnsafeSlow(held.memoryMb * 1024 * 1024);
      } catch (err) {
        // Out of memory: this request fails, the sandbox and the worker go on.
        this.refuse(held, `${EMULATE_MB_HEADER}: could not allocate ${held.memoryMb} MiB: ${(err as Error).message}`);
        return;
      }
      held.memory = memory;
      touchInSlices(memory, () => held.memory !== memory, partDone);
    }
    if (held.holdMs === 0) partDone();
    else held.timer = setTimeout(partDone, held.holdMs);
  }

  private holdOver(held: Held): void {
    held.timer = undefined;
    held.holdDone = true;
    if (held.bodyDone) this.answer(held);
  }

  private answer(held: Held): void {
    if (held.settled) return;
    held.settled = true;
    held.memory = undefined;
    this.release();
    if (held.failWith === 'crash') {
      this.crash(held.holdMs);
      return;
    }
    const { res } = held;
    if (this.state === 'STOPPING') res.shouldKeepAlive = false;
    const body = `${this.bodyHead}${held.holdMs},"queuedMs":${Math.round(held.startedAt - held.arrivedAt)},"allocatedMb":${held.memoryMb}}`;
    res.writeHead(held.failWith ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  /** Answers a started request 503 without holding it, and frees its slot. */
  private refuse(held: Held, message: string): void {
    held.settled = true;
    this.release();
    const body = JSON.stringify({ code: 'UNAVAILABLE', message });
    held.res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    held.res.end(body);
  }

  private abandon(held: Held): void {
    held.settled = true;
    held.memory = undefined;
    if (held.timer !== undefined) clearTimeout(held.timer);
    // Still queued: it never took a slot. The queue skips settled entries.
    if (held.startedAt === 0) return;
    this.release();
  }

  /** A held request left its slot: the next queued one takes it. */
  private release(): void {
    this.active--;
    // A dead sandbox starts nothing; its queued requests go with their connections.
    if (this.state === 'GONE') return;
    while (this.queueHead < this.queue.length) {
      const next = this.queue[this.queueHead] as Held;
      this.queue[this.queueHead] = undefined as unknown as Held;
      this.queueHead++;
      if (!next.settled) {
        this.begin(next);
        break;
      }
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }

  /** x-baton-emulate-fail: crash: the sandbox dies as a process would, unasked. */
  private crash(afterMs: number): void {
    if (this.state === 'GONE') return;
    this.options.log.debug({ sandboxId: this.sandboxId }, 'emulated sandbox crashes on request');
    this.closeNow({ exitCode: 1, signal: null, message: `crashed on request (${EMULATE_FAIL_HEADER}: crash) after holding ${afterMs} ms` });
  }

  stop(): Promise<void> {
    this.stopping ??= this.runStop();
    return this.stopping;
  }

  private async runStop(): Promise<void> {
    if (this.state === 'GONE') {
      await this.closed;
      return;
    }
    this.state = 'STOPPING';
    const closed = this.closeListener();
    for (const socket of this.sockets) if (!this.busy.has(socket)) socket.destroy();
    if (this.sockets.size > 0) {
      this.graceTimer = setTimeout(() => this.destroyAll(), this.options.stopGraceMs);
      this.graceTimer.unref();
    }
    await closed;
    clearTimeout(this.graceTimer);
    this.state = 'GONE';
    this.settleExit({ exitCode: 0, signal: null, message: 'stopped on request' });
  }

  killNow(): void {
    this.closeNow({ exitCode: null, signal: 'SIGKILL', message: 'killed with the worker' });
  }

  private closeNow(exit: SandboxExit): void {
    if (this.state === 'GONE') return;
    this.state = 'GONE';
    clearTimeout(this.graceTimer);
    const closed = this.closeListener();
    this.destroyAll();
    void closed.then(() => this.settleExit(exit));
  }

  /** Resolves once the listener and every connection it accepted are closed. */
  private closeListener(): Promise<void> {
    this.closed ??= new Promise((resolve) => this.server.close(() => resolve()));
    return this.closed;
  }

  private destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
    // Timers of requests whose connection is gone are cleared by their close handler.
  }
}

function badRequest(req: http.IncomingMessage, res: http.ServerResponse, message: string): void {
  req.resume();
  const body = JSON.stringify({ code: 'INVALID_REQUEST', message });
  res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Writes one byte per page, so that the kernel really backs the memory, a
 * slice per turn of the event loop; calls done after the last page, or never
 * once dropped() says the request let the memory go.
 */
function touchInSlices(memory: Buffer, dropped: () => boolean, done: () => void): void {
  let offset = 0;
  const slice = (): void => {
    if (dropped()) return;
    const end = Math.min(memory.length, offset + TOUCH_SLICE_BYTES);
    for (; offset < end; offset += PAGE_BYTES) memory[offset] = 1;
    if (offset >= memory.length) done();
    else setImmediate(slice);
  };
  slice();
}

function deletedWhileStarting(sandboxId: string): BatonError {
  return new BatonError('UNAVAILABLE', `sandbox ${sandboxId} was deleted while it was starting`, {
    details: { reason: 'deleted' },
  });
}

function us(ns: bigint): number {
  return Number(ns / 1000n);
}
