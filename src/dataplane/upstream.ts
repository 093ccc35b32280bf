// Connections to sandboxes for the fast path: per endpoint, a pool of
// keep-alive HTTP/1.1 connections over plain sockets, one request at a time
// on each (no pipelining), reading the response head with parseResponseHead
// and framing the body without decoding it.
//
//   FastRequest ─acquire()─▶ UpstreamPool ─▶ idle connection, or a new one (up to
//   upstreamConnections), or a FIFO wait ─▶ UpstreamConnection.start()
//   ─▶ exchange.onConnection() writes the request ─▶ response bytes ─▶
//   onResponseHead / onResponseBody / onResponseEnd ─▶ release() to the pool.
//
// Why not undici here: undici's client costs ~21 µs of CPU per request on
// this machine against ~10 µs for this one (measured with the same
// concurrency-64 loop), and the warm-path target leaves no room for it.
// undici stays as the dispatcher of the general path (h2c clients and
// requests the fast path hands to node:http), created lazily per endpoint.
//
// Time-outs use the coarse clock: each busy connection carries a deadline
// (response head, then idle time between body chunks) and the data plane's
// housekeeping sweeps the busy set, so no timer is set per request.
import * as net from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from '../shared/logging.js';
import { clock, deadlineIn } from './clock.js';
import { BodyFraming, ChunkedScanner, CRLFCRLF, MAX_HEAD_BYTES, parseResponseHead, ResponseHead } from './http1.js';

export const enum UpstreamFailure {
  /** The connection could not be made. */
  Unreachable,
  /** A reused keep-alive connection closed before any response byte (a keep-alive race, or a crash). */
  Stale,
  /** The connection closed or broke during the exchange. */
  Crashed,
  /** The sandbox sent something that is not a valid HTTP/1.1 response. */
  BadResponse,
  Timeout,
}

/** One request's side of an upstream exchange (the fast path's FastRequest). */
export interface UpstreamExchange {
  readonly isHead: boolean;
  /**
   * Coarse-clock time by which the response head must arrive, counted from
   * when the request arrived: it covers any wait for a pooled connection.
   */
  readonly headersDeadline: number;
  /** ms allowed between response body chunks. */
  readonly bodyTimeoutMs: number;
  /** The whole request (head and body) has been written. */
  readonly requestSent: boolean;
  /** The pool handed over a connection: write the request. */
  onConnection(conn: UpstreamConnection): void;
  /** The socket to the sandbox drained: more request body may be written. */
  onUpstreamDrain(): void;
  onResponseHead(head: ResponseHead): void;
  /**
   * Returns false when the client cannot take more now; the connection
   * pauses until resume(). `chunk` may be a view of the shared read buffer:
   * copy it (fromReadBuffer) before keeping or writing it.
   */
  onResponseBody(chunk: Buffer): boolean;
  /** The response head arrived but the body continues in later packets: send the head now. */
  onResponseFlush(): void;
  onResponseEnd(): void;
  onUpstreamError(failure: UpstreamFailure, detail: string): void;
}

/**
 * The buffer every sandbox socket reads into (net's `onread`), shared: reads
 * happen one at a time on the event loop and each is handled before the
 * next, so one buffer serves all connections. It skips the readable-stream
 * machinery and an allocation per read (~2.7 µs of CPU per read, measured).
 * The price: a view into it must not outlive the read callback. Whatever is
 * kept or written on is copied first (fromReadBuffer), which the fast path
 * does anyway to write a response head and its body in one buffer.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

/** A copy of bytes read from a sandbox socket, safe to keep or write. */
export function fromReadBuffer(view: Buffer): Buffer {
  return view.buffer === READ_BUFFER.buffer ? Buffer.from(view) : view;
}

const enum Mode {
  Idle,
  Head,
  Length,
  Chunked,
  Close,
}

/**
 * Busy connections, and pools with exchanges waiting for a connection, swept
 * for time-outs by the data plane's housekeeping.
 */
export class UpstreamTracker {
  readonly busy = new Set<UpstreamConnection>();
  readonly waiting = new Set<UpstreamPool>();

  constructor(readonly log?: Logger) {}

