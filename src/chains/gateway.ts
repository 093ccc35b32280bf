// A chain's gateway: the only place its requests' HTTP is parsed or written
// (SPRIGHT's gateway, reference/spright-kubedirect.md §1.1). A request is
// copied once into a slot of the chain's pool (chain.ts) and answered from
// the slot when the chain hands it back. It runs as the sandbox of the
// chain's function, so the data plane forwards to it like to any sandbox,
// with `/fn/<chain>` already removed from the path.
//
// Besides the chain's routes: GET /health (the worker's readiness probe) and
// GET /__baton/chain-metrics (the pool and the per-member load counters).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BatonError, toBatonError } from '../shared/errors.js';
import { sendError, sendJson } from '../shared/rpc.js';
import type { Chain } from './chain.js';

export const CHAIN_METRICS_PATH = '/__baton/chain-metrics';

export interface ChainGateway {
  readonly server: http.Server;
  readonly port: number;
  /** Stops accepting, lets the requests in the chain finish (up to drainMs), then closes every connection. */
  close(drainMs?: number): Promise<void>;
}

export async function startGateway(chain: Chain, host: string, port: number): Promise<ChainGateway> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/health' && req.method === 'GET') return sendJson(res, chain.state === 'RUNNING' ? 200 : 503, { status: chain.state });
    if (url === CHAIN_METRICS_PATH && req.method === 'GET') return sendJson(res, 200, chain.metrics());
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    chain
      .invoke({ method: req.method ?? 'GET', url, headers }, req, (abandon) => res.once('close', () => res.writableFinished || abandon()))
      .then((r) => {
        res.writeHead(r.status, { ...r.headers, 'content-length': r.body.length });
        res.end(r.body);
      })
      .catch((err: unknown) => {
        const e = toBatonError(err);
        if (!(err instanceof BatonError)) console.error(`chain ${chain.spec.name}: request failed:`, err);
        // An unread body would be parsed as the next request on this connection.
        sendError(res, e, req.complete ? undefined : { connection: 'close' });
      });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async (drainMs = 10_000) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // The data plane keeps connections open: once the chain is empty, nothing more is owed on them.
      const deadline = Date.now() + drainMs;
      while (chain.waiting() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      server.closeAllConnections();
      await closed;
    },
  };
}
