// The live blotter: a PnL or equity chart, positions, orders and fills. The first page comes
// from the reports; then order updates and fills arrive over the live stream and go on top
// without a reload; the chart and positions are refreshed after fills.

import { api, optional } from './api.js';
import { lineChart } from './chart.js';
import { Table, card, col, debounce, h, money, note, num, select, side, time, utcMidnight } from './ui.js';

const RANGES = {
  today: ['Today (UTC)', () => utcMidnight(), '5m'],
  week: ['7 days', () => Date.now() - 7 * 86_400_000, '1h'],
  month: ['30 days', () => Date.now() - 30 * 86_400_000, '1d'],
};

export async function render(main, ctx) {
  const [deployments, accounts] = await Promise.all([api('/v1/deployments'), api('/v1/accounts')]);
  const filter = { bot: '', account: '', range: 'today', view: 'pnl' };
  const cursors = {};
  const summary = h('dl.summary');
  const chart = lineChart('No PnL for this period yet.');
  const selects = {
    bot: select('bot', [['', 'All bots'], ...deployments.map((d) => d.name)], ''),
    account: select('account', [['', 'All accounts'], ...accounts.map((a) => a.name)], ''),
    view: select('view', [['pnl', 'PnL'], ['equity', 'Equity']], 'pnl'),
    range: select('range', Object.entries(RANGES).map(([k, r]) => [k, r[0]]), 'today'),
  };

  const positions = new Table([
    col('Symbol', (p) => h('b', null, p.symbol)),
    col('Bot', (p) => p.bot),
    col('Account', (p) => p.account),
    col('Quantity', (p) => num(p.quantity), 'num'),
    col('Avg price', (p) => num(p.average_price), 'num'),
    col('Mark', (p) => num(p.mark), 'num'),
    col('Unrealized', (p) => money(p.unrealized_pnl), 'num'),
    col('Realized', (p) => money(p.realized_pnl), 'num'),
  ], { key: (p) => `${p.account}/${p.bot}/${p.symbol}`, empty: 'No positions.' });

  const tables = {
    orders: new Table([
      col('Time', (o) => time(o.updated_ms)),
      col('Bot', (o) => o.bot),
      col('Symbol', (o) => h('b', null, o.symbol)),
      col('Side', (o) => side(o.side)),
      col('Type', (o) => [o.order_type, o.limit_price && ` @ ${num(o.limit_price)}`]),
      col('Quantity', (o) => num(o.quantity), 'num'),
      col('Filled', (o) => num(o.filled_quantity), 'num'),
      col('Avg price', (o) => num(o.average_price), 'num'),
      col('Status', (o) => [h('span.status', { 'data-status': o.status }, o.status), o.reject_code && h('small.sub', { title: o.reject_reason }, o.reject_code)]),
    ], { key: (o) => o.order_id, empty: 'No orders yet.', cls: 'orders' }),
    fills: new Table([
      col('Time', (f) => time(f.ts_ms)),
      col('Bot', (f) => f.bot),
      col('Account', (f) => f.account),
      col('Symbol', (f) => h('b', null, f.symbol)),
      col('Side', (f) => side(f.side)),
      col('Quantity', (f) => num(f.quantity), 'num'),
      col('Price', (f) => num(f.price), 'num'),
      col('Fee', (f) => num(f.fee), 'num'),
      col('Realized', (f) => money(f.realized_pnl), 'num'),
    ], { key: (f) => f.fill_id, empty: 'No fills yet.', cls: 'fills' }),
  };
  const scope = () => Object.fromEntries(['bot', 'account'].filter((k) => filter[k]).map((k) => [k, filter[k]]));
  const more = {};
  const exports = (kind) => ['csv', 'json'].map((format) => h('a.btn.small', {
    href: `/v1/reports/${kind}/export?${new URLSearchParams({ format, ...scope() })}`, download: `${kind}.${format}`,
  }, format.toUpperCase()));

  async function page(kind, reset) {
    const answer = await optional(`/v1/reports/${kind}`, { ...scope(), limit: 50, cursor: reset ? null : cursors[kind] });
    if (reset) tables[kind].set([]);
    tables[kind].append(answer?.items || []);
    cursors[kind] = answer?.next_cursor;
    more[kind].hidden = !cursors[kind];
    return answer;
  }

  async function loadChart() {
    const [, start, bucket] = RANGES[filter.range];
    const query = { ...scope(), start: start(), end: Date.now(), bucket };
    const fact = (label, value) => h('div', null, h('dt', null, label), h('dd', null, value));
    if (filter.view === 'equity') {
      const equity = await optional('/v1/reports/equity', query);
      const points = equity?.points || [];
      summary.replaceChildren(fact('Capital', num(equity?.capital, 2, 2)), fact('Equity', num(points.at(-1)?.equity, 2, 2)),
        fact('Max drawdown', `${num(Math.min(0, ...points.map((p) => p.drawdown_pct)), 2, 2)} %`));
      return chart.update([{ name: 'Equity', cls: 'equity', points: points.map((p) => [p.ts_ms, +p.equity]) }]);
    }
    const pnl = await optional('/v1/reports/pnl', query);
    summary.replaceChildren(...['net', 'realized', 'unrealized', 'fees'].map((k) => fact(k, money(pnl?.total?.[k]))));
    chart.update(['net', 'realized'].map((k) => ({ name: k, cls: k, points: (pnl?.points || []).map((p) => [p.ts_ms, +p[k]]) })));
  }

  async function loadPositions() {
    positions.set((await optional('/v1/reports/positions', scope()))?.positions || []);
  }

  const unavailable = note('Reports are not available: orders and fills show as they happen.', 'warn');
  async function loadAll() {
    const [orders] = await Promise.all([page('orders', true), page('fills', true), loadChart(), loadPositions()]);
    unavailable.hidden = orders != null;
  }

  for (const [key, el] of Object.entries(selects)) {
    el.onchange = () => {
      filter[key] = el.value;
      (key === 'bot' || key === 'account' ? loadAll : loadChart)();
    };
  }
  const section = (kind, title) => {
    more[kind] = h('button.btn.small', { type: 'button', onclick: () => page(kind) }, 'Load more');
    return card(title, exports(kind), tables[kind].el, more[kind]);
  };
  main.append(
    h('div.filters', null, h('label', null, 'Bot ', selects.bot), h('label', null, 'Account ', selects.account)),
    unavailable,
    card('Performance', [selects.view, selects.range], summary, chart.el),
    card('Positions', null, positions.el),
    section('orders', 'Orders'),
    section('fills', 'Fills'),
  );
  await loadAll();

  const matches = (e) => (!filter.bot || e.deployment === filter.bot) && (!filter.account || e.account === filter.account);
  const order = (e) => {
    const r = e.data;
    if (!matches(e) || !r.symbol) return;
    tables.orders.upsert(Object.fromEntries(Object.entries({
      order_id: r.order_id, account: e.account, bot: e.deployment, symbol: r.symbol, side: r.side,
      quantity: r.quantity, filled_quantity: r.filled_quantity, average_price: r.average_price,
      status: r.order_status, reject_code: r.reject_code, reject_reason: r.reject_reason, updated_ms: r.ts_ms,
    }).filter(([, v]) => v != null)));
  };
  const afterFills = debounce(() => Promise.all([loadChart(), loadPositions()]), 1000);
  const off = [
    ctx.live.on('fill', (e) => {
      if (!matches(e)) return;
      const r = e.data;
      tables.fills.upsert({
        fill_id: r.fill_id || r.report_id, order_id: r.order_id, account: e.account, bot: e.deployment, symbol: r.symbol,
        side: r.side, quantity: r.last_quantity, price: r.last_price, fee: r.fee, ts_ms: r.ts_ms,
      });
      order(e);
      afterFills();
    }),
    ctx.live.on('order.update', order),
    ctx.live.on('risk.rejection', order),
    ctx.live.on('resync', loadAll),
  ];
  return () => {
    afterFills.cancel();
    off.forEach((f) => f());
  };
}
