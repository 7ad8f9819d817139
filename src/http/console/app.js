// Warren console: the shared part — API calls with the user's credentials, the login
// form, hash routing, DOM building and formatting. Each page lives in its own file and
// registers itself in W.pages; nothing here knows a page's content.
'use strict';

const W = (window.W = { pages: {} });

// ---- credentials and API -------------------------------------------------------------

// Basic-auth credentials live in sessionStorage: gone when the tab closes, never in a
// cookie (so no other site can make the browser send them).
const AUTH_KEY = 'warren.auth';

function basic(user, pass) {
  // btoa takes Latin-1 only; encode as UTF-8 first so any user name works.
  const bytes = new TextEncoder().encode(user + ':' + pass);
  let s = '';
  bytes.forEach((b) => (s += String.fromCharCode(b)));
  return 'Basic ' + btoa(s);
}

W.enc = encodeURIComponent;

// Calls the API. Resolves with the parsed JSON (null for an empty answer); rejects with an
// Error carrying RabbitMQ's `reason`. A 401 drops the credentials and shows the login.
W.api = async function (method, path, body, extraHeaders) {
  const headers = Object.assign({ authorization: sessionStorage.getItem(AUTH_KEY) || '' }, extraHeaders);
  // Asks the server not to send a WWW-Authenticate challenge, so a wrong password shows
  // our login form rather than the browser's own dialog.
  headers['x-requested-with'] = 'XMLHttpRequest';
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = text;
    }
  }
  // RabbitMQ's 401s differ: `not_authorized` (or no body) means the credentials failed —
  // back to the login form; `not_authorised` means a known user lacks a tag or permission
  // for this one request (a management user asking for /api/nodes), which the page shows.
  const rights = data && data.error === 'not_authorised';
  if (res.status === 401 && !rights && path !== '/api/whoami') {
    W.logout('Your session is no longer authorised; log in again.');
    throw new Error('not authorised');
  }
  if (!res.ok) {
    const reason = data && (data.reason || data.error);
    const err = new Error(typeof reason === 'string' ? reason : res.status + ' ' + res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
};
W.get = (path) => W.api('GET', path);

// ---- DOM -------------------------------------------------------------------------------

// h('td', {class: 'n'}, 'text', child...): builds an element. Text goes in as text nodes,
// never as HTML, so names from the broker cannot inject markup.
W.h = function (tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
};
const h = W.h;

W.flash = function (text, bad) {
  const box = document.getElementById('flash');
  const item = h('div', { class: bad ? 'bad' : '' }, text);
  box.append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 4000);
};

// Runs an action, reporting its failure in the flash box; resolves to true on success.
W.attempt = async function (fn, okText) {
  try {
    await fn();
    if (okText) W.flash(okText);
    return true;
  } catch (e) {
    W.flash(e.message, true);
    return false;
  }
};

// A definition list of [label, value] pairs.
W.kv = (pairs) => h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

// A table over `rows` (objects). cols: [{label, get(row) -> text|Node, num, key}]. With
// `sort` ({key, rev, onsort(key)}) the headers of columns having a `key` are clickable.
W.table = function (cols, rows, sort, rowAttrs) {
  const head = h('tr', {}, cols.map((c) => {
    const cls = [c.num ? 'n' : '', c.key && sort ? 'sortable' : '', sort && c.key === sort.key ? 'sorted' : '', sort && c.key === sort.key && sort.rev ? 'rev' : ''];
    return h('th', { class: cls.join(' ').trim() || null, onclick: c.key && sort ? () => sort.onsort(c.key) : null }, c.label);
  }));
  const body = rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {}, cols.map((c) => h('td', { class: c.num ? 'n' : null, dataset: c.id ? { col: c.id } : undefined }, c.get(r)))));
  if (!rows.length) body.push(h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'Nothing here.')));
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
};

// Client-side sorting for the short lists (exchanges, connections, users...).
W.sortRows = function (rows, key, rev) {
  const val = (r) => key.split('.').reduce((o, k) => (o == null ? o : o[k]), r);
  const out = rows.slice().sort((a, b) => {
    const x = val(a), y = val(b);
    if (typeof x === 'number' || typeof y === 'number') return (x || 0) - (y || 0);
    return String(x ?? '').localeCompare(String(y ?? ''));
  });
  return rev ? out.reverse() : out;
};

// ---- formatting ------------------------------------------------------------------------

W.num = (n) => (n == null ? '–' : Number(n).toLocaleString('en-US'));
W.rate = (d) => (d && d.rate != null ? d.rate.toFixed(1) + '/s' : '–');
W.bytes = function (n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
};
W.secs = function (s) {
  if (s == null || !isFinite(s)) return '–';
  if (s < 1e-3) return (s * 1e6).toFixed(0) + ' µs';
  if (s < 1) return (s * 1e3).toFixed(2) + ' ms';
  return s.toFixed(2) + ' s';
};
W.json = (v) => h('pre', {}, JSON.stringify(v, null, 1));
W.link = (hash, text) => h('a', { href: hash }, text);
W.queueHash = (vhost, name) => '#/queue/' + W.enc(vhost) + '/' + W.enc(name);
W.exchangeHash = (vhost, name) => '#/exchange/' + W.enc(vhost) + '/' + W.enc(name);

// ---- routing and refresh ---------------------------------------------------------------

// Timers of the page on screen; cleared when the user goes elsewhere, so a page left
// behind stops polling.
let timers = [];
// A failed poll (the queue was deleted, the broker restarted) is reported once, not at
// every tick, and the polling goes on.
W.every = function (ms, fn) {
  let lastError = null;
  const tick = async () => {
    try {
      await fn();
      lastError = null;
    } catch (e) {
      if (e.message !== lastError && e.message !== 'not authorised') W.flash(e.message, true);
      lastError = e.message;
    }
  };
  tick();
  timers.push(setInterval(tick, ms));
};

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const page = document.getElementById('page');
  if (!sessionStorage.getItem(AUTH_KEY)) return showLogin();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const name = parts[0] || 'overview';
  const view = W.pages[name] || W.pages.overview;
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === (view.nav || name)));
  page.replaceChildren();
  page.dataset.page = name;
  try {
    await view.render(page, parts.slice(1));
  } catch (e) {
    if (e.message !== 'not authorised') page.append(h('p', { class: 'error' }, e.message));
  }
}

function showLogin(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  document.getElementById('page').replaceChildren();
  document.getElementById('login').hidden = false;
  document.getElementById('login-error').textContent = message || '';
}

W.logout = function (message) {
  timers.forEach(clearInterval);
  timers = [];
  sessionStorage.removeItem(AUTH_KEY);
  showLogin(message);
};

async function startSession() {
  let me;
  try {
    me = await W.get('/api/whoami');
  } catch (e) {
    return W.logout(e.status === 401 ? 'Login failed.' : e.message);
  }
  W.me = me;
  document.getElementById('login').hidden = true;
  document.getElementById('login-error').textContent = '';
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = me.name + (me.tags && me.tags.length ? ' (' + [].concat(me.tags).join(', ') + ')' : '');
  route();
}

document.getElementById('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = ev.target;
  sessionStorage.setItem(AUTH_KEY, basic(f.user.value, f.pass.value));
  f.pass.value = '';
  startSession();
});
document.getElementById('logout').addEventListener('click', () => W.logout());
window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => (sessionStorage.getItem(AUTH_KEY) ? startSession() : showLogin()));
