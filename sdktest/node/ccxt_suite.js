// keystile's ccxt suite: drives unmodified ccxt through keystile's forward
// proxy, exactly as a bot configured per the README does. The only
// settings are the ones the README gives: apiKey/secret (and OKX's
// password) as placeholders — keystile signs — and ccxt's httpsProxy
// option with the kst_ token as the proxy user; the exported CA comes from
// NODE_EXTRA_CA_CERTS. No URL, method, option or header is changed.
//
// Input: KEYSTILE_CCXT_PLAN, a JSON document
//   {"proxy": "http://kst_test_...@127.0.0.1:PORT",
//    "exchanges": [{"id": "binance", "symbol": "BTC/USDT", "amount": 0.001,
//                   "price": 30000, "denied_amount": 5, "credentials": {...}}]}
// Steps: loadMarkets, fetchTicker, fetchBalance, createOrder (limit),
// fetchOpenOrders, cancelOrder, and an order keystile's policy denies.
// Output: one JSON line per step:
//   {"exchange", "step", "ok": true, ...result} or
//   {"exchange", "step", "ok": false, "error_class", "error_chain", "message"}
'use strict';
const ccxt = require('ccxt');

const plan = JSON.parse(process.env.KEYSTILE_CCXT_PLAN || '{}');

// errorChain lists the ccxt exception classes err is an instance of, most
// specific first (e.g. PermissionDenied, AuthenticationError, ExchangeError,
// BaseError).
function errorChain(err) {
  const out = [];
  for (let p = Object.getPrototypeOf(err); p && p.constructor && p.constructor !== Object; p = Object.getPrototypeOf(p)) {
    out.push(p.constructor.name);
    if (p.constructor === Error) break;
  }
  return out;
}

function report(exchange, step, fields) {
  console.log(JSON.stringify(Object.assign({ exchange, step }, fields)));
}

async function step(exchange, name, fn) {
  try {
    const res = await fn();
    report(exchange, name, Object.assign({ ok: true }, res));
    return res;
  } catch (err) {
    report(exchange, name, {
      ok: false,
      error_class: err && err.constructor ? err.constructor.name : typeof err,
      error_chain: err instanceof Error ? errorChain(err) : [],
      message: String(err && err.message || err).slice(0, 600),
    });
    return undefined;
  }
}

async function run(x) {
  const ex = new ccxt[x.id](Object.assign({}, x.credentials, { httpsProxy: plan.proxy, timeout: 20000 }));
  const markets = await step(x.id, 'loadMarkets', async () => {
    const m = await ex.loadMarkets();
    return { markets: Object.keys(m).length, has_symbol: x.symbol in m };
  });
  if (!markets) return;
  await step(x.id, 'fetchTicker', async () => {
    const t = await ex.fetchTicker(x.symbol);
    return { last: t.last };
  });
  await step(x.id, 'fetchBalance', async () => {
    const b = await ex.fetchBalance();
    const [base, quote] = x.symbol.split('/');
    return { base_total: b.total[base], quote_total: b.total[quote] };
  });
  const order = await step(x.id, 'createOrder', async () => {
    const o = await ex.createOrder(x.symbol, 'limit', 'buy', x.amount, x.price);
    return { id: o.id, client_order_id: o.clientOrderId };
  });
  if (order) {
    await step(x.id, 'fetchOpenOrders', async () => {
      const open = await ex.fetchOpenOrders(x.symbol);
      return { open: open.length, has_order: open.some((o) => o.id === order.id) };
    });
    await step(x.id, 'cancelOrder', async () => {
      const c = await ex.cancelOrder(order.id, x.symbol);
      return { id: c.id };
    });
  }
  await step(x.id, 'createOrderDenied', async () => {
    const o = await ex.createOrder(x.symbol, 'limit', 'buy', x.denied_amount, x.price);
    return { id: o.id };
  });
}

(async () => {
  report('', 'version', { ok: true, ccxt: ccxt.version });
  for (const x of plan.exchanges || []) {
    await run(x);
  }
})();
