// Overview: live message rates and queued messages (from /api/overview), object counts,
// alarms, node memory and disk (/api/nodes), and fsync latency from the storage engine's
// histogram (/api/warren/storage). Polled every 5 s while on screen.
'use strict';

(function () {
  const h = W.h;
  const POLL_MS = 5000;
  const KEEP = 60; // samples per chart: five minutes

  // Latency quantile q from histogram buckets [[upper bound s | null, count], ...]: the
  // upper bound of the bucket where the cumulative count reaches q (what a histogram can
  // honestly say). null when there were no observations.
  function quantile(buckets, q) {
    const total = buckets.reduce((s, b) => s + b[1], 0);
    if (!total) return null;
    let seen = 0;
    for (const [le, n] of buckets) {
      seen += n;
      if (seen >= q * total) return le == null ? Infinity : le;
    }
    return null;
  }

  // The observations between two histogram snapshots.
  function delta(now, before) {
    return {
      count: now.count - before.count,
      sum: now.sum - before.sum,
      buckets: now.buckets.map((b, i) => [b[0], b[1] - before.buckets[i][1]]),
    };
  }

  function tile(label, id) {
    return h('div', { class: 'tile' }, h('div', { class: 'v', id }, '–'), h('div', { class: 'k' }, label));
  }

  function set(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  W.pages.overview = {
    async render(page) {
      const rates = W.chart('Message rates', ['publish', 'deliver/get', 'ack', 'confirm', 'redeliver'], KEEP, (v) => v.toFixed(1) + '/s', 1);
      const queued = W.chart('Queued messages', ['ready', 'unacked'], KEEP, (v) => W.num(Math.round(v)), 10);
      const fsync = W.chart('fsync latency (per 5 s)', ['mean', 'p99 (bucket bound)'], KEEP, W.secs, 1e-4);
      const alarms = h('div', { id: 'ov-alarms' });
      const node = h('div', { class: 'card', id: 'ov-node' }, 'Loading…');
      page.append(
        h('h1', {}, 'Overview'),
        alarms,
        h('div', { class: 'tiles' },
          tile('Connections', 'ov-connections'), tile('Channels', 'ov-channels'), tile('Consumers', 'ov-consumers'),
          tile('Queues', 'ov-queues'), tile('Exchanges', 'ov-exchanges'),
          tile('Messages ready', 'ov-ready'), tile('Unacked', 'ov-unacked')),
        h('div', { class: 'grid2' }, rates.el, queued.el, fsync.el, node),
      );

      let lastFsync = null;
      W.every(POLL_MS, async () => {
        const [ov, nodes, storage, health] = await Promise.all([
          W.get('/api/overview'),
          W.get('/api/nodes').catch(() => null), // monitoring users only
          W.get('/api/warren/storage').catch(() => null),
          W.get('/api/health/checks/alarms').catch((e) => ({ status: 'failed', reason: e.message })),
        ]);
        const t = ov.object_totals, q = ov.queue_totals, m = ov.message_stats || {};
        set('ov-connections', W.num(t.connections));
        set('ov-channels', W.num(t.channels));
        set('ov-consumers', W.num(t.consumers));
        set('ov-queues', W.num(t.queues));
        set('ov-exchanges', W.num(t.exchanges));
        set('ov-ready', W.num(q.messages_ready));
        set('ov-unacked', W.num(q.messages_unacknowledged));
        const r = (k) => (m[k + '_details'] ? m[k + '_details'].rate : 0);
        rates.push([r('publish'), r('deliver_get'), r('ack'), r('confirm'), r('redeliver')]);
        queued.push([q.messages_ready, q.messages_unacknowledged]);

        const n = nodes && nodes[0];
        const active = [];
        if (n && n.mem_alarm) active.push('memory alarm: publishers are blocked');
        if (n && n.disk_free_alarm) active.push('disk alarm: publishers are blocked');
        if (health && health.status !== 'ok' && !active.length) active.push('alarm: ' + (health.reason || 'health check failed'));
        alarms.replaceChildren(...active.map((a) => h('div', { class: 'tile alarm' }, a)));
        alarms.dataset.alarms = String(active.length);

        if (n) {
          const memPct = n.mem_limit ? Math.min(100, (100 * n.mem_used) / n.mem_limit) : 0;
          node.replaceChildren(
            h('h2', {}, 'Node ' + n.name),
            W.kv([
              ['Memory', [W.bytes(n.mem_used) + ' of ' + W.bytes(n.mem_limit) + ' limit', h('div', { class: 'bar' }, h('span', { style: `width:${memPct}%` }))]],
              ['Disk free', W.bytes(n.disk_free) + ' (alarm below ' + W.bytes(n.disk_free_limit) + ')'],
              ['File descriptors', W.num(n.fd_used) + ' of ' + W.num(n.fd_total)],
              ['Uptime', Math.round(n.uptime / 1000) + ' s'],
              ['Version', 'Warren ' + ov.product_version + ' (RabbitMQ ' + ov.rabbitmq_version + ' API)'],
              ['fsync policy', storage ? storage.fsync_policy : '–'],
              ['fsync rounds', storage ? W.num(storage.fsync_seconds.count) + ', mean ' + W.secs(storage.fsync_seconds.sum / storage.fsync_seconds.count) + ', p99 ≤ ' + W.secs(quantile(storage.fsync_seconds.buckets, 0.99)) : '–'],
              ['Compactions', storage ? W.num(storage.compactions) + ' segments, ' + W.bytes(storage.compaction_reclaimed_bytes) + ' reclaimed' : '–'],
            ]),
          );
        } else {
          node.replaceChildren(h('p', { class: 'muted' }, 'Node details need the monitoring tag.'));
        }
        if (storage) {
          // The first poll only sets the baseline: the chart shows intervals, not the
          // broker's lifetime (which the node card gives).
          const d = lastFsync && delta(storage.fsync_seconds, lastFsync);
          lastFsync = storage.fsync_seconds;
          fsync.push(d && d.count > 0 ? [d.sum / d.count, quantile(d.buckets, 0.99)] : [null, null]);
        }
      });
    },
  };
})();
