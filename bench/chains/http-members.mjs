// The workloads as separate Baton functions of the `node` runtime, chained by HTTP
// calls through the data plane ($DP_URL/fn/<name>): the peer of the chain on shared
// memory. Every hop parses and writes HTTP and JSON, and crosses the data plane.
import { boutique, parking, PARKING_ROUTE } from './services.mjs';

const DP = process.env.DP_URL;
const PREFIX = process.env.FN_PREFIX ?? '';

async function post(service, args) {
  const res = await fetch(`${DP}/fn/${PREFIX}${service}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(args) });
  if (!res.ok) throw new Error(`${service}: HTTP ${res.status}: ${await res.text()}`);
  return res.json();
}

const json = (value) => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

/** One step of the parking route: do this service's work, then hand the result to the next one and return its answer. */
function parkingStep(name) {
  const next = PARKING_ROUTE[PARKING_ROUTE.indexOf(name) + 1];
  return async (event) => {
    const input = name === 'detection' ? Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8') : JSON.parse(event.body);
    const out = parking[name](input);
    return json(next ? await post(`parking-${next}`, out) : out);
  };
}
export const detection = parkingStep('detection');
export const search = parkingStep('search');
export const index = parkingStep('index');
export const persist = parkingStep('persist');
export const charging = parkingStep('charging');

const call = (service, args) => post(`ob-${service}`, args);
export async function frontend(event) {
  return json(await boutique.frontend({ page: event.rawPath, user: event.queryStringParameters?.user ?? 'u1' }, call));
}
export async function checkout(event) {
  return json(await boutique.checkout(JSON.parse(event.body), call));
}
export const currency = async (event) => json(boutique.currency(JSON.parse(event.body)));
export const productcatalog = async (event) => json(boutique.productcatalog(JSON.parse(event.body)));
export const cart = async (event) => json(boutique.cart(JSON.parse(event.body)));
export const recommendation = async (event) => json(boutique.recommendation(JSON.parse(event.body)));
export const shipping = async (event) => json(boutique.shipping(JSON.parse(event.body)));
export const payment = async (event) => json(boutique.payment(JSON.parse(event.body)));
export const email = async (event) => json(boutique.email(JSON.parse(event.body)));
export const ad = async (event) => json(boutique.ad(JSON.parse(event.body)));
