// A small client for the admin API, used by the CLI verbs. It finds the API
// through --api or BATON_API, sends the bearer token from --token or
// BATON_TOKEN, and turns `{code, message}` answers back into BatonErrors so
// the CLI prints the same code the server raised.
import { request } from 'undici';
import { BatonError, isErrorCode } from '../shared/errors.js';

export const DEFAULT_API = 'http://127.0.0.1:9090';

export interface AdminClientOptions {
  api?: string | undefined;
  token?: string | undefined;
}

export class AdminClient {
  readonly api: string;
  private readonly token: string | undefined;

  constructor(options: AdminClientOptions = {}) {
    this.api = (options.api ?? process.env.BATON_API ?? DEFAULT_API).replace(/\/+$/, '');
    this.token = options.token ?? process.env.BATON_TOKEN ?? undefined;
  }

  async call<T = Record<string, unknown>>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      res = await request(`${this.api}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new BatonError('PEER_UNAVAILABLE', `cannot reach the admin API at ${this.api}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      throw new BatonError('INTERNAL', `${this.api}${path} answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`);
    }
    if (res.statusCode >= 400) {
      const p = parsed as { code?: string; message?: string };
      const code = p.code && isErrorCode(p.code) ? p.code : 'INTERNAL';
      throw new BatonError(code, p.message ?? `HTTP ${res.statusCode}`);
    }
    return parsed as T;
  }

  /** The proxy address of the first registered data plane, as http://host:port. */
  async dataPlaneUrl(): Promise<string> {
    const fromEnv = process.env.BATON_DATAPLANE;
    if (fromEnv) return fromEnv.replace(/\/+$/, '');
    const { dataPlanes } = await this.call<{ dataPlanes: { proxyAddress: string }[] }>('GET', '/v1/dataplanes');
    const first = dataPlanes[0];
    if (!first) throw new BatonError('PEER_UNAVAILABLE', 'no data plane is registered with the control plane');
    return `http://${first.proxyAddress}`;
  }
}
