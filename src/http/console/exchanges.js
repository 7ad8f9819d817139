// Exchanges: the list, an exchange's page with its bindings both ways, declare/delete, and
// "publish a test message": the broker answers whether it was routed; the page also shows
// which of this exchange's bindings the routing key (and headers) match, computed here
// from the binding list with the exchange type's rule.
'use strict';

(function () {
  const h = W.h;
  const state = { filter: '', sort: 'name', rev: false };
  // The default exchange is "" in the API's objects and amq.default in its URLs.
  const urlName = (n) => (n === '' ? 'amq.default' : n);
  const shown = (n) => (n === '' ? '(AMQP default)' : n);

  // The server filters, sorts and cuts the list (as for queues), so however many
  // exchanges there are the page holds at most LIMIT rows.
  const LIMIT = 500;

  async function renderList(page) {
    const vhosts = await W.get('/api/vhosts?columns=name');
    const holder = h('div', { id: 'x-table' });
    const summary = h('span', { class: 'muted', id: 'x-summary' });
    const cols = [
      { label: 'Virtual host', key: 'vhost', get: (x) => x.vhost },
      { label: 'Name', key: 'name', get: (x) => W.link(W.exchangeHash(x.vhost, urlName(x.name)), shown(x.name)) },
      { label: 'Type', key: 'type', get: (x) => x.type },
      { label: 'Features', get: (x) => [x.durable ? 'D' : '', x.auto_delete ? 'AD' : '', x.internal ? 'I' : ''].filter(Boolean).join(' ') },
      { label: 'Policy', key: 'policy', get: (x) => x.policy || '' },
    ];
    const sort = { onsort: (k) => { state.rev = state.sort === k ? !state.rev : false; state.sort = k; load(); } };
    async function load() {
      const p = new URLSearchParams({ page: 1, page_size: LIMIT, sort: state.sort, sort_reverse: state.rev, columns: 'name,vhost,type,durable,auto_delete,internal,policy' });
      if (state.filter) p.set('name', state.filter);
      const res = await W.get('/api/exchanges?' + p);
      sort.key = state.sort;
      sort.rev = state.rev;
      holder.replaceChildren(W.table(cols, res.items, sort, (x) => ({ dataset: { exchange: x.name } })));
      summary.textContent = `${W.num(res.filtered_count)} of ${W.num(res.total_count)} exchanges` + (res.filtered_count > LIMIT ? ` (first ${LIMIT} shown: filter to narrow)` : '');
    }
    let debounce;
    const filter = h('input', { placeholder: 'Filter by name', value: state.filter, oninput: (e) => { clearTimeout(debounce); debounce = setTimeout(() => { state.filter = e.target.value; load(); }, 250); } });
    page.append(h('h1', {}, 'Exchanges'), h('div', { class: 'toolbar' }, filter, summary), holder, addForm(vhosts));
    await load();
  }

  function addForm(vhosts) {
    const f = h('form', { class: 'inline card' },
      h('label', {}, 'Virtual host', h('select', { name: 'vhost' }, vhosts.map((v) => h('option', {}, v.name)))),
      h('label', {}, 'Name', h('input', { name: 'name', required: true })),
      h('label', {}, 'Type', h('select', { name: 'type' }, ['direct', 'fanout', 'topic', 'headers'].map((t) => h('option', {}, t)))),
      h('label', {}, 'Durable', h('select', { name: 'durable' }, h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'))),
      h('button', { class: 'primary' }, 'Add exchange'));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (await W.attempt(() => W.api('PUT', '/api/exchanges/' + W.enc(f.vhost.value) + '/' + W.enc(f.name.value), { type: f.type.value, durable: f.durable.value === 'true' }), 'Exchange declared')) location.reload();
    });
    return h('div', {}, h('h2', {}, 'Add an exchange'), f);
  }

  // ---- routing preview -------------------------------------------------------------------

  // AMQP topic matching: words split on '.', '*' is one word, '#' is zero or more.
  function topicMatch(pattern, key) {
    const p = pattern.split('.'), k = key.split('.');
    function at(i, j) {
      if (i === p.length) return j === k.length;
      if (p[i] === '#') return at(i + 1, j) || (j < k.length && at(i, j + 1));
      return j < k.length && (p[i] === '*' || p[i] === k[j]) && at(i + 1, j + 1);
    }
    return at(0, 0);
  }

  function headersMatch(args, headers) {
    const all = (args['x-match'] || 'all') !== 'any';
    const keys = Object.keys(args).filter((k) => !k.startsWith('x-'));
    const hit = (k) => k in headers && (args[k] === '' || String(headers[k]) === String(args[k]));
    return all ? keys.every(hit) : keys.some(hit);
  }

  // Whether a binding of an exchange of `type` matches a message; null when this page
  // cannot tell (custom exchange types).
  function matches(type, b, key, headers) {
    switch (type) {
      case 'direct': return b.routing_key === key;
      case 'fanout': return true;
      case 'topic': return topicMatch(b.routing_key, key);
      case 'headers': return headersMatch(b.arguments || {}, headers);
      default: return null;
    }
  }

  async function renderExchange(page, [vhost, name]) {
    const base = '/api/exchanges/' + W.enc(vhost) + '/' + W.enc(name);
    const [x, out, inn] = await Promise.all([W.get(base), W.get(base + '/bindings/source'), W.get(base + '/bindings/destination')]);
    const bindingCols = (side) => [
      { label: side === 'source' ? 'To' : 'From', get: (b) => {
        const other = side === 'source' ? b.destination : b.source;
        if (side === 'source' && b.destination_type === 'queue') return W.link(W.queueHash(vhost, other), other);
        return W.link(W.exchangeHash(vhost, urlName(other)), shown(other));
      } },
      { label: 'Kind', get: (b) => b.destination_type },
      { label: 'Routing key', get: (b) => b.routing_key },
      { label: 'Arguments', get: (b) => (Object.keys(b.arguments || {}).length ? JSON.stringify(b.arguments) : '') },
    ];
    const result = h('div', { id: 'x-routed' });
    const f = h('form', { class: 'card', id: 'x-publish' }, h('h2', {}, 'Publish a test message'),
      h('div', { class: 'toolbar' }, h('input', { name: 'key', placeholder: 'routing key' }), h('input', { name: 'headers', placeholder: 'headers JSON (optional)' })),
      h('textarea', { name: 'payload', placeholder: 'payload' }), h('button', { class: 'primary' }, 'Publish'), result);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await W.attempt(async () => {
        const headers = f.headers.value.trim() ? JSON.parse(f.headers.value) : {};
        const r = await W.api('POST', base + '/publish', { properties: { headers }, routing_key: f.key.value, payload: f.payload.value, payload_encoding: 'string' });
        const hits = name === 'amq.default' ? [] : out.filter((b) => matches(x.type, b, f.key.value, headers));
        result.replaceChildren(
          h('p', {}, 'Routed: ', h('span', { class: r.routed ? 'pill' : 'pill bad', id: 'x-routed-flag' }, String(r.routed))),
          name === 'amq.default'
            ? h('p', { class: 'muted' }, 'The default exchange routes to the queue named by the routing key.')
            : h('div', {}, h('p', { class: 'muted' }, 'Bindings of this exchange the message matches (computed in the browser; bindings to exchanges route further):'),
              W.table(bindingCols('source'), hits)));
      });
    });
    page.append(h('h1', {}, 'Exchange ', shown(x.name), h('span', { class: 'muted' }, ' in ' + vhost)),
      h('div', { class: 'card' }, W.kv([['Type', x.type], ['Durable', String(x.durable)], ['Auto-delete', String(x.auto_delete)], ['Internal', String(x.internal)],
        ['Arguments', Object.keys(x.arguments || {}).length ? W.json(x.arguments) : 'none'], ['Policy', x.policy || 'none']])),
      h('h2', {}, 'Bindings from this exchange'), W.table(bindingCols('source'), out),
      h('h2', {}, 'Bindings to this exchange'), W.table(bindingCols('destination'), inn),
      bindForm(vhost, name), f,
      name.startsWith('amq.') ? '' : h('div', { class: 'card' }, h('button', { class: 'danger', onclick: async () => {
        if (confirm('Delete exchange ' + name + '?') && await W.attempt(() => W.api('DELETE', base), 'Exchange deleted')) location.hash = '#/exchanges';
      } }, 'Delete exchange')));
  }

  function bindForm(vhost, name) {
    const f = h('form', { class: 'inline card' },
      h('label', {}, 'To', h('select', { name: 'kind' }, h('option', { value: 'q' }, 'queue'), h('option', { value: 'e' }, 'exchange'))),
      h('label', {}, 'Name', h('input', { name: 'dest', required: true })),
      h('label', {}, 'Routing key', h('input', { name: 'key' })),
      h('button', {}, 'Bind'));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const url = '/api/bindings/' + W.enc(vhost) + '/e/' + W.enc(name) + '/' + f.kind.value + '/' + W.enc(f.dest.value);
      if (await W.attempt(() => W.api('POST', url, { routing_key: f.key.value, arguments: {} }), 'Bound')) route();
    });
    const route = () => window.dispatchEvent(new HashChangeEvent('hashchange'));
    return name === 'amq.default' ? '' : h('div', {}, h('h2', {}, 'Add a binding'), f);
  }

  W.pages.exchanges = { render: renderList };
  W.pages.exchange = { render: renderExchange, nav: 'exchanges' };
})();
