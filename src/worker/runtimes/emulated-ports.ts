// Ports for emulated sandboxes: a cursor over a range below the kernel's
// ephemeral range, shared by every emulated runtime in the process.
//
// Why not listen on port 0, as the first version did: the kernel's search
// for a free port walks the ephemeral range and skips every port with a
// socket bound to it, TIME_WAIT ones included. On this machine, with 10,000
// connections in TIME_WAIT (a load test leaves that many behind), a bind to
// port 0 took 0.5–1.5 ms of kernel CPU once 4,000 listeners were open,
// against 25–70 µs for a bind to a port named outright
// (bench/emulated/cost.mjs; docs/runtimes.md). Scale experiments create
// thousands of sandboxes next to a load generator that leaves TIME_WAIT
// sockets behind, so the slow case is the common one there. Named ports
// below the ephemeral range also leave that range whole for the outgoing
// connections of the data plane and the load generator.
//
// A port something else holds (EADDRINUSE) is skipped; when the whole range
// is taken, or the machine has no room below its ephemeral range, the kernel
// picks (port 0). Two processes walking the range start at different places
// (by pid) and skip each other's ports.
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';

/** The lowest port handed out: above the defaults of Baton's own daemons (8080, 9090, 10010). */
export const EMULATED_PORT_FIRST = 20_000;
/** Fewer ports than this below the ephemeral range and the cursor is not worth it: port 0 only. */
const MIN_RANGE = 1024;
const LINUX_EPHEMERAL_LOW = 32_768;

export class SandboxPorts {
  private next: number;

  /** An empty range (last < first) means port 0 always. */
  constructor(
    readonly first: number,
    readonly last: number,
    start = first,
  ) {
    this.next = last >= first ? first + ((((start - first) % this.size) + this.size) % this.size) : first;
  }

  get size(): number {
    return Math.max(0, this.last - this.first + 1);
  }

  /**
   * Listens on the next free port of the range, or on port 0 when none is
   * free; resolves with the bound port. Rejects with the listen error for
   * anything but a taken port (EMFILE, EADDRNOTAVAIL, ...).
   */
  async listen(server: net.Server, host: string): Promise<number> {
    for (let tries = 0; tries < this.size; tries++) {
      const port = this.next;
      this.next = port === this.last ? this.first : port + 1;
      try {
        return await listenOn(server, host, port);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
    return listenOn(server, host, 0);
  }
}

let shared: SandboxPorts | undefined;

/** The process's cursor: EMULATED_PORT_FIRST up to just below the ephemeral range. */
export function sharedSandboxPorts(): SandboxPorts {
  shared ??= (() => {
    const last = ephemeralLow() - 1;
    return last - EMULATED_PORT_FIRST + 1 >= MIN_RANGE ? new SandboxPorts(EMULATED_PORT_FIRST, last, EMULATED_PORT_FIRST + process.pid) : new SandboxPorts(1, 0);
  })();
  return shared;
}

/** The low end of the kernel's ephemeral port range (Linux), or Linux's default elsewhere. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : LINUX_EPHEMERAL_LOW;
  } catch {
    return LINUX_EPHEMERAL_LOW;
  }
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    // Both listeners go whichever fires: a port found taken is retried on the
    // same server, and a leftover 'listening' callback per try would pile up.
    const onListening = (): void => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    };
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true });
  });
}
