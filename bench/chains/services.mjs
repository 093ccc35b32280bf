// The business logic of the two SPRIGHT workloads (reference/spright-kubedirect.md
// §1.6), written once and run two ways by the benchmark: as members of a chain on
// shared memory (shm-members.mjs) and as separate Baton functions calling each other
// over HTTP through the data plane (http-members.mjs). Each service burns its
// execution time on the CPU (like SPRIGHT's synthetic `autoscale_compute`), so both
// transports carry the same work.

/** Busy-waits for `us` microseconds: the service's own work. */
export function work(us) {
  if (us <= 0) return;
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
}

// ---- parking: Detection → Search → Index → Persist → Charging (cfg/parking.cfg) ----

/** SPRIGHT's execution times, ms: Detection 435, Search 20, Index 1, Persist 10, Charging 50. */
export const PARKING_MS = Object.freeze({ detection: 435, search: 20, index: 1, persist: 10, charging: 50 });
export const PARKING_ROUTE = Object.freeze(['detection', 'search', 'index', 'persist', 'charging']);
/** The scale applied to PARKING_MS (1e-4: Detection 43.5 µs), from $PARKING_SCALE. */
const scale = () => Number(process.env.PARKING_SCALE ?? '0.0001');

export const parking = {
  /** The camera image in; a plate out. Reads the image where it lies (the slot, or the request buffer). */
  detection(image) {
    work(PARKING_MS.detection * 1000 * scale());
    let sum = 0;
    for (let i = 0; i < image.length; i += 64) sum = (sum + image[i]) % 100_000;
    return { plate: `P${sum}`, bytes: image.length };
  },
  search(car) {
    work(PARKING_MS.search * 1000 * scale());
    return { ...car, known: car.plate.length % 2 === 0, lot: 7 };
  },
  index(car) {
    work(PARKING_MS.index * 1000 * scale());
    return { ...car, entry: car.plate.length * 31 };
  },
  persist(car) {
    work(PARKING_MS.persist * 1000 * scale());
    return { ...car, persisted: true };
  },
  charging(car) {
    work(PARKING_MS.charging * 1000 * scale());
    return { ...car, feeCents: car.known ? 250 : 400 };
  },
};

// ---- an Online Boutique-style call tree around a frontend (src/*service.c) ----------

/** Per-service work, µs: from the 200 ns to 260 µs spread of cfg/online_boutique.cfg, kept small. */
export const BOUTIQUE_US = Object.freeze({
  frontend: 10, currency: 2, productcatalog: 5, cart: 5, recommendation: 5, shipping: 3, checkout: 5, payment: 3, email: 3, ad: 2,
});
export const BOUTIQUE_SERVICES = Object.freeze(Object.keys(BOUTIQUE_US));
/** Locust's mix, simplified: per 12 requests, 1 home page, 10 product pages, 1 checkout. */
export const BOUTIQUE_MIX = Object.freeze(['/', ...Array(10).fill('/product'), '/checkout']);

/**
 * The services. `call(service, args)` is the RPC to another service: `msg.call` on
 * shared memory, an HTTP POST through the data plane otherwise.
 */
export const boutique = {
  async frontend(req, call) {
    work(BOUTIQUE_US.frontend);
    const user = req.user ?? 'u1';
    if (req.page === '/checkout') {
      const order = await call('checkout', { user });
      return { page: 'checkout', order };
    }
    const currency = await call('currency', { amount: 1999, to: 'EUR' });
    const products = await call('productcatalog', { id: req.page === '/product' ? 'p3' : undefined });
    const cart = await call('cart', { user });
    if (req.page === '/product') {
      const recs = await call('recommendation', { id: 'p3' });
      const ad = await call('ad', { context: 'p3' });
      return { page: 'product', currency, products, cart, recs, ad };
    }
    const ad = await call('ad', { context: 'home' });
    return { page: 'home', currency, products, cart, ad };
  },
  async checkout(req, call) {
    work(BOUTIQUE_US.checkout);
    const cart = await call('cart', { user: req.user });
    const products = await call('productcatalog', { ids: cart.items });
    const total = await call('currency', { amount: products.total, to: 'EUR' });
    const shipping = await call('shipping', { items: cart.items.length });
    const payment = await call('payment', { amount: total.amount + shipping.cost });
    const email = await call('email', { user: req.user, tx: payment.tx });
    return { items: cart.items.length, total: total.amount + shipping.cost, tx: payment.tx, emailed: email.sent };
  },
  currency(req) {
    work(BOUTIQUE_US.currency);
    return { amount: Math.round((req.amount ?? 0) * 0.92), currency: req.to };
  },
  productcatalog(req) {
    work(BOUTIQUE_US.productcatalog);
    return req.ids ? { total: req.ids.length * 1999 } : { products: ['p1', 'p2', 'p3'].filter((p) => !req.id || p === req.id) };
  },
  cart(req) {
    work(BOUTIQUE_US.cart);
    return { user: req.user, items: ['p1', 'p3'] };
  },
  recommendation(req) {
    work(BOUTIQUE_US.recommendation);
    return { ids: ['p1', 'p2'].filter((p) => p !== req.id) };
  },
  shipping(req) {
    work(BOUTIQUE_US.shipping);
    return { cost: 500 + req.items * 10 };
  },
  payment(req) {
    work(BOUTIQUE_US.payment);
    return { tx: `tx-${req.amount}` };
  },
  email() {
    work(BOUTIQUE_US.email);
    return { sent: true };
  },
  ad(req) {
    work(BOUTIQUE_US.ad);
    return { text: `ad for ${req.context}` };
  },
};
