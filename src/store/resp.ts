// A small Redis client: one TCP connection speaking RESP2, for the few
// commands the Redis store sends (EVAL, HGET*, HSETNX, HDEL, CONFIG, INFO).
// It is written here rather than taken from a library because the store needs
// exactly these failure semantics, and they are simple to state:
//
// - `connect` gives up after `connectTimeoutMs`: a control plane whose Redis
//   is unreachable fails to start with STORE_UNAVAILABLE instead of waiting.
// - While the connection is down, every command fails at once with
//   STORE_UNAVAILABLE (nothing is queued), and the connection is re-dialed in
//   the background with a doubling back-off (100 ms up to 2 s).
// - A command without an answer after `commandTimeoutMs` fails, and the
//   connection is dropped and re-dialed: replies are matched to commands by
//   order, so a connection with a lost reply cannot be trusted.
// - `onConnect` runs after every (re)connection, before commands flow again
//   (the store re-applies its durability settings there: a restarted Redis
//   has forgotten a CONFIG SET).
import { connect as netConnect, type Socket } from 'node:net';
import { BatonError } from '../shared/errors.js';

export type RespValue = string | number | null | RespValue[] | RespError;

/** An error reply (`-ERR ...`) from Redis; a value, so a script can look at it. */
export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespError';
  }
}

export interface RespConnectionOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Runs on every new connection before it is used; `call` works inside it. */
  onConnect?: (conn: RespConnection) => Promise<void>;
  /** Told about background reconnection failures and recoveries. */
  onStateChange?: (event: 'lost' | 'restored' | 'reconnect-failed', err?: Error) => void;
}

interface Pending {
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

type State = 'CONNECTING' | 'READY' | 'DOWN' | 'CLOSED';

const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 2000;

export class RespConnection {
  private socket: Socket | undefined;
  private state: State = 'CONNECTING';
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs = BACKOFF_INITIAL_MS;
  private lastError: Error | undefined;
  /** Commands sent by onConnect go out while the state is still CONNECTING. */
  private handshaking = false;

  private constructor(private readonly options: RespConnectionOptions) {}

