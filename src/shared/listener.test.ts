import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { DualListener } from './listener.js';
import { silentLogger } from './logging.js';

async function h2get(port: number, path: string): Promise<string> {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': path });
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => resolve(body));
      req.on('error', reject);
      req.end();
    });
  } finally {
    client.close();
  }
}

function sendRaw(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = connect(port, '127.0.0.1', () => s.end(bytes));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
  });
}

test('one port serves HTTP/1.1 and h2c, and survives garbage', async () => {
  const l = await DualListener.listen((req, res) => res.end(`${req.httpVersion} ${req.url ?? ''}`), {
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
  });
  try {
    const r1 = await request(`http://127.0.0.1:${l.port}/one`);
    assert.equal(await r1.body.text(), '1.1 /one');
    assert.equal(await h2get(l.port, '/two'), '2.0 /two');

    const bad1 = await sendRaw(l.port, Buffer.from('\x00\x01garbage\r\n\r\n', 'latin1'));
    assert.match(bad1, /^HTTP\/1\.1 400/);
    await sendRaw(l.port, Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(64, 0xff)]));
    await sendRaw(l.port, Buffer.from('PRI'));

    const again = await request(`http://127.0.0.1:${l.port}/three`);
    assert.equal(await again.body.text(), '1.1 /three');
    assert.equal(await h2get(l.port, '/four'), '2.0 /four');
  } finally {
    await l.close();
  }
});

test('close() does not wait for idle keep-alive connections', async () => {
  const l = await DualListener.listen((_req, res) => res.end('ok'), { host: '127.0.0.1', port: 0, log: silentLogger() });
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  const h1 = await request(`http://127.0.0.1:${l.port}/`, { dispatcher: agent });
  await h1.body.text();
  const h2 = http2.connect(`http://127.0.0.1:${l.port}`);
  await new Promise((resolve) => h2.once('connect', resolve));
  // Both connections are open and idle; the grace is long, so only closing idle ones can end this early.
  const closing = l.close(30_000);
  const outcome = await Promise.race([closing.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 5000))]);
  assert.equal(outcome, 'closed');
  h2.destroy();
  await agent.close();
});
