// One TCP port that speaks both HTTP/1.1 and cleartext HTTP/2 (h2c with prior
// knowledge), as Go's h2c handler does for Dirigent. Node has no such server,
// so we read the first bytes of each connection: the HTTP/2 preface starts
// with "PRI * HTTP/2.0", anything else goes to the HTTP/1.1 server. The bytes
// are put back with unshift(), so neither server knows we looked.
//
// Garbage on the port gets the HTTP/1.1 server's 400, or an HTTP/2 GOAWAY,
// and the connection is closed; the listener keeps running.
//
// The data plane passes `onHttp1` to take HTTP/1.1 connections itself (its
// fast path) and hands unusual ones back with toHttp1().
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Logger } from './logging.js';

const H2_PREFACE_HEAD = Buffer.from('PRI * HTTP/2.0');
/** As node:http's headersTimeout: a connection gets this long to send its first bytes. */
const FIRST_BYTES_TIMEOUT_MS = 60_000;

export type DualHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface DualListenerOptions {
  host: string;
  port: number;
  log: Logger;
  /** HTTP/1.1 keep-alive timeout; Node's 5 s default is too short behind a balancer. */
  keepAliveTimeoutMs?: number;
  /** Upper bound on concurrent HTTP/2 streams per connection. */
  maxConcurrentStreams?: number;
  /** Takes new HTTP/1.1 connections with their first bytes, instead of node:http. */
  onHttp1?: (socket: net.Socket, head: Buffer) => void;
}

export class DualListener {
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  private readonly tcp: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<http2.Http2Session>();
  private boundPort = 0;
  private closing = false;

  private constructor(handler: DualHandler, private readonly options: DualListenerOptions) {
    const log = options.log;
    this.http1 = http.createServer({ keepAliveTimeout: options.keepAliveTimeoutMs ?? 65_000 }, handler);
    this.http1.headersTimeout = 60_000;
    this.http1.requestTimeout = 0;
    // Node's HTTP server tracks its connections (for closeIdleConnections and
    // the headers/request timeouts) from its 'listening' event. It never
    // listens itself here, so we raise that event; close() undoes it.
    this.http1.emit('listening');
    this.http1.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      log.debug({ err: err.message, code: err.code }, 'bad HTTP/1.1 request');
      if (socket.writable && !(socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
        socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      } else {
        socket.destroy();
      }
    });
    this.http2 = http2.createServer(
      { settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1000 }, maxSessionMemory: 64 },
      handler,
    );
    this.http2.on('session', (session) => {
      // A connection accepted just before close() only becomes a session now.
      if (this.closing) session.close();
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', (err: Error) => log.debug({ err: err.message }, 'HTTP/2 session error'));
    });
    this.http2.on('sessionError', (err: Error) => log.debug({ err: err.message }, 'HTTP/2 session error'));
    // allowHalfOpen as node:http's own server: a client may half-close after
    // its request and still read the response.
    this.tcp = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.route(socket));
  }

  static async listen(handler: DualHandler, options: DualListenerOptions): Promise<DualListener> {
    const l = new DualListener(handler, options);
    await new Promise<void>((resolve, reject) => {
      l.tcp.once('error', reject);
      l.tcp.listen(options.port, options.host, () => {
        l.tcp.off('error', reject);
        resolve();
      });
    });
    const addr = l.tcp.address();
    l.boundPort = typeof addr === 'object' && addr ? addr.port : options.port;
    return l;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Until close() is called. */
  get accepting(): boolean {
    return !this.closing;
  }

  private route(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    // Until the first bytes decide, a silent or half-closed connection is dropped.
    const drop = (): void => {
      socket.destroy();
    };
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, drop);
    socket.once('end', drop);
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      // Decide as soon as the bytes seen differ from the preface, or cover it.
      const n = Math.min(head.length, H2_PREFACE_HEAD.length);
      const isH2Prefix = head.subarray(0, n).equals(H2_PREFACE_HEAD.subarray(0, n));
      if (isH2Prefix && head.length < H2_PREFACE_HEAD.length) return;
      socket.off('data', onData);
      socket.off('end', drop);
      socket.setTimeout(0);
      socket.off('timeout', drop);
      if (isH2Prefix) {
        // The HTTP/2 session takes the buffered bytes itself; resuming here would hand them to no one.
        socket.pause();
        socket.unshift(head);
        this.http2.emit('connection', socket);
      } else if (this.options.onHttp1) {
        this.options.onHttp1(socket, head);
      } else {
        this.toHttp1(socket, head);
      }
    };
    socket.on('data', onData);
  }

  /** Hands an HTTP/1.1 connection to node:http, replaying the bytes read so far. */
  toHttp1(socket: net.Socket, head: Buffer | null): void {
    socket.pause();
    if (head !== null && head.length > 0) socket.unshift(head);
    this.http1.emit('connection', socket);
    socket.resume();
  }

  /**
   * Stops accepting connections. Idle keep-alive connections are closed at
   * once; active ones get until the grace period ends, then are destroyed.
   */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    // Closes idle keep-alive connections and stops the timeout checks; the
    // error it reports (the server was never listening) is expected.
    this.http1.close(() => undefined);
    for (const s of this.sessions) s.close();
    const timer = setTimeout(() => this.destroyAll(), graceMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  /** Destroys every connection at once. */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
    for (const s of this.sessions) s.destroy();
  }
}
