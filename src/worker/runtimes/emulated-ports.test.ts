import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { after, describe, it } from 'node:test';
import { SandboxPorts } from './emulated-ports.js';

function listenOn(port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(undefined));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(s));
  });
}

/** A block of `n` consecutive ports free right now: the test binds them itself, in its own order. */
async function freeBlock(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 40_000 + Math.floor(Math.random() * 15_000);
    const held = await Promise.all(Array.from({ length: n }, (_, i) => listenOn(first + i)));
    await Promise.all(held.map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
    if (held.every(Boolean)) return first;
  }
  throw new Error('no free block of ports');
}

describe('emulated sandbox ports', () => {
  const servers: net.Server[] = [];
  const server = (): net.Server => {
    const s = net.createServer();
    servers.push(s);
    return s;
  };
  after(async () => {
    await Promise.all(servers.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
  });

  it('hands out the range in order from the start, skipping a port something else holds, and wraps', async () => {
    const first = await freeBlock(4);
    const ports = new SandboxPorts(first, first + 3, first + 1);
    const squatter = server();
    await new Promise<void>((r) => squatter.listen({ host: '127.0.0.1', port: first + 2 }, () => r()));
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await ports.listen(server(), '127.0.0.1'));
    assert.deepEqual(got, [first + 1, first + 3, first]);
  });

  it('falls back to a port the kernel picks when the range is full, or empty', async () => {
    const first = await freeBlock(1);
    const ports = new SandboxPorts(first, first);
    assert.equal(await ports.listen(server(), '127.0.0.1'), first);
    const fallback = await ports.listen(server(), '127.0.0.1');
    assert.ok(fallback > 0 && fallback !== first);
    assert.ok((await new SandboxPorts(1, 0).listen(server(), '127.0.0.1')) > 0);
  });

  it('rejects with any other listen error', async () => {
    const first = await freeBlock(2);
    // TEST-NET-1 is not an address of this machine.
    await assert.rejects(new SandboxPorts(first, first + 1).listen(server(), '192.0.2.1'), { code: 'EADDRNOTAVAIL' });
  });
});
