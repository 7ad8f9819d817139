// A small SVG line chart for the overview's live series: a fixed window of samples per
// series, redrawn whole at each poll (a few hundred points: cheaper than being clever).
'use strict';

(function () {
  const NS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#2d6a4f', '#d97706', '#2563eb', '#9333ea', '#b42318', '#0f766e'];
  const W_ = 600, H_ = 180, PAD_L = 52, PAD_B = 18, PAD_T = 8;

  function svg(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  // A chart of `names` series keeping the last `keep` samples; `fmt` labels the y axis,
  // which goes at least up to `minTop` (so an idle broker's chart has a readable scale).
  // Returns {el, push(values[])}: push appends one sample per series and redraws.
  W.chart = function (title, names, keep, fmt, minTop) {
    const data = names.map(() => []);
    const plot = svg('svg', { viewBox: `0 0 ${W_} ${H_}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
    const legend = W.h('div', { class: 'legend' });
    const current = names.map(() => W.h('b', {}, '–'));
    names.forEach((n, i) => legend.append(W.h('span', {}, W.h('i', { style: 'background:' + COLORS[i % COLORS.length] }), n + ' ', current[i])));
    const el = W.h('div', { class: 'card chart' }, W.h('h2', {}, title), plot, legend);

    function draw() {
      plot.replaceChildren();
      const max = Math.max(minTop || 1e-9, ...data.flat().filter((v) => v != null && isFinite(v)));
      const top = niceCeil(max);
      const x = (i) => PAD_L + ((W_ - PAD_L - 4) * i) / Math.max(1, keep - 1);
      const y = (v) => PAD_T + (H_ - PAD_T - PAD_B) * (1 - v / top);
      for (const f of [0, 0.5, 1]) {
        plot.append(svg('line', { x1: PAD_L, x2: W_, y1: y(top * f), y2: y(top * f), stroke: '#dde2e8' }));
        const label = svg('text', { x: PAD_L - 4, y: y(top * f) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#65707d' });
        label.textContent = fmt(top * f);
        plot.append(label);
      }
      data.forEach((series, i) => {
        // Samples fill the window from the right: the newest is always at the right edge.
        const offset = keep - series.length;
        const pts = series.map((v, j) => (v == null || !isFinite(v) ? null : `${x(offset + j).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
        if (pts.length) plot.append(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
        const last = series[series.length - 1];
        current[i].textContent = last == null ? '–' : fmt(last);
      });
    }

    function push(values) {
      values.forEach((v, i) => {
        data[i].push(v);
        if (data[i].length > keep) data[i].shift();
      });
      draw();
    }
    draw();
    return { el, push };
  };

  // 1, 2 or 5 times a power of ten at or above v: round numbers on the axis.
  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
})();