  sweep(now: number): void {
    for (const c of this.busy) if (c.deadline <= now) c.timeOut();
    for (const p of this.waiting) p.expireWaiting(now);
  }
}

export class UpstreamConnection {
  readonly socket: net.Socket;
  exchange: UpstreamExchange | null = null;
  /** Responses completed on this connection. */
  served = 0;
  connected = false;
  closed = false;
  deadline = Infinity;
  idleSince = 0;
  private mode = Mode.Idle;
  private headBuf: Buffer | null = null;
  private remaining = 0;
  private scanner: ChunkedScanner | null = null;
  private reusable = true;
  private gotBytes = false;
  private bodyTimeoutMs = 0;
  private errorCode = '';
  private readonly response = new ResponseHead();

  constructor(readonly pool: UpstreamPool) {
    const s = net.connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number): boolean => {
          try {
            this.onData(READ_BUFFER.subarray(0, n));
          } catch (err) {
            // A bug, not the sandbox's fault: fail this exchange, keep serving the rest.
            pool.tracker.log?.error({ err }, 'fast path failed on a sandbox connection');
            this.fail(UpstreamFailure.BadResponse, `internal error: ${(err as Error).message}`);
          }
          return true;
        },
      },
    });
    this.socket = s;
    s.on('connect', () => {
      this.connected = true;
    });
    s.on('drain', () => this.exchange?.onUpstreamDrain());
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (this.errorCode === '') this.errorCode = err.code ?? err.message;
    });
    s.on('close', () => this.onClose());
  }

  start(ex: UpstreamExchange): void {
    this.exchange = ex;
    this.mode = Mode.Head;
    this.gotBytes = false;
    this.headBuf = null;
    this.bodyTimeoutMs = ex.bodyTimeoutMs;
    this.deadline = ex.headersDeadline;
    this.pool.tracker.busy.add(this);
    ex.onConnection(this);
  }

  /** The client can take more response bytes. */
  resume(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** The client went away: drop the exchange and the connection (it is mid-exchange). */
  abort(): void {
    if (this.exchange === null) return;
    this.exchange = null;
    this.reusable = false;
    this.pool.tracker.busy.delete(this);
    this.socket.destroy();
  }

  timeOut(): void {
    this.fail(UpstreamFailure.Timeout, 'timed out');
  }

  private onData(chunk: Buffer): void {
    const ex = this.exchange;
    if (ex === null) {
      // Bytes on an idle connection: the sandbox is out of step; do not reuse it.
      this.reusable = false;
      this.socket.destroy();
      return;
    }
    this.gotBytes = true;
    let buf = chunk;
    let off = 0;
    if (this.mode === Mode.Head) {
      if (this.headBuf !== null) {
        buf = Buffer.concat([this.headBuf, chunk]);
        this.headBuf = null;
      }
      const r = this.response;
      for (;;) {
        const end = buf.indexOf(CRLFCRLF, off);
        if (end === -1) {
          if (buf.length - off > MAX_HEAD_BYTES) {
            this.fail(UpstreamFailure.BadResponse, 'response head over 16 KiB');
            return;
          }
          this.headBuf = Buffer.from(off === 0 ? buf : buf.subarray(off));
          return;
        }
        if (!parseResponseHead(buf.toString('latin1', off, end), ex.isHead, r)) {
          this.fail(UpstreamFailure.BadResponse, 'malformed response head');
          return;
        }
        off = end + 4;
        if (r.status >= 200) break;
        if (r.status === 101) {
          this.fail(UpstreamFailure.BadResponse, 'unexpected 101 Switching Protocols');
          return;
        }
        // 1xx informational: not forwarded; the real head follows.
      }
      if (r.close) this.reusable = false;
      this.deadline = deadlineIn(this.bodyTimeoutMs);
      ex.onResponseHead(r);
      if (this.exchange !== ex) return;
      switch (r.framing) {
        case BodyFraming.None:
          if (off < buf.length) this.reusable = false;
          this.finish();
          return;
        case BodyFraming.Length:
          this.mode = Mode.Length;
          this.remaining = r.contentLength;
          break;
        case BodyFraming.Chunked:
          this.mode = Mode.Chunked;
          (this.scanner ??= new ChunkedScanner()).reset();
          break;
        case BodyFraming.Close:
          this.mode = Mode.Close;
          break;
      }
      if (off < buf.length) this.body(ex, buf, off);
      if (this.exchange === ex) ex.onResponseFlush();
      return;
    }
    this.deadline = deadlineIn(this.bodyTimeoutMs);
    this.body(ex, buf, off);
  }

  private body(ex: UpstreamExchange, buf: Buffer, off: number): void {
    switch (this.mode) {
      case Mode.Length: {
        const avail = buf.length - off;
        const take = avail < this.remaining ? avail : this.remaining;
        this.remaining -= take;
        if (take < avail) this.reusable = false; // bytes past the message
        const more = ex.onResponseBody(off === 0 && take === buf.length ? buf : buf.subarray(off, off + take));
        if (this.exchange !== ex) return;
        if (this.remaining === 0) this.finish();
        else if (!more) this.socket.pause();
        return;
      }
      case Mode.Chunked: {
        const end = (this.scanner as ChunkedScanner).scan(buf, off);
        if (end === -2) {
          this.fail(UpstreamFailure.BadResponse, 'malformed chunked body');
          return;
        }
        const stop = end === -1 ? buf.length : end;
        let more = true;
        if (stop > off) more = ex.onResponseBody(off === 0 && stop === buf.length ? buf : buf.subarray(off, stop));
        if (this.exchange !== ex) return;
        if (end >= 0) {
          if (end < buf.length) this.reusable = false;
          this.finish();
        } else if (!more) {
          this.socket.pause();
        }
        return;
      }
      case Mode.Close: {
        if (!ex.onResponseBody(off === 0 ? buf : buf.subarray(off)) && this.exchange === ex) this.socket.pause();
        return;
      }
      default:
        return;
    }
  }

  private finish(): void {
    const ex = this.exchange as UpstreamExchange;
    this.exchange = null;
    this.mode = Mode.Idle;
    this.served++;
    this.pool.tracker.busy.delete(this);
    if (!ex.requestSent) this.reusable = false;
    if (this.socket.isPaused()) this.socket.resume();
    // The connection goes back first, so a waiter granted this endpoint's
    // token by onResponseEnd() can reuse it at once.
    this.pool.release(this, this.reusable);
    ex.onResponseEnd();
  }

  fail(failure: UpstreamFailure, detail: string): void {
    const ex = this.exchange;
    this.exchange = null;
    this.reusable = false;
    this.pool.tracker.busy.delete(this);
    this.socket.destroy();
    ex?.onUpstreamError(failure, detail);
  }

  private onClose(): void {
    this.closed = true;
    this.pool.onClosed(this);
    const ex = this.exchange;
    if (ex === null) return;
    if (this.mode === Mode.Close && this.errorCode === '') {
      this.reusable = false;
      this.finish();
      return;
    }
    this.exchange = null;
    this.pool.tracker.busy.delete(this);
    const failure = !this.connected
      ? UpstreamFailure.Unreachable
      : !this.gotBytes && this.served > 0
        ? UpstreamFailure.Stale
        : UpstreamFailure.Crashed;
    const detail = this.errorCode || (this.gotBytes ? 'connection closed mid-response' : 'connection closed before a response');
    ex.onUpstreamError(failure, detail);
  }
}

