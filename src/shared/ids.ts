// Identifiers. Sandbox ids are unique across the cluster and sortable by
// creation time, so logs and `describe` list them in order.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

export function newId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export function sandboxId(functionName: string): string {
  return newId(`sb-${functionName}`);
}

/** A default component id: the host name plus a random suffix, new on each start. */
export function componentId(kind: string): string {
  return `${kind}-${hostname()}-${randomBytes(3).toString('hex')}`;
}
