// Dirigent's registration form, so an unmodified InVitro can deploy on Baton
// (reference/dirigent.md §1 "Registration server" and §2;
// reference/workload-peers.md §1.4): `POST /registerService` (or `POST /`),
// application/x-www-form-urlencoded, answered with the data planes'
// host:port joined by `;`, from which the loader picks one.
//
// Pure: the form becomes a Baton function spec here; admin-api.ts does the
// HTTP and the registration. Only the InVitro/Dirigent workload images can be
// run (they map to Baton's built-in trace function, which speaks InVitro's
// headers and answer): Baton does not pull container images.
import { fileURLToPath } from 'node:url';
import { BatonError } from '../shared/errors.js';
import type { FunctionSpecInput } from '../shared/spec.js';

/** The compiled trace function (src/loadgen/trace-function.ts), run with the process runtime. */
const TRACE_FUNCTION_PATH = fileURLToPath(new URL('../loadgen/trace-function.js', import.meta.url));

/** Paths Dirigent's registration server answers registrations on. */
export const DIRIGENT_REGISTRATION_PATHS: readonly string[] = ['/registerService', '/'];

/**
 * Dirigent's cold-start-sweep profile (`cold_start_sweep=true`, used by
 * InVitro's RPS mode): at most one sandbox, a 6 s stable window and a 2 s
 * panic window, so each function falls back to zero between its calls. An
 * explicit scaling_upper_bound in the form still wins over the profile's 1.
 */
export const COLD_START_SWEEP_SCALING = Object.freeze({ maxScale: 1, stableWindowSec: 6, panicWindowSec: 2 });

/** Dirigent's unset upper bound is MaxInt32; Baton says unlimited with 0, and caps counts at this. */
const MAX_COUNT = 100_000;

/** Whether an `image` names one of InVitro's or Dirigent's workload images, which Baton runs as its trace function. */
export function isTraceImage(image: string): boolean {
  const i = image.trim().toLowerCase();
  return i === 'empty' || i === 'trace' || i.includes('dirigent_empty_function') || i.includes('dirigent_trace_function');
}

function invalid(field: string, message: string): BatonError {
  return new BatonError('INVALID_REQUEST', `${field}: ${message}`, { details: { field } });
}

/** A non-negative integer field; undefined when absent or empty. */
function count(form: URLSearchParams, field: string): number | undefined {
  const raw = form.get(field);
  if (raw === null || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw invalid(field, `must be a non-negative number, got ${JSON.stringify(raw)}`);
  return Math.round(n);
}

/**
 * The Baton spec for a Dirigent registration form. Throws INVALID_REQUEST
 * naming the field (a missing name, an image Baton cannot run, a bad number);
 * the spec's own rules are checked when it is registered (INVALID_SPEC).
 */
export function dirigentSpec(form: URLSearchParams): FunctionSpecInput {
  const name = form.get('name')?.trim() ?? '';
  if (name === '') throw invalid('name', 'is required');
  const image = form.get('image') ?? '';
  if (!isTraceImage(image)) {
    throw invalid(
      'image',
      `${JSON.stringify(image)} is not an image Baton can run: the Dirigent form registers only InVitro's workload images ` +
        '(dirigent_trace_function, dirigent_empty_function, "trace" or "empty"), which run as Baton\'s trace function. ' +
        'Register anything else with POST /v1/functions (a process, oci, node or emulated spec; docs/controlplane.md)',
    );
  }
  const ports = form.getAll('port_forwarding');
  if (ports.length > 0) {
    const [port, protocol] = ports;
    const p = Number(port);
    if (ports.length !== 2 || !Number.isInteger(p) || p < 1 || p > 65535) {
      throw invalid('port_forwarding', 'must be given twice: the port, then the protocol (port_forwarding=80&port_forwarding=tcp)');
    }
    if (protocol?.toLowerCase() !== 'tcp') throw invalid('port_forwarding', `protocol ${JSON.stringify(protocol)}: Baton proxies HTTP, over tcp only`);
    // The port is the container's; Baton's trace function listens where the worker tells it ($PORT).
  }

  const scaling: Record<string, number> = {
    // Dirigent scales to zero as soon as its stable window averages zero: no grace period on top.
    scaleToZeroGraceSec: 0,
  };
  // The sweep profile first, then the bounds the form gives: InVitro's RPS mode sends
  // cold_start_sweep=true for its warm function too, with bounds [1, 1024].
  if (form.get('cold_start_sweep')?.trim().toLowerCase() === 'true') Object.assign(scaling, COLD_START_SWEEP_SCALING);
  const lower = count(form, 'scaling_lower_bound');
  const upper = count(form, 'scaling_upper_bound');
  if (lower !== undefined) scaling.minScale = Math.min(lower, MAX_COUNT);
  if (upper !== undefined) scaling.maxScale = upper > MAX_COUNT ? 0 : upper;
  if (upper === 0) {
    throw invalid('scaling_upper_bound', 'is 0: the function could never run (Baton reads a maxScale of 0 as unlimited; leave the field out for that)');
  }

  const resources: Record<string, number> = {};
  const cpu = count(form, 'requested_cpu');
  const memory = count(form, 'requested_memory');
  if (cpu !== undefined) resources.cpuMillis = Math.max(1, cpu);
  if (memory !== undefined) resources.memoryMb = Math.max(1, memory);

  const env: Record<string, string> = {};
  const multiplier = count(form, 'iteration_multiplier');
  const busyLoopMs = count(form, 'cold_start_busy_loop_ms');
  if (multiplier !== undefined && multiplier > 0) env.ITERATIONS_MULTIPLIER = String(multiplier);
  if (busyLoopMs !== undefined && busyLoopMs > 0) env.COLD_START_BUSY_LOOP_MS = String(busyLoopMs);

  return {
    // InVitro's names (t<hex>-<random>) are DNS labels once lower-cased; the data plane matches Host labels case-insensitively.
    name: name.toLowerCase(),
    runtime: 'process',
    command: [process.execPath, TRACE_FUNCTION_PATH],
    env,
    resources,
    scaling,
  };
}

/** Dirigent's answer: the data planes' invocation addresses (host:port), joined by `;`. */
export function dirigentAnswer(proxyAddresses: readonly string[]): string {
  return [...proxyAddresses].sort().join(';');
}
