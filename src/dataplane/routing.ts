// Which function a request is for. A `/fn/<name>/…` path prefix wins (it
// works from any client with no DNS set-up); otherwise the first label of the
// Host header (HTTP/2 :authority), as Dirigent routes, so `f.example.com`
// and `f:8080` both name `f`.
//
// Pure string functions, called once per request; they return strings rather
// than objects so the hot path allocates only the substrings it needs.

const FN_PREFIX = '/fn/';

/** The function named by a `/fn/<name>` path prefix, or '' when the path has none. */
export function functionFromPath(url: string): string {
  if (!url.startsWith(FN_PREFIX)) return '';
  const end = nameEnd(url);
  return url.slice(FN_PREFIX.length, end);
}

/**
 * The path to forward once the `/fn/<name>` prefix is stripped: the query is
 * kept, and `/fn/<name>` alone (or with only a query) forwards `/`.
 */
export function stripFunctionPrefix(url: string): string {
  const end = nameEnd(url);
  if (end === url.length) return '/';
  return url.charCodeAt(end) === 63 /* ? */ ? '/' + url.slice(end) : url.slice(end);
}

function nameEnd(url: string): number {
  for (let i = FN_PREFIX.length; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */) return i;
  }
  return url.length;
}

/** The first DNS label of a Host value, or '' for an IP literal or an empty host. */
export function functionFromHost(host: string): string {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c === 46 /* . */ || c === 58 /* : */) return i === 0 ? '' : host.slice(0, i);
    if (c === 91 /* [ */) return '';
  }
  return host;
}

/** The function a request names: its `/fn/<name>` prefix, else its Host label. */
export function functionOf(target: string, host: string): string {
  return target.startsWith(FN_PREFIX) ? functionFromPath(target) : functionFromHost(host);
}

/** The path to forward to the sandbox: without the `/fn/<name>` prefix, if it had one. */
export function forwardedPath(target: string): string {
  return target.startsWith(FN_PREFIX) ? stripFunctionPrefix(target) : target;
}

/**
 * Async invocation results are read at /v1/invocations/<id> on the data
 * plane's port (docs/dataplane.md#async-invocations). The path is reserved:
 * it is checked before routing, so a Host-routed function never sees a
 * request for it (a /fn/<name>/v1/invocations/… path still reaches the function).
 */
export const INVOCATIONS_PATH = '/v1/invocations';

/** Whether a request target is /v1/invocations or below it. */
export function isInvocationsPath(target: string): boolean {
  if (!target.startsWith(INVOCATIONS_PATH)) return false;
  const c = target.charCodeAt(INVOCATIONS_PATH.length);
  return Number.isNaN(c) || c === 47 /* / */ || c === 63 /* ? */;
}
