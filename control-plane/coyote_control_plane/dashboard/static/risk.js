// Risk: kill switches (trip and reset behind a typed confirmation), each account's limits,
// capital and trading state, each deployment's capital and state, rejections by reason.

import { api, optional } from './api.js';
import {
  Table, badge, card, col, control, debounce, dialog, field, folded, h, json, note, num, parseJson,
  select, time, toast, utcMidnight,
} from './ui.js';

export async function render(main, ctx) {
  const canRisk = ctx.can('risk');
  let accounts = [];
  let deployments = [];
  let active = [];
  const halt = (d) => active.find((s) => s.scope === 'organization' || s.target === (s.scope === 'account' ? d.account : d.name));
  const who = (by, ms) => [h('span', null, by), h('small.sub', null, time(ms))];

  const banner = h('div.banner', { role: 'status' });
  const switches = new Table([
    col('Halted', (s) => [h('b', null, s.target), h('small.sub', null, s.scope)]),
    col('Reason', (s) => s.reason),
    col('Tripped', (s) => who(s.tripped_by, s.tripped_ms)),
    col('', (s) => canRisk && control('Reset…', () => reset(s), 'small'), 'actions'),
  ], { key: (s) => s.id, empty: 'No kill switch is tripped.' });

  const accountTable = new Table([
    col('Account', (a) => [h('b', null, a.name), h('small.sub', null, `${a.broker} · ${a.venue} · ${a.currency}`)]),
    col('State', (a) => badge(a.halted ? 'halted' : 'trading')),
    col('Capital', (a) => num(a.capital, 2), 'num'),
    col('Allocated', (a) => num(a.allocated, 2), 'num'),
    col('Limits', (a) => folded(a.risk_limits, 'none set')),
    col('', (a) => canRisk && h('div.row-actions', null, control('Limits…', () => limits(a), 'small'), control('Capital…', () => capital('accounts', a), 'small')), 'actions'),
  ], { key: (a) => a.name, empty: 'No accounts yet.' });

  const deploymentTable = new Table([
    col('Deployment', (d) => [h('b', null, d.name), h('small.sub', null, d.runtime_id)]),
    col('Account', (d) => d.account),
    col('State', (d) => (halt(d) ? badge('halted', `${halt(d).scope} ${halt(d).target}: ${halt(d).reason}`) : badge(d.status))),
    col('Capital', (d) => num(d.capital, 2), 'num'),
    col('Bot limits', (d) => {
      const own = accounts.find((a) => a.name === d.account)?.risk_limits?.bots?.[d.runtime_id];
      return own ? json(own) : 'the account\'s';
    }),
    col('', (d) => canRisk && control('Capital…', () => capital('deployments', d), 'small'), 'actions'),
  ], { key: (d) => d.name, empty: 'No deployments yet.' });

  const rejections = new Table([
    col('Code', (r) => h('code', null, r.code)),
    col('Count', (r) => r.count, 'num'),
    col('Last reason', (r) => r.last_reason),
    col('Last', (r) => time(r.last_ms)),
  ], { key: (r) => r.code, empty: 'No rejections today.' });
  const total = h('span.sub');

  async function load() {
    [active, accounts, deployments] = await Promise.all([api('/v1/kill-switches'), api('/v1/accounts'), api('/v1/deployments')]);
    switches.set(active);
    accountTable.set(accounts);
    deploymentTable.set(deployments);
    banner.dataset.state = active.length ? 'halted' : 'ok';
    banner.textContent = active.length
      ? `Trading halted: ${active.map((s) => (s.scope === 'organization' ? 'the whole organisation' : `${s.scope} ${s.target}`)).join(', ')}`
      : 'No kill switch is tripped: trading is allowed.';
  }
  async function loadRejections() {
    const answer = await optional('/v1/reports/rejections', { start: utcMidnight(), end: Date.now() });
    rejections.set(answer?.reasons || []);
    total.textContent = answer ? `${answer.total} today` : 'reports unavailable';
  }
  // Trips and resets are announced by the live stream (to everyone); the rest here.
  const after = async (made, message) => {
    if (!made) return;
    if (message) toast(message(made));
    await load();
  };

  async function trip() {
    const scope = select('scope', [['account', 'An account'], ['deployment', 'A deployment'], ['organization', 'The whole organisation']], 'account');
    const target = h('select', { name: 'target' });
    const targets = () => {
      const names = { account: accounts.map((a) => a.name), deployment: deployments.map((d) => d.name) }[scope.value] || [ctx.org.slug];
      target.replaceChildren(...names.map((n) => h('option', null, n)));
    };
    scope.addEventListener('change', targets);
    targets();
    await after(await dialog({
      title: 'Trip a kill switch',
      submitLabel: 'Trip kill switch',
      danger: true,
      confirm: () => target.value,
      body: [
        note('The executor refuses every new order of what you halt and its bots pause, until it is reset.', 'warn'),
        field('Halt', scope),
        field('Which', target),
        field('Reason', h('textarea', { name: 'reason', rows: 2, maxlength: 500 })),
      ],
      submit: (data) => {
        const reason = data.get('reason').trim();
        if (!reason) throw new Error('Give a reason: it goes in the audit log.');
        const body = { scope: scope.value, target: scope.value === 'organization' ? null : target.value, reason };
        return api('/v1/kill-switches', { method: 'POST', body });
      },
    }));
  }

  async function reset(s) {
    await after(await dialog({
      title: `Reset the kill switch on ${s.scope} ${s.target}`,
      submitLabel: 'Reset kill switch',
      confirm: () => s.target,
      body: [
        h('dl.facts', null, h('dt', null, 'Tripped by'), h('dd', null, s.tripped_by), h('dt', null, 'When'),
          h('dd', null, time(s.tripped_ms)), h('dt', null, 'Reason'), h('dd', null, s.reason)),
        note('Trading resumes at once; paused bots resume if they were running before.'),
      ],
      submit: () => api(`/v1/kill-switches/${s.id}/reset`, { method: 'POST' }),
    }));
  }

  async function limits(a) {
    await after(await dialog({
      title: `Risk limits of ${a.name}`,
      submitLabel: 'Save limits',
      body: [
        note('A risk document: sections account, bots, symbols, instruments, restricted (docs/risk.md).'),
        field('Limits (JSON)', h('textarea', { name: 'limits', rows: 14 }, JSON.stringify(a.risk_limits, null, 2))),
      ],
      submit: (data) => api(`/v1/accounts/${a.name}/risk-limits`, { method: 'PUT', body: parseJson(data.get('limits'), 'limits') }),
    }), (x) => `limits of ${x.name} saved`);
  }

  async function capital(kind, item) {
    await after(await dialog({
      title: `Capital of ${item.name}`,
      submitLabel: 'Save capital',
      body: [field('Capital', h('input', { name: 'capital', value: item.capital ?? '', inputmode: 'decimal' }))],
      submit: (data) => api(`/v1/${kind}/${item.name}/capital`, { method: 'PUT', body: { capital: data.get('capital').trim() } }),
    }), (x) => `capital of ${x.name}: ${x.capital}`);
  }

  main.append(
    card('Kill switches', ctx.can('halt') && control('Trip kill switch…', trip, 'danger'),
      banner, switches.el, ctx.can('audit') && note('Earlier switches, and who reset them, are in the audit log.')),
    card('Accounts', null, accountTable.el),
    card('Deployments', null, deploymentTable.el),
    card('Rejections', total, rejections.el),
  );
  await Promise.all([load(), loadRejections()]);

  const later = debounce(loadRejections, 1500);
  const off = [
    ...['kill_switch.tripped', 'kill_switch.reset', 'bot.status', 'resync'].map((k) => ctx.live.on(k, load)),
    ctx.live.on('risk.rejection', later),
  ];
  return () => {
    later.cancel();
    off.forEach((f) => f());
  };
}
