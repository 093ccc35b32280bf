// The data plane: HTTP ingress that routes each invocation to a ready
// sandbox of its function, holds requests in a cold-start queue until one is
// ready, enforces per-sandbox concurrency, and reports load to the control
// plane. Its peers reach it only through proto/baton/v1/dataplane.proto.
export { DataPlane, type DataPlaneOptions, type DataPlaneState } from './dataplane.js';
export { LOAD_BALANCERS, createLoadBalancingPolicy, type LoadBalancingPolicy } from './loadbalancing/index.js';
