// A chain's region for the cross-process transport: a file under /dev/shm
// (tmpfs: memory, not disk), mode 0600, holding every slot and the nodes'
// load counters at the same offsets as the in-process pool. Without a native
// addon Node cannot mmap it, so a node reads a slot into its own memory when
// a descriptor arrives and writes it back before passing the descriptor on:
// positional I/O, two copies per hop. It is NOT zero-copy (docs/chains.md).
import { closeSync, ftruncateSync, openSync, readSync, rmSync, writeSync } from 'node:fs';

export class FileRegion {
  private closed = false;

  /** Makes the file (it must not exist: two chains never share one), `bytes` long. */
  static create(path: string, bytes: number): FileRegion {
    const fd = openSync(path, 'wx+', 0o600);
    ftruncateSync(fd, bytes);
    return new FileRegion(path, fd, true);
  }

  static open(path: string): FileRegion {
    return new FileRegion(path, openSync(path, 'r+'), false);
  }

  private constructor(readonly path: string, private readonly fd: number, private readonly owner: boolean) {}

  read(offset: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.fd, into, done, into.length - done, offset + done);
      if (n === 0) throw new RangeError(`${this.path}: ends before byte ${offset + done}`);
      done += n;
    }
  }

  write(offset: number, from: Uint8Array): void {
    let done = 0;
    while (done < from.length) done += writeSync(this.fd, from, done, from.length - done, offset + done);
  }

  /** Closes the file; the creator also removes it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    if (this.owner) rmSync(this.path, { force: true });
  }
}
