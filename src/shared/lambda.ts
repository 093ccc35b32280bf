// What the data plane and the `node` runtime agree on for the Lambda Invoke
// API (docs/dataplane.md, "Lambda Invoke API"): a request carrying
// LAMBDA_EVENT_HEADER holds a raw Lambda event (the Invoke payload) instead
// of an HTTP request to wrap in an API Gateway event, and its answer is the
// handler's raw return value, JSON-serialised as Lambda's Node runtime does.
// A handler that throws answers 200 with FUNCTION_ERROR_HEADER and Lambda's
// error object, so the data plane can tell a function error from a result
// without parsing the body.

/** Request header, data plane → sandbox: the body is a raw Lambda event. */
export const LAMBDA_EVENT_HEADER = 'x-baton-lambda-event';
/** Response header, sandbox → data plane: the body is a function error (`Unhandled`). */
export const FUNCTION_ERROR_HEADER = 'x-baton-function-error';

/** Lambda's error object for a failed invocation, as the Invoke API returns it. */
export interface FunctionErrorBody {
  errorMessage: string;
  errorType: string;
  stackTrace: string[];
}

/** Lambda's error object for something thrown by a handler (anything may be thrown). */
export function thrownErrorBody(err: unknown): FunctionErrorBody {
  if (err instanceof Error) {
    const lines = (err.stack ?? '').split('\n');
    // The stack's first line repeats "Name: message"; Lambda's stackTrace holds the frames.
    const frames = lines.slice(1).map((l) => l.trim()).filter((l) => l !== '');
    return { errorMessage: err.message, errorType: err.name, stackTrace: frames };
  }
  return { errorMessage: typeof err === 'string' ? err : String(JSON.stringify(err) ?? err), errorType: typeof err === 'string' ? 'string' : typeof err, stackTrace: [] };
}

/** The Invoke response body for a handler's result: Lambda's Node runtime sends JSON.stringify(result), `null` for undefined. */
export function resultPayload(result: unknown): Buffer {
  return Buffer.from(JSON.stringify(result === undefined ? null : result) ?? 'null', 'utf8');
}
