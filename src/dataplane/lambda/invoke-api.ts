// The Lambda Invoke API's wire format, without I/O: which function a path
// names, which invocation type a request asks for, and how Baton's outcomes
// become Lambda's answers (reference/workload-peers.md §4):
//
//   service errors   status + `x-amzn-ErrorType: <Type>` + `{message, Type, …}`
//                    (404 ResourceNotFoundException, 413 RequestTooLargeException,
//                    429 TooManyRequestsException with a Reason, …)
//   function errors  200 + `X-Amz-Function-Error: Unhandled` + `{errorMessage, errorType, stackTrace}`
//
// The official SDKs read the error type from x-amzn-ErrorType and the
// message from the body's `message`, so both are always set.
import type { FunctionErrorBody } from '../../shared/lambda.js';

export const LAMBDA_PATH_PREFIX = '/2015-03-31/functions/';
/** Lambda's payload limits: 6 MB for a synchronous call, 1 MB for an Event (asynchronous) one. */
export const SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024;
export const ASYNC_PAYLOAD_LIMIT = 1024 * 1024;
/** Lambda caps a synchronous answer at 6 MB too. */
export const RESPONSE_PAYLOAD_LIMIT = 6 * 1024 * 1024;
/** Baton has no versions or aliases: every call runs the one registered spec. */
export const EXECUTED_VERSION = '$LATEST';

export const INVOCATION_TYPES = ['RequestResponse', 'Event', 'DryRun'] as const;
export type InvocationType = (typeof INVOCATION_TYPES)[number];

/** Whether a request target is for the Invoke API (the fast path hands these to node:http). */
export function isLambdaTarget(target: string): boolean {
  return target.charCodeAt(1) === 50 /* 2 */ && target.startsWith(LAMBDA_PATH_PREFIX);
}

export interface InvokeTarget {
  /** The function's name, with any ARN prefix and qualifier taken off. */
  readonly name: string;
  /** The qualifier from the ARN or `?Qualifier=`; '' when none. */
  readonly qualifier: string;
}

/**
 * Parses `/2015-03-31/functions/{FunctionName}/invocations[?Qualifier=q]`.
 * FunctionName may be a name (`hello`), a name with a qualifier
 * (`hello:$LATEST`), a partial ARN (`123456789012:function:hello`) or a full
 * one (`arn:aws:lambda:us-east-1:123456789012:function:hello[:q]`), URL-encoded
 * as the SDKs send it. Returns undefined for any other path.
 */
export function parseInvokeTarget(url: string): InvokeTarget | undefined {
  if (!url.startsWith(LAMBDA_PATH_PREFIX)) return undefined;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const rest = path.slice(LAMBDA_PATH_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || rest.slice(slash) !== '/invocations') return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest.slice(0, slash));
  } catch {
    return undefined;
  }
  const parts = decoded.split(':');
  let name: string | undefined;
  let qualifier: string | undefined;
  if (parts[0] === 'arn' && parts.length >= 7 && parts[5] === 'function') [name, qualifier] = [parts[6], parts[7]];
  else if (parts.length >= 3 && parts[1] === 'function') [name, qualifier] = [parts[2], parts[3]];
  else if (parts.length <= 2) [name, qualifier] = [parts[0], parts[1]];
  if (name === undefined || name === '') return undefined;
  const query = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('Qualifier');
  return { name, qualifier: query ?? qualifier ?? '' };
}

/** The invocation type a request asks for (RequestResponse when absent), or undefined for an unknown one. */
export function parseInvocationType(header: string | string[] | undefined): InvocationType | undefined {
  if (header === undefined || header === '') return 'RequestResponse';
  if (typeof header !== 'string') return undefined;
  return (INVOCATION_TYPES as readonly string[]).includes(header) ? (header as InvocationType) : undefined;
}

/** A service error: the call did not run the function. */
export interface ServiceError {
  readonly status: number;
  /** Sent as x-amzn-ErrorType and the body's `Type`. */
  readonly type: string;
  readonly message: string;
  /** TooManyRequestsException's reason. */
  readonly reason?: string;
  /** Seconds, for Retry-After and TooManyRequestsException's retryAfterSeconds. */
  readonly retryAfterSeconds?: number;
  /** Baton's own error code, when a Baton error caused it. */
  readonly code?: string;
}

