// Queues: the list, paged, sorted and filtered by the server (the API's page, page_size,
// name, use_regex, sort, sort_reverse and columns), so the browser holds one page however
// many queues there are; and a queue's page: counters, rates, consumers, bindings,
// arguments, policy, Warren's storage picture, and purge / delete / publish / get.
'use strict';

(function () {
  const h = W.h;
  const POLL_MS = 5000;
  // Only what the table shows travels (arguments and the rest stay on the server).
  const COLUMNS = 'name,vhost,type,durable,auto_delete,exclusive,policy,consumers,messages,messages_ready,messages_unacknowledged,message_stats.publish_details,message_stats.deliver_get_details,message_stats.ack_details';
  // The list's state survives going to a queue and back.
  const state = { vhost: '', name: '', regex: false, sort: 'name', rev: false, page: 1, size: 100 };

  const rateOf = (q, k) => (q.message_stats && q.message_stats[k + '_details'] ? q.message_stats[k + '_details'].rate.toFixed(1) : '0.0');

  function listUrl() {
    const p = new URLSearchParams({ page: state.page, page_size: state.size, columns: COLUMNS, sort: state.sort, sort_reverse: state.rev });
    if (state.name) p.set('name', state.name);
    if (state.regex) p.set('use_regex', 'true');
    return '/api/queues' + (state.vhost ? '/' + W.enc(state.vhost) : '') + '?' + p;
  }

  async function renderList(page) {
    const vhosts = await W.get('/api/vhosts?columns=name');
    const vhostSel = h('select', { id: 'q-vhost', onchange: (e) => { state.vhost = e.target.value; state.page = 1; load(); } },
      h('option', { value: '' }, 'All vhosts'), vhosts.map((v) => h('option', { value: v.name, selected: v.name === state.vhost }, v.name)));
    const filter = h('input', { id: 'q-filter', placeholder: 'Filter by name', value: state.name });
    const regex = h('input', { type: 'checkbox', id: 'q-regex', checked: state.regex });
    const size = h('select', { onchange: (e) => { state.size = Number(e.target.value); state.page = 1; load(); } },
      [20, 100, 500].map((n) => h('option', { value: n, selected: n === state.size }, n + ' per page')));
    let debounce;
    const refilter = () => { clearTimeout(debounce); debounce = setTimeout(() => { state.name = filter.value; state.regex = regex.checked; state.page = 1; load(); }, 250); };
    filter.addEventListener('input', refilter);
    regex.addEventListener('change', refilter);
    const summary = h('span', { class: 'muted', id: 'q-summary' });
    const pager = h('span', { class: 'toolbar' });
    const holder = h('div', { id: 'q-table' });
    page.append(h('h1', {}, 'Queues'),
      h('div', { class: 'toolbar' }, vhostSel, filter, h('label', {}, regex, ' regex'), size, summary, pager),
      holder, addQueueForm(vhosts));

    const cols = [
      { label: 'Virtual host', key: 'vhost', get: (q) => q.vhost },
      { label: 'Name', key: 'name', id: 'name', get: (q) => W.link(W.queueHash(q.vhost, q.name), q.name) },
      { label: 'Features', get: (q) => [q.durable ? 'D' : '', q.auto_delete ? 'AD' : '', q.exclusive ? 'Excl' : ''].filter(Boolean).join(' ') },
      { label: 'Policy', key: 'policy', get: (q) => q.policy || '' },
      { label: 'Consumers', key: 'consumers', num: true, id: 'consumers', get: (q) => W.num(q.consumers) },
      { label: 'Ready', key: 'messages_ready', num: true, id: 'ready', get: (q) => W.num(q.messages_ready) },
      { label: 'Unacked', key: 'messages_unacknowledged', num: true, id: 'unacked', get: (q) => W.num(q.messages_unacknowledged) },
      { label: 'Total', key: 'messages', num: true, id: 'messages', get: (q) => W.num(q.messages) },
      { label: 'Publish /s', key: 'message_stats.publish_details.rate', num: true, get: (q) => rateOf(q, 'publish') },
      { label: 'Deliver /s', key: 'message_stats.deliver_get_details.rate', num: true, get: (q) => rateOf(q, 'deliver_get') },
      { label: 'Ack /s', key: 'message_stats.ack_details.rate', num: true, get: (q) => rateOf(q, 'ack') },
    ];
    const sort = { onsort: (key) => { state.rev = state.sort === key ? !state.rev : key !== 'name' && key !== 'vhost'; state.sort = key; load(); } };

    async function load() {
      let res;
      try {
        res = await W.get(listUrl());
      } catch (e) {
        // A regex still being typed, or a page that no longer exists after a filter.
        if (e.status === 400 && state.page > 1) { state.page = 1; return load(); }
        summary.textContent = e.message;
        return;
      }
      sort.key = state.sort;
      sort.rev = state.rev;
      holder.replaceChildren(W.table(cols, res.items, sort, (q) => ({ dataset: { queue: q.name, vhost: q.vhost } })));
      summary.textContent = `${W.num(res.filtered_count)} of ${W.num(res.total_count)} queues`;
      const go = (p) => () => { state.page = p; load(); };
      pager.replaceChildren(
        h('button', { disabled: res.page <= 1, onclick: go(res.page - 1) }, '‹'),
        `page ${res.page} of ${Math.max(1, res.page_count)}`,
        h('button', { disabled: res.page >= res.page_count, onclick: go(res.page + 1) }, '›'));
    }
    W.every(POLL_MS, load);
  }

  function addQueueForm(vhosts) {
    const f = h('form', { class: 'inline card', id: 'q-add' },
      h('label', {}, 'Virtual host', h('select', { name: 'vhost' }, vhosts.map((v) => h('option', {}, v.name)))),
      h('label', {}, 'Name', h('input', { name: 'name', required: true })),
      h('label', {}, 'Durable', h('select', { name: 'durable' }, h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'))),
      h('label', {}, 'Arguments (JSON)', h('input', { name: 'args', placeholder: '{"x-max-length": 1000}' })),
      h('button', { class: 'primary' }, 'Add queue'));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await W.attempt(async () => {
        const args = f.args.value.trim() ? JSON.parse(f.args.value) : {};
        await W.api('PUT', '/api/queues/' + W.enc(f.vhost.value) + '/' + W.enc(f.name.value), { durable: f.durable.value === 'true', auto_delete: false, arguments: args });
      }, 'Queue declared');
    });
    return h('div', {}, h('h2', {}, 'Add a queue'), f);
  }

  // ---- one queue -------------------------------------------------------------------------

  async function renderQueue(page, [vhost, name]) {
    const base = '/api/queues/' + W.enc(vhost) + '/' + W.enc(name);
    const counters = h('div', { class: 'tiles' });
    const details = h('div', { class: 'card' });
    const storage = h('div', { class: 'card', id: 'q-storage' });
    const consumers = h('div', {});
    const bindings = h('div', {});
    page.append(h('h1', {}, 'Queue ', h('span', { id: 'q-name' }, name), h('span', { class: 'muted' }, ' in ' + vhost)),
      counters, h('div', { class: 'grid2' }, details, storage),
      h('h2', {}, 'Consumers'), consumers, h('h2', {}, 'Bindings'), bindings,
      h('div', { class: 'grid2' }, publishForm(vhost, name), getForm(base)), dangerZone(base, vhost, name));

    W.every(POLL_MS, async () => {
      const [q, st, cs, bs] = await Promise.all([
        W.get(base),
        W.get('/api/warren/queues/' + W.enc(vhost) + '/' + W.enc(name) + '/storage'),
        W.get('/api/consumers/' + W.enc(vhost)),
        W.get(base + '/bindings'),
      ]);
      const tile = (label, id, v) => h('div', { class: 'tile' }, h('div', { class: 'v', id }, v), h('div', { class: 'k' }, label));
      counters.replaceChildren(
        tile('Ready', 'q-ready', W.num(q.messages_ready)), tile('Unacked', 'q-unacked', W.num(q.messages_unacknowledged)),
        tile('Total', 'q-messages', W.num(q.messages)), tile('Consumers', 'q-consumers', W.num(q.consumers)),
        tile('Publish', 'q-publish-rate', W.rate(q.message_stats && q.message_stats.publish_details)),
        tile('Deliver / get', 'q-deliver-rate', W.rate(q.message_stats && q.message_stats.deliver_get_details)),
        tile('Ack', 'q-ack-rate', W.rate(q.message_stats && q.message_stats.ack_details)));
      details.replaceChildren(h('h2', {}, 'Details'), W.kv([
        ['Type', q.type], ['Durable', String(q.durable)], ['Auto-delete', String(q.auto_delete)], ['Exclusive', String(q.exclusive)],
        ['Arguments', Object.keys(q.arguments || {}).length ? W.json(q.arguments) : 'none'],
        ['Policy', q.policy || 'none'], ['Operator policy', q.operator_policy || 'none'],
        ['Effective policy', Object.keys(q.effective_policy_definition || {}).length ? W.json(q.effective_policy_definition) : 'none'],
        ['Messages published', W.num(q.message_stats && q.message_stats.publish)],
        ['Idle since', q.idle_since || 'active'],
      ]));
      const c = st.compaction;
      storage.replaceChildren(h('h2', {}, 'Storage'), W.kv([
        ['Segments', h('span', { id: 'q-segments' }, W.num(st.segments)) ],
        ['On disk', h('span', { id: 'q-file-bytes' }, W.bytes(st.file_bytes)), ' (segments are preallocated)'],
        ['Written', W.bytes(st.written_bytes)],
        ['Records', W.num(st.records) + ' in the files, ' + W.num(st.live_records) + ' live'],
        ['Live ratio', [h('span', { id: 'q-live-ratio' }, (100 * st.live_ratio).toFixed(1) + ' %'), h('div', { class: 'bar' }, h('span', { style: `width:${100 * st.live_ratio}%` }))]],
        ['Last compaction', c ? c.last_at + ' UTC, ' + W.bytes(c.last_reclaimed_bytes) + ' reclaimed (' + W.num(c.count) + ' since start, ' + W.bytes(c.reclaimed_bytes) + ')' : 'none since the broker started'],
        ['Logs', st.logs > 1 ? st.logs + ' (one per priority level)' : '1'],
      ]));
      consumers.replaceChildren(W.table([
        { label: 'Tag', get: (x) => x.consumer_tag },
        { label: 'Connection', get: (x) => x.channel_details.connection_name },
        { label: 'Channel', get: (x) => x.channel_details.number },
        { label: 'Ack required', get: (x) => String(x.ack_required) },
        { label: 'Prefetch', num: true, get: (x) => x.prefetch_count },
        { label: 'Active', get: (x) => String(x.active) },
      ], cs.filter((x) => x.queue.name === name)));
      bindings.replaceChildren(W.table([
        { label: 'From', get: (b) => (b.source ? W.link(W.exchangeHash(vhost, b.source), b.source) : '(default exchange)') },
        { label: 'Routing key', get: (b) => b.routing_key },
        { label: 'Arguments', get: (b) => (Object.keys(b.arguments || {}).length ? JSON.stringify(b.arguments) : '') },
      ], bs));
    });
  }

  function publishForm(vhost, name) {
    const f = h('form', { class: 'card', id: 'q-publish' }, h('h2', {}, 'Publish a message'),
      h('textarea', { name: 'payload', placeholder: 'payload' }),
      h('div', { class: 'toolbar' },
        h('label', {}, h('input', { type: 'checkbox', name: 'persistent', checked: true }), ' persistent'),
        h('input', { name: 'headers', placeholder: 'headers JSON (optional)' }),
        h('button', { class: 'primary' }, 'Publish')));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await W.attempt(async () => {
        const properties = { delivery_mode: f.persistent.checked ? 2 : 1 };
        if (f.headers.value.trim()) properties.headers = JSON.parse(f.headers.value);
        // The default exchange routes by queue name, as RabbitMQ's UI publishes to a queue.
        const r = await W.api('POST', '/api/exchanges/' + W.enc(vhost) + '/amq.default/publish',
          { properties, routing_key: name, payload: f.payload.value, payload_encoding: 'string' });
        if (!r.routed) throw new Error('The message was not routed');
      }, 'Message published');
    });
    return f;
  }

  function getForm(base) {
    const out = h('div', { id: 'q-got' });
    const f = h('form', { class: 'card', id: 'q-get' }, h('h2', {}, 'Get messages'),
      h('div', { class: 'toolbar' },
        h('select', { name: 'ackmode' },
          h('option', { value: 'ack_requeue_true' }, 'Nack, requeue'),
          h('option', { value: 'ack_requeue_false' }, 'Ack (removes them)'),
          h('option', { value: 'reject_requeue_true' }, 'Reject, requeue')),
        h('label', {}, 'Count ', h('input', { name: 'count', type: 'number', value: 1, min: 1, max: 100, style: 'width:5em' })),
        h('button', {}, 'Get')), out);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await W.attempt(async () => {
        const msgs = await W.api('POST', base + '/get', { count: Number(f.count.value), ackmode: f.ackmode.value, encoding: 'auto', truncate: 50000 });
        out.replaceChildren(msgs.length ? '' : h('p', { class: 'muted' }, 'The queue is empty.'),
          ...msgs.map((m, i) => h('div', { class: 'message' }, h('b', {}, `Message ${i + 1}`),
            m.redelivered ? h('span', { class: 'pill' }, 'redelivered') : '',
            h('span', { class: 'muted' }, ` routing key ${m.routing_key}, ${m.payload_bytes} bytes, ${m.message_count} left`),
            m.properties && Object.keys(m.properties).length ? W.json(m.properties) : '',
            h('pre', { class: 'payload' }, m.payload))));
      });
    });
    return f;
  }

  function dangerZone(base, vhost, name) {
    return h('div', { class: 'card toolbar' },
      h('button', { class: 'danger', id: 'q-purge', onclick: async () => {
        if (!confirm(`Purge every ready message of ${name}?`)) return;
        await W.attempt(() => W.api('DELETE', base + '/contents'), 'Queue purged');
      } }, 'Purge'),
      h('button', { class: 'danger', id: 'q-delete', onclick: async () => {
        if (!confirm(`Delete queue ${name} and its messages?`)) return;
        if (await W.attempt(() => W.api('DELETE', base), 'Queue deleted')) location.hash = '#/queues';
      } }, 'Delete queue'),
      h('span', { class: 'muted' }, 'Purge removes ready messages; unacknowledged ones stay with their consumers.'));
  }

  W.pages.queues = { render: renderList };
  W.pages.queue = { render: renderQueue, nav: 'queues' };
})();
