// A real redis-server for tests: loopback only, a free port, its own
// directory, RDB snapshots off. Tests that need it skip when redis-server is
// not installed (CI installs it: .ci/run).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from '../shared/test-support.js';

export { freePort };

/** Why Redis tests cannot run here, or undefined when they can. */
export function redisSkipReason(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error ? 'redis-server is not installed (apt-get install redis-server); skipping the Redis store tests' : undefined;
}


async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('error', () => done(false));
    s.once('connect', () => s.write('*1\r\n$4\r\nPING\r\n'));
    s.once('data', (d: Buffer) => done(d.toString().startsWith('+PONG')));
    setTimeout(() => done(false), 500).unref();
  });
}

export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts redis-server in `dir` on a free port; `extra` are more `--key value` arguments. */
  static async start(dir: string, extra: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), dir);
    await server.restart(extra);
    return server;
  }

  /** (Re)starts the server on the same port and directory. */
  async restart(extra: string[] = []): Promise<void> {
    if (this.child) throw new Error('redis-server is still running');
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--daemonize', 'no', ...extra];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(this.port))) {
      if (this.child !== child) throw new Error(`redis-server exited at start (${args.join(' ')})`);
      if (Date.now() > deadline) throw new Error('redis-server did not answer PING within 10 s');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Stops the server with `signal` (SIGKILL: kill -9) and waits for it to be gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.child = undefined;
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }
}
