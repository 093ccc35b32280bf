// The cross-process transport: each node of the chain is a process listening
// on a Unix domain socket in the chain's private directory (mode 0700), and a
// descriptor is a 12-byte frame (pool id, slot, generation) written to the
// target's socket. The kernel wakes the receiver: no polling. This is the
// Python variant of SPRIGHT's S-SPRIGHT without eBPF (a descriptor over a
// socket; reference/spright-kubedirect.md §1.2), with the slot itself in a
// /dev/shm file (shm/file-region.ts).
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import type { Descriptor } from './shm/ring.js';
import type { ChainTransport } from './transport.js';

const FRAME_BYTES = 12;

export function socketPath(dir: string, node: number): string {
  return join(dir, `node-${node}.sock`);
}

export class UnixSocketTransport implements ChainTransport {
  private server: net.Server | undefined;
  private receive: ((d: Descriptor) => void) | undefined;
  private readonly peers = new Map<number, net.Socket>();
  /** Sockets not yet connected, with the descriptors written to them so far. */
  private readonly connecting = new Map<net.Socket, Descriptor[]>();

  /**
   * `undeliverable` gets descriptors whose target could not be connected to
   * (its process is gone and not yet replaced), so their request can be failed
   * instead of lost.
   */
  constructor(
    private readonly dir: string,
    private readonly self: number,
    private readonly undeliverable: (d: Descriptor, to: number) => void,
  ) {}

  /** Starts listening on this node's socket (a stale one from a dead predecessor is removed first). */
  async listen(): Promise<void> {
    const path = socketPath(this.dir, this.self);
    rmSync(path, { force: true });
    const server = net.createServer((socket) => {
      let pending: Buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        const buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
        let off = 0;
        for (; buf.length - off >= FRAME_BYTES; off += FRAME_BYTES) {
          const d: Descriptor = { poolId: buf.readInt32LE(off), slot: buf.readInt32LE(off + 4), generation: buf.readInt32LE(off + 8) };
          try {
            this.receive?.(d);
          } catch (err) {
            console.error(`chain node ${this.self}: a descriptor could not be handled:`, err);
          }
        }
        pending = buf.subarray(off);
      });
      // A peer that dies resets its connection; its frames were handled or are its owner's to fail.
      socket.on('error', () => undefined);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  }

  send(desc: Descriptor, to: number): void {
    let socket = this.peers.get(to);
    if (!socket || socket.destroyed) socket = this.connect(to);
    // Until the connection is made, a frame can still be reported as undeliverable.
    this.connecting.get(socket)?.push(desc);
    const frame = Buffer.allocUnsafe(FRAME_BYTES);
    frame.writeInt32LE(desc.poolId, 0);
    frame.writeInt32LE(desc.slot, 4);
    frame.writeInt32LE(desc.generation, 8);
    socket.write(frame);
  }

  private connect(to: number): net.Socket {
    const s = net.connect(socketPath(this.dir, to));
    this.connecting.set(s, []);
    s.once('connect', () => this.connecting.delete(s));
    s.on('error', () => {
      if (this.peers.get(to) === s) this.peers.delete(to);
      for (const d of this.connecting.get(s) ?? []) this.undeliverable(d, to);
      this.connecting.delete(s);
    });
    s.on('close', () => {
      if (this.peers.get(to) === s) this.peers.delete(to);
      this.connecting.delete(s);
    });
    this.peers.set(to, s);
    return s;
  }

  onReceive(receive: (desc: Descriptor) => void): void {
    this.receive = receive;
  }

  close(): void {
    this.server?.close();
    for (const s of this.peers.values()) s.destroy();
    this.peers.clear();
  }
}
