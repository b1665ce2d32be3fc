// Bots: the deployments with status, release, account and today's PnL; start, pause, resume,
// stop, deploy, promote a new release, roll back; the runtime's log; recent activity.

import { api, optional } from './api.js';
import {
  Table, ago, badge, button, card, col, control, debounce, dialog, field, h, money, note, num,
  parseJson, select, show, time, toast, utcMidnight,
} from './ui.js';

const ACTIONS = { running: ['Pause', 'Stop'], paused: ['Resume', 'Stop'], stopped: ['Start'] };
const textarea = (name, value) => h('textarea', { name, rows: 6, spellcheck: 'false' }, JSON.stringify(value, null, 2));

export async function render(main, ctx) {
  const canTrade = ctx.can('trade');
  let pnl = new Map();

  const post = (d, action, body) => api(`/v1/deployments/${d.name}/${action}`, { method: 'POST', body });
  const done = (d, message) => {
    if (!d) return;
    table.upsert(d);
    if (message) toast(message);
  };

  async function act(d, label) {
    const action = label.toLowerCase();
    if (action !== 'stop') return post(d, action).then(done, (err) => toast(err.message, 'error'));
    done(await dialog({
      title: `Stop ${d.name}?`,
      submitLabel: 'Stop',
      danger: true,
      body: [note('The runtime cancels its open orders, runs on_stop and exits.'),
        field('Reason (for the audit log)', h('input', { name: 'reason', maxlength: 500 }))],
      submit: (data) => post(d, 'stop', { reason: data.get('reason') || null }),
    }));
  }

  const actions = (d) => {
    const state = d.status === 'failed' ? 'stopped' : d.desired;
    return h('div.row-actions', null, canTrade && [
      (ACTIONS[state] || []).map((label) => control(label, () => act(d, label), label === 'Stop' ? 'small.danger' : 'small')),
      control('Release…', () => release(d), 'small'),
      control('Roll back…', () => rollback(d), 'small'),
    ], button('Logs', () => logs(d), 'small'));
  };

  const table = new Table([
    col('Deployment', (d) => [h('b', null, d.name), h('small.sub', null, d.bot)]),
    col('Status', (d) => [badge(d.status),
      d.desired !== d.status && d.status !== 'failed' && h('small.sub', null, `→ ${d.desired}`),
      d.status_detail && h('small.sub', null, d.status_detail)]),
    col('Release', (d) => [`r${d.release}`, h('small.sub', null, `version ${d.version}`)]),
    col('Account', (d) => d.account),
    col('Capital', (d) => num(d.capital, 2), 'num'),
    col('PnL today', (d) => money(pnl.get(d.name)?.net), 'num'),
    col('Heartbeat', (d) => (d.heartbeat ? [ago(d.heartbeat.ts_ms), h('small.sub', null, `${d.heartbeat.bars} bars · ${d.heartbeat.intents} intents`)] : '—')),
    col('Restarts', (d) => d.restarts, 'num'),
    col('', actions, 'actions'),
  ], { key: (d) => d.name, empty: 'No deployments yet.' });

  const activity = new Table([
    col('Time', (e) => time(e.ts_ms)),
    col('Event', (e) => h('span.kind', null, e.kind)),
    col('Bot', (e) => e.deployment || '—'),
    col('What', (e) => e.message),
  ], { key: (e) => e.id, empty: 'No activity yet.', limit: 50 });

  const loadPnl = async () => {
    const metrics = await optional('/v1/reports/metrics', { start: utcMidnight(), end: Date.now() });
    pnl = new Map((metrics?.bots || []).map((m) => [m.bot, m]));
  };
  const load = async () => {
    const [deployments] = await Promise.all([api('/v1/deployments'), loadPnl()]);
    table.set(deployments);
  };
  const refreshPnl = debounce(async () => {
    await loadPnl();
    for (const d of table.all()) table.upsert(d, false);
  }, 2000);
  const refresh = (e) => api(`/v1/deployments/${e.deployment}`).then((d) => table.upsert(d), load);

  async function deploy() {
    const [bots, accounts] = await Promise.all([api('/v1/bots'), api('/v1/accounts')]);
    if (!bots.length || !accounts.length) return toast(bots.length ? 'Add an account first.' : 'Push a bot first: coyote-sdk push BOT_FILE', 'warn');
    const bot = select('bot', bots.map((b) => b.name));
    const version = h('select', { name: 'version' });
    const params = textarea('params', {});
    const versions = async () => {
      const list = (await api(`/v1/bots/${bot.value}/versions`)).reverse();
      version.replaceChildren(...list.map((v) => h('option', { value: v.number }, `version ${v.number}`)));
      const props = list[0]?.params_schema?.properties || {};
      params.value = JSON.stringify(Object.fromEntries(Object.entries(props).filter(([, p]) => 'default' in p).map(([k, p]) => [k, p.default])), null, 2);
    };
    bot.onchange = versions;
    await versions();
    const made = await dialog({
      title: 'Deploy a bot',
      submitLabel: 'Deploy',
      body: [
        field('Name', h('input', { name: 'name', required: true, placeholder: 'sma-paper' })),
        field('Bot', bot),
        field('Version', version),
        field('Account', select('account', accounts.map((a) => a.name))),
        field('Parameters (JSON)', params),
        field('Capital', h('input', { name: 'capital', value: '0', inputmode: 'decimal' })),
        h('label.check', null, h('input', { type: 'checkbox', name: 'start' }), 'Start at once'),
      ],
      submit: (data) => api('/v1/deployments', {
        method: 'POST',
        body: {
          name: data.get('name'), bot: data.get('bot'), account: data.get('account'), version: +data.get('version'),
          params: parseJson(data.get('params'), 'parameters'), capital: data.get('capital') || '0', start: data.has('start'),
        },
      }),
    });
    done(made, made && `deployed ${made.name}: release ${made.release}`);
  }

  async function release(d) {
    const versions = (await api(`/v1/bots/${d.bot}/versions`)).map((v) => String(v.number)).reverse();
    done(await dialog({
      title: `New release of ${d.name}`,
      submitLabel: 'Promote',
      body: [
        note(`It runs release ${d.release}. A running runtime restarts on the new one, its orders cancelled first.`),
        field('Version', select('version', versions, String(d.version))),
        field('Parameters (JSON)', textarea('params', d.params)),
      ],
      submit: async (data) => {
        const body = { version: +data.get('version'), params: parseJson(data.get('params'), 'parameters') };
        const made = await api(`/v1/bots/${d.bot}/releases`, { method: 'POST', body });
        return post(d, 'promote', { release: made.number });
      },
    }), `${d.name} promoted`);
  }

  async function rollback(d) {
    const history = await api(`/v1/deployments/${d.name}/history`);
    const earlier = [...new Set(history.map((x) => String(x.release)))].filter((r) => r !== String(d.release));
    const list = h('ol', null, history.map((x) => h('li', null, `r${x.release} · ${x.action} by ${x.set_by} · `, time(x.ts_ms))));
    if (!earlier.length) return show(`Roll back ${d.name}`, note('There is no earlier release.'), list);
    done(await dialog({
      title: `Roll back ${d.name}`,
      submitLabel: 'Roll back',
      danger: true,
      body: [field('To release', select('release', earlier, earlier[0])), h('h3', null, 'History'), list],
      submit: (data) => post(d, 'rollback', { release: +data.get('release') }),
    }), `${d.name} rolled back`);
  }

  async function logs(d) {
    const text = await api(`/v1/deployments/${d.name}/logs`, { query: { tail: 200 }, text: true }).catch((err) => err.message);
    show(`Log of ${d.name}`, h('pre', null, text || '(empty)'));
  }

  main.append(
    card('Bots', canTrade && control('Deploy…', deploy, 'primary'), table.el),
    card('Recent activity', null, activity.el),
  );
  await load();
  optional('/v1/events/recent', { limit: 20 }).then((events) => activity.append(events || []));

  const timer = setInterval(load, 15_000);
  const off = [
    ...['bot.status', 'bot.crashed', 'bot.failed'].map((k) => ctx.live.on(k, refresh)),
    ...['kill_switch.tripped', 'kill_switch.reset', 'resync'].map((k) => ctx.live.on(k, load)),
    ctx.live.on('fill', refreshPnl),
    ctx.live.on('*', (e) => e.id && e.kind !== 'order.update' && e.kind !== 'fill' && activity.upsert(e)),
  ];
  return () => {
    clearInterval(timer);
    refreshPnl.cancel();
    off.forEach((f) => f());
  };
}
