// Host ports for sandboxes. The kernel picks a free port (listen on port 0,
// read it, close); we remember the ports our sandboxes hold, because a
// sandbox that has not bound its port yet looks free to the kernel and must
// not be handed out twice.
//
// There is a window between our close and the sandbox's bind in which another
// program could take the port; the sandbox then fails to start and the
// control plane retries. Dirigent picks random ports with the same race.
import * as net from 'node:net';
import { BatonError } from '../shared/errors.js';

const MAX_ATTEMPTS = 20;

export class PortAllocator {
  private readonly inUse = new Set<number>();

  constructor(private readonly host: string) {}

  /** A port free on the host and not held by one of our sandboxes. */
  async allocate(): Promise<number> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const port = await kernelFreePort(this.host);
      if (!this.inUse.has(port)) {
        this.inUse.add(port);
        return port;
      }
    }
    throw new BatonError('SANDBOX_START_FAILED', `no free port on ${this.host} after ${MAX_ATTEMPTS} attempts`);
  }

  release(port: number): void {
    this.inUse.delete(port);
  }

  get size(): number {
    return this.inUse.size;
  }
}

function kernelFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', (err) =>
      reject(new BatonError('SANDBOX_START_FAILED', `cannot allocate a port on ${host}: ${err.message}`, { cause: err })),
    );
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