export function serviceErrorBody(e: ServiceError): string {
  return JSON.stringify({
    Type: e.status >= 500 ? 'Service' : 'User',
    message: e.message,
    ...(e.reason === undefined ? {} : { Reason: e.reason }),
    ...(e.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: String(e.retryAfterSeconds) }),
    ...(e.code === undefined ? {} : { code: e.code }),
  });
}

export function notFound(name: string): ServiceError {
  return { status: 404, type: 'ResourceNotFoundException', message: `Function not found: ${name}`, code: 'FUNCTION_NOT_FOUND' };
}

export function tooLarge(limit: number): ServiceError {
  return {
    status: 413,
    type: 'RequestTooLargeException',
    message: `Request must be smaller than ${limit} bytes for the InvokeFunction operation`,
    code: 'BODY_TOO_LARGE',
  };
}

export function invalidRequest(message: string, type = 'InvalidRequestContentException'): ServiceError {
  return { status: 400, type, message, code: 'INVALID_REQUEST' };
}

/** What the function's scaling says about a full queue, for TooManyRequestsException's Reason. */
export interface ThrottleContext {
  /** The function's maxScale (0: unlimited). */
  readonly maxScale: number;
  /** Sandboxes it has now. */
  readonly sandboxes: number;
}

/**
 * The answer for a request Baton failed before or instead of running the
 * function: a service error, or a function error for the failures Lambda
 * reports as the function's own (a time-out, a crash).
 */
export function fromBatonFailure(
  status: number,
  code: string,
  message: string,
  throttle: ThrottleContext,
  retryAfter?: string,
): { service: ServiceError } | { functionError: FunctionErrorBody } {
  switch (code) {
    case 'QUEUE_FULL':
    case 'ASYNC_QUEUE_FULL': {
      // A capped function at its cap is throttled by its own reservation; otherwise the platform is.
      const capped = throttle.maxScale > 0 && throttle.sandboxes >= throttle.maxScale;
      const seconds = Math.max(1, Math.ceil(Number(retryAfter ?? '1')) || 1);
      return {
        service: {
          status: 429,
          type: 'TooManyRequestsException',
          message: `Rate Exceeded. ${message}`,
          reason: capped ? 'ReservedFunctionConcurrentInvocationLimitExceeded' : 'ConcurrentInvocationLimitExceeded',
          retryAfterSeconds: seconds,
          code,
        },
      };
    }
    case 'FUNCTION_NOT_FOUND':
      return { service: { ...notFound(''), message } };
    case 'BODY_TOO_LARGE':
      return { service: { status: 413, type: 'RequestTooLargeException', message, code } };
    case 'REQUEST_TIMEOUT':
      return { functionError: { errorMessage: `Task timed out: ${message}`, errorType: 'Sandbox.Timedout', stackTrace: [] } };
    case 'SANDBOX_CRASHED':
      return { functionError: { errorMessage: message, errorType: 'Runtime.ExitError', stackTrace: [] } };
    default: {
      const seconds = retryAfter === undefined ? undefined : Math.max(1, Math.ceil(Number(retryAfter)) || 1);
      return {
        service: {
          status: status >= 400 && status <= 599 ? status : 500,
          type: status >= 500 ? 'ServiceException' : 'InvalidRequestContentException',
          message,
          code,
          ...(seconds === undefined ? {} : { retryAfterSeconds: seconds }),
        },
      };
    }
  }
}

/**
 * The function error for an HTTP function's 5xx: Lambda's error object,
 * with the status and the start of the body in the message.
 */
export function httpFunctionError(status: number, body: Buffer): FunctionErrorBody {
  const text = body.subarray(0, 512).toString('utf8').trim();
  return { errorMessage: `the function answered HTTP ${status}${text === '' ? '' : `: ${text}`}`, errorType: `HTTP${status}`, stackTrace: [] };
}
