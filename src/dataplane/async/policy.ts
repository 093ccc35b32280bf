// What happens after an async attempt, and how a result is shown: pure
// functions, so the rules are tested without a cluster.
//
// Retries follow Lambda's asynchronous invocation: a function error (here: a
// 5xx, or the data plane's own 502/503/504 for a crash, a lost connection, a
// timeout or a full queue) is retried up to maxRetries times with a growing
// back-off; a 4xx is the caller's mistake and running it again cannot help.

export interface RetryPolicy {
  readonly maxRetries: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
}

export type NextStep = { readonly kind: 'succeeded' } | { readonly kind: 'failed' } | { readonly kind: 'retry'; readonly delayMs: number };

/** The back-off before retry `retry` (1 for the first): initial × 2^(retry−1), capped. */
export function backoffMs(retry: number, p: RetryPolicy): number {
  return Math.min(p.backoffMaxMs, p.backoffInitialMs * 2 ** Math.min(retry - 1, 40));
}

/**
 * What to do after attempt number `attempts` (1 for the first) answered
 * `status`. `final` marks an answer no retry can change (RESULT_TOO_LARGE,
 * FUNCTION_NOT_FOUND): it fails at once.
 */
export function nextStep(status: number, attempts: number, p: RetryPolicy, final = false): NextStep {
  if (status < 400) return { kind: 'succeeded' };
  if (status < 500 || final || attempts > p.maxRetries) return { kind: 'failed' };
  return { kind: 'retry', delayMs: backoffMs(attempts, p) };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A body for JSON: as text when it is valid UTF-8, else base64. */
export function encodeBody(body: Uint8Array): { body: string; encoding: 'utf-8' | 'base64' } {
  try {
    return { body: utf8.decode(body), encoding: 'utf-8' };
  } catch {
    return { body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'), encoding: 'base64' };
  }
}

/** Header pairs as one object with lower-case names; repeated names are joined with ", " (set-cookie with "\n"). */
export function headerObject(pairs: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    const l = name.toLowerCase();
    const had = out[l];
    out[l] = had === undefined ? value : `${had}${l === 'set-cookie' ? '\n' : ', '}${value}`;
  }
  return out;
}