  get where(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  /** Connects once; throws STORE_UNAVAILABLE when Redis cannot be reached in time. */
  static async connect(options: RespConnectionOptions): Promise<RespConnection> {
    const conn = new RespConnection(options);
    try {
      await conn.dial();
    } catch (err) {
      conn.state = 'CLOSED';
      throw err;
    }
    return conn;
  }

  /** Sends one command and resolves with its reply; an error reply rejects with a RespError. */
  async call(...args: (string | number)[]): Promise<RespValue> {
    const reply = await this.send(args);
    if (reply instanceof RespError) throw reply;
    return reply;
  }

  private send(args: (string | number)[]): Promise<RespValue> {
    const socket = this.socket;
    const usable = this.state === 'READY' || (this.state === 'CONNECTING' && this.handshaking);
    if (!usable || socket === undefined) {
      const why = this.lastError ? `: ${this.lastError.message}` : '';
      return Promise.reject(
        this.state === 'CLOSED'
          ? new BatonError('STORE_UNAVAILABLE', `redis store at ${this.where} is closed`)
          : new BatonError('STORE_UNAVAILABLE', `redis at ${this.where} is not connected${why}; reconnecting`),
      );
    }
    return new Promise<RespValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drop(new BatonError('STORE_UNAVAILABLE', `redis at ${this.where} did not answer within ${this.options.commandTimeoutMs} ms`));
      }, this.options.commandTimeoutMs);
      this.pending.push({ resolve, reject, timer });
      socket.write(encode(args));
    });
  }

  async close(): Promise<void> {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.failPending(new BatonError('STORE_UNAVAILABLE', `redis store at ${this.where} is closed`));
    const socket = this.socket;
    this.socket = undefined;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
    }
  }

  private dial(): Promise<void> {
    if (this.state !== 'CLOSED') this.state = 'CONNECTING';
    this.buffer = Buffer.alloc(0);
    return new Promise<void>((resolve, reject) => {
      const socket = netConnect({ host: this.options.host, port: this.options.port, noDelay: true });
      this.socket = socket;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (this.socket === socket) this.socket = undefined;
        this.lastError = err;
        this.failPending(err);
        reject(
          err instanceof BatonError
            ? err
            : new BatonError('STORE_UNAVAILABLE', `cannot connect to redis at ${this.where}: ${err.message}`, { cause: err }),
        );
      };
      const timer = setTimeout(
        () => fail(new BatonError('STORE_UNAVAILABLE', `cannot connect to redis at ${this.where}: no answer within ${this.options.connectTimeoutMs} ms`)),
        this.options.connectTimeoutMs,
      );
      // Events from a socket that has since been replaced are ignored.
      socket.on('data', (chunk: Buffer) => {
        if (this.socket === socket) this.onData(chunk);
      });
      socket.on('error', (err) => {
        if (!settled) fail(err);
        else if (this.socket === socket) this.drop(err);
      });
      socket.on('close', () => {
        if (!settled) fail(new Error('connection closed'));
        else if (this.socket === socket) this.drop(new Error('connection closed'));
      });
      socket.once('connect', () => {
        this.handshaking = true;
        this.handshake()
          .then(() => {
            this.handshaking = false;
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            if (this.state === 'CLOSED') {
              socket.destroy();
              reject(new BatonError('STORE_UNAVAILABLE', `redis store at ${this.where} is closed`));
              return;
            }
            this.state = 'READY';
            this.backoffMs = BACKOFF_INITIAL_MS;
            this.lastError = undefined;
            resolve();
          })
          .catch((err: unknown) => {
            this.handshaking = false;
            fail(err instanceof Error ? err : new Error(String(err)));
          });
      });
    });
  }

  private async handshake(): Promise<void> {
    const { username, password, db, onConnect } = this.options;
    if (password !== undefined) {
      await this.call('AUTH', ...(username !== undefined ? [username] : []), password);
    }
    if (db !== undefined && db !== 0) await this.call('SELECT', db);
    await this.call('PING');
    if (onConnect) await onConnect(this);
  }

  /** The connection broke or a reply went missing: fail what is in flight and re-dial. */
  private drop(err: Error): void {
    if (this.state === 'CLOSED' || this.state === 'DOWN') return;
    if (this.state === 'CONNECTING') {
      // The dial in progress reports its own failure.
      this.socket?.destroy();
      return;
    }
    this.state = 'DOWN';
    this.lastError = err;
    this.socket?.destroy();
    this.socket = undefined;
    this.failPending(
      err instanceof BatonError ? err : new BatonError('STORE_UNAVAILABLE', `lost the connection to redis at ${this.where}: ${err.message}`, { cause: err }),
    );
    this.options.onStateChange?.('lost', err);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.state === 'CLOSED') return;
    this.state = 'DOWN';
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state === 'CLOSED') return;
      this.dial().then(
        () => {
          if (this.state === 'CLOSED') {
            this.socket?.destroy();
            return;
          }
          this.options.onStateChange?.('restored');
        },
        (err: unknown) => {
          if (this.state === 'CLOSED') return;
          this.options.onStateChange?.('reconnect-failed', err as Error);
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  private failPending(err: Error): void {
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      let parsed: { value: RespValue; end: number } | undefined;
      try {
        parsed = parse(this.buffer, 0);
      } catch (err) {
        this.drop(err as Error);
        return;
      }
      if (parsed === undefined) return;
      this.buffer = this.buffer.subarray(parsed.end);
      const p = this.pending.shift();
      if (p === undefined) {
        this.drop(new Error('redis sent a reply nobody asked for'));
        return;
      }
      clearTimeout(p.timer);
      p.resolve(parsed.value);
    }
  }
}

function encode(args: (string | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(String(a), 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Parses one RESP2 value at `at`; undefined when the buffer does not hold all of it yet. */
function parse(buf: Buffer, at: number): { value: RespValue; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', at);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[at] ?? 0);
  const line = buf.toString('utf8', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (item === undefined) return undefined;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`redis sent an unknown RESP type ${JSON.stringify(type)}`);
  }
}