export class UpstreamPool {
  private readonly idle: UpstreamConnection[] = [];
  private readonly waiting: UpstreamExchange[] = [];
  private readonly all = new Set<UpstreamConnection>();
  private closing = false;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly maxConnections: number,
    readonly tracker: UpstreamTracker,
  ) {}

  get size(): number {
    return this.all.size;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Starts the exchange on an idle connection, a new one, or when one frees up. */
  acquire(ex: UpstreamExchange): void {
    if (this.closing) {
      ex.onUpstreamError(UpstreamFailure.Unreachable, 'the endpoint was removed');
      return;
    }
    const idle = this.idle;
    while (idle.length > 0) {
      const c = idle.pop() as UpstreamConnection;
      if (!c.closed && !c.socket.readableEnded) {
        c.start(ex);
        return;
      }
    }
    if (this.all.size < this.maxConnections) {
      this.open().start(ex);
      return;
    }
    this.waiting.push(ex);
    this.tracker.waiting.add(this);
  }

  /** Fails the exchanges that waited for a connection past their deadline. */
  expireWaiting(now: number): void {
    const waiting = this.waiting;
    if (waiting.length === 0) {
      this.tracker.waiting.delete(this);
      return;
    }
    let expired: UpstreamExchange[] | null = null;
    let kept = 0;
    for (let i = 0; i < waiting.length; i++) {
      const ex = waiting[i] as UpstreamExchange;
      if (ex.headersDeadline <= now) (expired ??= []).push(ex);
      else waiting[kept++] = ex;
    }
    waiting.length = kept;
    if (kept === 0) this.tracker.waiting.delete(this);
    if (expired !== null) for (const ex of expired) ex.onUpstreamError(UpstreamFailure.Timeout, 'timed out waiting for a connection');
  }

  /** Withdraws an exchange still waiting for a connection. */
  cancel(ex: UpstreamExchange): boolean {
    const i = this.waiting.indexOf(ex);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  release(c: UpstreamConnection, reusable: boolean): void {
    if (c.closed) return;
    if (!reusable || this.closing) {
      c.socket.destroy(); // onClosed() serves any waiter
      return;
    }
    const next = this.waiting.shift();
    if (next !== undefined) {
      c.start(next);
      return;
    }
    c.idleSince = clock.now;
    this.idle.push(c);
  }

  onClosed(c: UpstreamConnection): void {
    this.all.delete(c);
    const i = this.idle.lastIndexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    if (!this.closing && this.waiting.length > 0 && this.all.size < this.maxConnections) {
      this.open().start(this.waiting.shift() as UpstreamExchange);
    }
  }

  /** Closes connections idle since before `before` (coarse-clock ms). */
  closeIdle(before: number): void {
    const idle = this.idle;
    let kept = 0;
    for (let i = 0; i < idle.length; i++) {
      const c = idle[i] as UpstreamConnection;
      if (c.idleSince < before) c.socket.destroy();
      else idle[kept++] = c;
    }
    idle.length = kept;
  }

  /** No new exchanges; idle connections close now, busy ones when their exchange ends. */
  close(): void {
    this.closing = true;
    for (const c of this.idle) c.socket.destroy();
    this.idle.length = 0;
    const waiting = this.waiting.splice(0);
    for (const ex of waiting) ex.onUpstreamError(UpstreamFailure.Unreachable, 'the endpoint was removed');
  }

  destroy(): void {
    this.close();
    for (const c of this.all) c.socket.destroy();
  }

  private open(): UpstreamConnection {
    const c = new UpstreamConnection(this);
    this.all.add(c);
    return c;
  }
}

/** Splits "host:port" or "[v6]:port". Throws on anything else. */
export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`not a host:port address: ${JSON.stringify(address)}`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export interface EndpointUpstreamOptions {
  /** Keep-alive connections per sandbox, for each of the two clients. */
  connections: number;
  tracker: UpstreamTracker;
}

/** The ways to reach one sandbox: the fast path's pool, and undici for the general path. */
export class EndpointUpstream {
  readonly raw: UpstreamPool;
  private undiciPool: Pool | null = null;

  constructor(
    readonly address: string,
    private readonly options: EndpointUpstreamOptions,
  ) {
    const { host, port } = splitHostPort(address);
    this.raw = new UpstreamPool(host, port, options.connections, options.tracker);
  }

  /** undici, for h2c clients and requests node:http parsed; created on first use. */
  get dispatcher(): Dispatcher {
    this.undiciPool ??= new Pool(`http://${this.address}`, {
      connections: this.options.connections,
      pipelining: 1,
      // Per-request time-outs come from the function (ProxyRequest.dispatch).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    return this.undiciPool;
  }

  /** Closes once in-flight exchanges end (the caller waits for that). */
  async close(): Promise<void> {
    this.raw.close();
    await this.undiciPool?.close();
  }

  async destroy(): Promise<void> {
    this.raw.destroy();
    await this.undiciPool?.destroy();
  }
}
