// The workloads as chain members (docs/chains.md): handlers that get a ChainMessage
// over the request's slot.
import { boutique, parking } from './services.mjs';

// Parking, a static route: each member reads the previous result from the slot and
// writes its own in its place. Detection reads the image straight from the slot.
export const detection = (msg) => msg.write(parking.detection(msg.body));
export const search = (msg) => msg.write(parking.search(msg.json()));
export const index = (msg) => msg.write(parking.index(msg.json()));
export const persist = (msg) => msg.write(parking.persist(msg.json()));
export const charging = (msg) => msg.write(parking.charging(msg.json()));

// The boutique, dynamic: RPC-style calls through the slot. The arguments are written
// as the body, the callee's answer replaces them.
function rpc(msg) {
  return async (service, args) => {
    msg.write(args);
    await msg.call(service);
    return msg.json();
  };
}
export async function frontend(msg) {
  msg.write(await boutique.frontend({ page: msg.path, user: msg.query.get('user') ?? 'u1' }, rpc(msg)));
}
export async function checkout(msg) {
  msg.write(await boutique.checkout(msg.json(), rpc(msg)));
}
export const currency = (msg) => msg.write(boutique.currency(msg.json()));
export const productcatalog = (msg) => msg.write(boutique.productcatalog(msg.json()));
export const cart = (msg) => msg.write(boutique.cart(msg.json()));
export const recommendation = (msg) => msg.write(boutique.recommendation(msg.json()));
export const shipping = (msg) => msg.write(boutique.shipping(msg.json()));
export const payment = (msg) => msg.write(boutique.payment(msg.json()));
export const email = (msg) => msg.write(boutique.email(msg.json()));
export const ad = (msg) => msg.write(boutique.ad(msg.json()));
