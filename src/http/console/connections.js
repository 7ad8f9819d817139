// Connections and channels: who is connected, from where, as whom, with what client, and
// the channels each holds; an operator can close a connection (the client gets
// connection.close 320 with the reason given here).
'use strict';

(function () {
  const h = W.h;
  const POLL_MS = 5000;

  const clientName = (c) => {
    const p = c.client_properties || {};
    return [p.connection_name, p.product, p.version].filter(Boolean).join(' · ');
  };

  async function render(page) {
    const conns = h('div', { id: 'c-table' });
    const chans = h('div', { id: 'ch-table' });
    page.append(h('h1', {}, 'Connections'), conns, h('h2', {}, 'Channels'), chans);
    W.every(POLL_MS, async () => {
      const [cs, chs] = await Promise.all([W.get('/api/connections'), W.get('/api/channels')]);
      conns.replaceChildren(W.table([
        { label: 'Name', get: (c) => c.name },
        { label: 'Client', get: clientName },
        { label: 'User', get: (c) => c.user },
        { label: 'Virtual host', get: (c) => c.vhost },
        { label: 'Protocol', get: (c) => c.protocol + (c.ssl ? ' (TLS)' : '') },
        { label: 'Channels', num: true, get: (c) => W.num(c.channels) },
        { label: 'Received', num: true, get: (c) => W.bytes(c.recv_oct) },
        { label: 'Sent', num: true, get: (c) => W.bytes(c.send_oct) },
        { label: '', get: (c) => h('button', { class: 'danger', dataset: { close: c.name }, onclick: () => close(c.name) }, 'Close') },
      ], W.sortRows(cs, 'name'), null, (c) => ({ dataset: { connection: c.name } })));
      chans.replaceChildren(W.table([
        { label: 'Channel', get: (c) => c.name },
        { label: 'User', get: (c) => c.user },
        { label: 'Mode', get: (c) => (c.confirm ? 'confirm' : c.transactional ? 'tx' : '') },
        { label: 'Consumers', num: true, get: (c) => W.num(c.consumer_count) },
        { label: 'Unacked', num: true, get: (c) => W.num(c.messages_unacknowledged) },
        { label: 'Prefetch', num: true, get: (c) => W.num(c.prefetch_count) },
      ], W.sortRows(chs, 'name')));
    });
  }

  async function close(name) {
    const reason = prompt('Close connection ' + name + '? Reason sent to the client:', 'Closed via the Warren console');
    if (reason === null) return; // cancelled; an empty reason leaves the broker's default
    if (await W.attempt(() => W.api('DELETE', '/api/connections/' + W.enc(name), undefined, reason ? { 'x-reason': reason } : {}), 'Connection closed')) {
      const row = document.querySelector(`tr[data-connection="${CSS.escape(name)}"]`);
      if (row) row.remove();
    }
  }

  W.pages.connections = { render };
})();
