// The shell: login, the header (pages, live indicator, who), hash routes. A page renders into
// <main> and may answer a function undoing its subscriptions when it is left.

import { api, Live } from './api.js';
import { h, toast } from './ui.js';
import * as bots from './bots.js';
import * as blotter from './blotter.js';
import * as risk from './risk.js';
import * as admin from './admin.js';

const PAGES = [
  ['bots', 'Bots', bots.render, () => true],
  ['blotter', 'Blotter', blotter.render, () => true],
  ['risk', 'Risk', risk.render, () => true],
  ['audit', 'Audit', admin.renderAudit, (c) => c.can('audit')],
  ['keys', 'API keys', admin.renderKeys, (c) => c.role !== 'viewer'],
  ['admin', 'Admin', admin.renderAdmin, (c) => c.can('admin')],
];
const app = document.getElementById('app');
const live = new Live();
let ctx = null;
let leave = null;
let shown = 0; // counts routings: a page that finishes loading after the next one began is undone
let unwatch = null;

function shell() {
  const dot = h('span.live', { 'data-testid': 'live', title: 'Live events' });
  const show = ({ state }) => { dot.dataset.state = dot.textContent = state; };
  show(live);
  unwatch?.();
  unwatch = live.on('state', show);
  const user = ctx.me.user;
  app.replaceChildren(
    h('header.top', null,
      h('a.brand', { href: '#/bots' }, h('img', { src: 'favicon.svg', alt: '', width: 22 }), 'Coyote'),
      h('nav.nav', { 'aria-label': 'Pages' }, PAGES.filter((p) => p[3](ctx)).map(([path, title]) => h('a', { href: `#/${path}`, 'data-page': path }, title))),
      h('div.who', null, dot,
        h('span.user', { title: user.email }, `${user.name || user.email} · `, h('b', { 'data-testid': 'role' }, ctx.role), ` · ${ctx.me.organization.name}`),
        h('button.btn.small', { type: 'button', onclick: logout }, 'Log out'))),
    h('main', { id: 'main' }));
}

async function route() {
  if (!ctx) return;
  const name = location.hash.replace(/^#\/?/, '') || 'bots';
  const page = PAGES.find((p) => p[0] === name);
  if (!page) return location.replace('#/bots');
  leave?.();
  leave = null;
  for (const a of document.querySelectorAll('.nav a')) a.toggleAttribute('aria-current', a.dataset.page === name);
  document.querySelector('.nav a[aria-current]')?.setAttribute('aria-current', 'page');
  document.title = `${page[1]} · Coyote`;
  const main = document.getElementById('main');
  const view = h('div.view');
  main.replaceChildren(view);
  delete main.dataset.ready;
  const mine = ++shown;
  if (!page[3](ctx)) return view.append(h('p.note', null, `The ${ctx.role} role may not see this page.`));
  try {
    const undo = await page[2](view, ctx);
    if (mine !== shown) return undo?.();
    leave = undo;
    main.dataset.ready = name; // its first data is on screen
  } catch (err) {
    if (err.status !== 401) view.append(h('p.error', { role: 'alert' }, err.message));
  }
}

function login(message = '') {
  live.stop();
  leave?.();
  leave = ctx = null;
  shown++;
  document.title = 'Log in · Coyote';
  const error = h('p.error', { role: 'alert' }, message);
  const email = h('input', { id: 'email', type: 'email', autocomplete: 'username' });
  const password = h('input', { id: 'password', type: 'password', autocomplete: 'current-password' });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Log in');
  const form = h('form.login', null,
    h('h1', null, h('img', { src: 'favicon.svg', alt: '', width: 32 }), 'Coyote'),
    h('label.field', null, h('span', null, 'Email'), email),
    h('label.field', null, h('span', null, 'Password'), password),
    error, submit);
  form.onsubmit = async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      start(await api('/v1/auth/login', { method: 'POST', body: { email: email.value.trim(), password: password.value } }));
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
    }
  };
  app.replaceChildren(h('div.login-wrap', null, form));
  email.focus();
}

async function logout() {
  await api('/v1/auth/logout', { method: 'POST' }).catch(() => null);
  login();
}

function start(me) {
  const permissions = new Set(me.permissions);
  ctx = { me, live, role: me.role, org: me.organization, can: (p) => permissions.has(p) };
  shell();
  live.start();
  route();
}

// What anyone watching should hear of, on whichever page.
for (const kind of ['bot.crashed', 'bot.failed', 'bot.orders_cancelled', 'alert', 'kill_switch.tripped', 'kill_switch.reset']) {
  live.on(kind, (e) => toast(e.deployment ? `${e.deployment}: ${e.message}` : e.message, kind.endsWith('reset') ? 'info' : 'error'));
}
addEventListener('hashchange', route);
addEventListener('coyote:unauthenticated', () => ctx && login('Your session has ended; log in again.'));
api('/v1/auth/me').then(start, (err) => login(err.status === 401 ? '' : err.message));
