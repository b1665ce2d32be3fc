// A line chart in hand-drawn SVG: time on x, series on y, grid and zero line, a crosshair
// with the values under the pointer. Redrawn to its container's width.

import { h, num, s } from './ui.js';

const [H, TOP, RIGHT, BOTTOM, LEFT] = [240, 12, 12, 24, 64];

function ticks(min, max) {
  const rough = (max - min) / 4;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= rough);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step / 1e6; v += step) out.push(+v.toFixed(10));
  return out;
}

const clock = (ms, span) => new Date(ms).toLocaleString([], span > 2 * 86_400_000
  ? { month: 'numeric', day: 'numeric' } : { hour: '2-digit', minute: '2-digit', hour12: false });

/** Answers {el, update(series)}; series: [{name, cls, points: [[ts_ms, number], …]}]. */
export function lineChart(empty) {
  const el = h('figure.chart', { 'aria-label': 'Performance chart' });
  let series = [];
  let drawn = 0;
  const draw = () => {
    const width = (drawn = Math.max(280, el.clientWidth || 600));
    const lines = series.filter((x) => x.points.length);
    const points = lines.flatMap((x) => x.points);
    if (points.length < 2) return el.replaceChildren(h('div.chart-empty', null, empty));
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]).concat(0);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
    const grid = ticks(y0, y1);
    [y0, y1] = [Math.min(y0, grid[0]), Math.max(y1, grid.at(-1))];
    const X = (t) => LEFT + ((t - x0) / (x1 - x0 || 1)) * (width - LEFT - RIGHT);
    const Y = (v) => TOP + (1 - (v - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
    const svg = s('svg', { viewBox: `0 0 ${width} ${H}`, role: 'img', 'aria-label': 'Performance chart' },
      grid.map((v) => [
        s('line', { class: v ? 'grid' : 'zero', x1: LEFT, x2: width - RIGHT, y1: Y(v), y2: Y(v) }),
        s('text', { class: 'axis', x: LEFT - 6, y: Y(v) + 4, 'text-anchor': 'end' }, num(v, 2))]),
      [[x0, 'start'], [(x0 + x1) / 2, 'middle'], [x1, 'end']].map(([t, anchor]) =>
        s('text', { class: 'axis', x: X(t), y: H - 6, 'text-anchor': anchor }, clock(t, x1 - x0))),
      lines.map((x) => s('path', {
        class: `line ${x.cls}`, d: x.points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(''),
      })));
    const cross = svg.appendChild(s('line', { class: 'cross', y1: TOP, y2: H - BOTTOM, visibility: 'hidden' }));
    const tip = h('div.chart-tip', { hidden: true });
    svg.onpointermove = (e) => {
      const box = svg.getBoundingClientRect();
      const t = x0 + (((e.clientX - box.left) * width) / box.width - LEFT) / (width - LEFT - RIGHT) * (x1 - x0);
      const near = lines.map((x) => [x.name, x.points.reduce((a, b) => (Math.abs(b[0] - t) < Math.abs(a[0] - t) ? b : a))]);
      const at = near[0][1][0];
      for (const k of ['x1', 'x2']) cross.setAttribute(k, X(at));
      cross.setAttribute('visibility', 'visible');
      tip.hidden = false;
      tip.replaceChildren(h('b', null, new Date(at).toLocaleString()), near.map(([name, p]) => h('div', null, `${name}: ${num(p[1], 2, 2)}`)));
    };
    svg.onpointerleave = () => {
      cross.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    };
    el.replaceChildren(svg, tip, h('figcaption.legend', null, lines.map((x) => h('span', { class: x.cls }, x.name))));
  };
  new ResizeObserver(() => Math.abs(el.clientWidth - drawn) > 2 && draw()).observe(el);
  return { el, update: (next) => draw((series = next)) };
}
