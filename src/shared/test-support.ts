// Helpers shared by the tests of every component (src/**.test.ts and test/).
// Not used by Baton itself.
import { createServer } from 'node:net';

/** A loopback port free right now (the kernel's pick; another program could take it before use). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
