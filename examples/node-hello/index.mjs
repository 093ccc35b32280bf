// A Lambda-style function for Baton's `node` runtime. Deploy and call it:
//
//   npx baton deploy examples/node-hello/function.yaml
//   curl 'http://127.0.0.1:8080/fn/node-hello/?name=you'
//
// The event is an API Gateway HTTP API event (payload format 2.0); the result
// is the HTTP response (docs/runtimes.md, "node").
let invocations = 0;

export const handler = async (event, context) => {
  invocations += 1;
  const name = event.queryStringParameters?.name ?? 'world';
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      message: `Hello, ${name}!`,
      method: event.requestContext.http.method,
      path: event.rawPath,
      requestId: context.awsRequestId,
      sandbox: context.logStreamName,
      invocations,
    }),
  };
};
