// The runc driver: one short-lived runc process per operation, always with
// this worker's state root (--root) and a clean environment.
//
// Containers are made in two steps, as containerd does: `runc create` sets up
// the namespaces, cgroups and mounts and leaves the container's init blocked
// on an exec fifo; `runc start` lets it exec the function. That split is what
// makes precreated containers possible, and on this machine create + start is
// faster than `runc run` (DESIGN.md, baselines: 38.5 ms against 66–70 ms).
//
// runc create passes its own stdout and stderr on to the container, so both
// are the sandbox's log file; runc's own messages go to a JSON log (--log) in
// the bundle as well, which is where an error is read back from.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { BatonError } from '../../../shared/errors.js';

const RUNC_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
/** The longest runc error quoted in a message. */
const MAX_ERROR_CHARS = 1000;

/** A runc command that failed: its arguments, exit status and what it said. */
export class RuncError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`runc ${args.join(' ')} failed (${exitCode === null ? 'killed' : `exit ${exitCode}`}): ${stderr || 'no output'}`);
    this.name = 'RuncError';
  }
}

export interface RuncContainerState {
  readonly id: string;
  readonly pid: number;
  readonly status: string;
  readonly bundle: string;
}

export class Runc {
  constructor(
    /** The resolved binary. */
    readonly binary: string,
    /** runc's state directory (--root). */
    readonly root: string,
  ) {}

  /**
   * runc create: the container exists, its init waits for `start`. stdout
   * and stderr of the container go to logFd; runc's own log to runcLogPath.
   */
  async create(id: string, bundle: string, pidFile: string, logFd: number, runcLogPath: string): Promise<void> {
    const args = ['--log', runcLogPath, '--log-format', 'json', 'create', '--bundle', bundle, '--pid-file', pidFile, id];
    const status = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
      const child = spawn(this.binary, ['--root', this.root, ...args], { env: RUNC_ENV, stdio: ['ignore', logFd, logFd] });
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('exit', (code) => resolve({ code }));
    });
    if (status.error) throw new RuncError(args, null, status.error.message);
    if (status.code !== 0) throw new RuncError(args, status.code, await readRuncLog(runcLogPath));
  }

  start(id: string): Promise<string> {
    return this.run(['start', id]);
  }

  /** Removes a container and its cgroups; --force kills it first if it still runs. */
  delete(id: string): Promise<string> {
    return this.run(['delete', '--force', id]);
  }

  async list(): Promise<RuncContainerState[]> {
    const out = await this.run(['list', '--format', 'json']);
    const parsed = JSON.parse(out.trim() || 'null') as Array<{ id: string; pid: number; status: string; bundle: string }> | null;
    return (parsed ?? []).map((c) => ({ id: c.id, pid: c.pid, status: c.status, bundle: c.bundle }));
  }

  /** Runs one runc command; resolves with its stdout, rejects with a RuncError quoting its stderr. */
  run(args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, ['--root', this.root, ...args], { env: RUNC_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.once('error', (err) => reject(new RuncError(args, null, err.message)));
      child.once('close', (code) => {
        if (code === 0) resolve(stdout);
        else reject(new RuncError(args, code, clip(stderr.trim())));
      });
    });
  }
}

/** The error lines of a runc JSON log, the last ones that fit; '' when there are none. */
export async function readRuncLog(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return '';
  }
  const errors: string[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) errors.push(entry.msg);
    } catch {
      errors.push(line);
    }
  }
  return clip(errors.join('\n'));
}

function clip(text: string): string {
  return text.length > MAX_ERROR_CHARS ? `...${text.slice(-MAX_ERROR_CHARS)}` : text;
}

/** A BatonError for a runc failure while starting a sandbox. */
export function runcStartFailed(functionName: string, what: string, err: unknown, logTail: string): BatonError {
  const said = err instanceof RuncError ? err.stderr || `exit ${err.exitCode ?? 'unknown'}` : (err as Error).message;
  const output = logTail ? `; the sandbox's output ends with:\n${logTail}` : '';
  return new BatonError('SANDBOX_START_FAILED', `function "${functionName}": ${what} failed: ${said}${output}`, {
    cause: err,
    details: { reason: 'start_failed' },
  });
}
