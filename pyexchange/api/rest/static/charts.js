// Hand-drawn canvas charts: the depth chart, the price chart and the operator's sparklines.

const COLORS = { bid: "#3fb950", ask: "#f85149", line: "#58a6ff", grid: "#263039", text: "#7d8a96" };

function prepare(canvas) {
  // drawn in the canvas's own size (its width and height attributes), at the screen's density
  const ratio = window.devicePixelRatio || 1;
  if (!canvas.dataset.w) {
    canvas.dataset.w = String(canvas.width);
    canvas.dataset.h = String(canvas.height);
  }
  const w = Number(canvas.dataset.w);
  const h = Number(canvas.dataset.h);
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

function label(ctx, text, x, y, align = "left") {
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = align;
  ctx.fillText(text, x, y);
}

function empty(ctx, w, h, text) {
  label(ctx, text, w / 2, h / 2, "center");
}

// levels: [[price, qty]] best first (numbers); bids descending, asks ascending. Levels more
// than `reach` dollars from the touch are left out (one far order would flatten the rest).
export function depthChart(canvas, bids, asks, reach = 0.15) {
  const { ctx, w, h } = prepare(canvas);
  if (bids.length) bids = bids.filter(([p]) => p >= bids[0][0] - reach);
  if (asks.length) asks = asks.filter(([p]) => p <= asks[0][0] + reach);
  if (!bids.length && !asks.length) return empty(ctx, w, h, "empty book");
  const pad = { l: 8, r: 8, t: 10, b: 18 };
  const cum = (levels) => {
    let total = 0;
    return levels.map(([p, q]) => [p, (total += q)]);
  };
  const b = cum(bids);
  const a = cum(asks);
  const prices = [...b, ...a].map((x) => x[0]);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (hi === lo) {
    lo -= 0.01;
    hi += 0.01;
  }
  const top = Math.max(b.length ? b[b.length - 1][1] : 0, a.length ? a[a.length - 1][1] : 0) || 1;
  const x = (p) => pad.l + ((p - lo) / (hi - lo)) * (w - pad.l - pad.r);
  const y = (q) => h - pad.b - (q / top) * (h - pad.t - pad.b);
  const side = (points, color) => {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), y(0));
    let prev = 0;
    for (const [p, q] of points) {
      ctx.lineTo(x(p), y(prev));
      ctx.lineTo(x(p), y(q));
      prev = q;
    }
    ctx.lineTo(x(points[points.length - 1][0]), y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.25;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.stroke();
  };
  side(b, COLORS.bid);
  side(a, COLORS.ask);
  label(ctx, lo.toFixed(3).replace(/0$/, ""), pad.l, h - 4);
  label(ctx, hi.toFixed(3).replace(/0$/, ""), w - pad.r, h - 4, "right");
  label(ctx, `${format(top)} shares`, pad.l, pad.t + 2);
}

// points: [[ms, price]] in time order
export function priceChart(canvas, points, decimals = 2) {
  const { ctx, w, h } = prepare(canvas);
  if (!points.length) return empty(ctx, w, h, "no trade seen yet");
  const pad = { l: 8, r: 46, t: 10, b: 18 };
  const t0 = points[0][0];
  const t1 = Math.max(points[points.length - 1][0], t0 + 1000);
  let lo = Math.min(...points.map((p) => p[1]));
  let hi = Math.max(...points.map((p) => p[1]));
  const margin = Math.max((hi - lo) * 0.1, 0.005);
  lo -= margin;
  hi += margin;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (p) => h - pad.b - ((p - lo) / (hi - lo)) * (h - pad.t - pad.b);
  ctx.strokeStyle = COLORS.grid;
  for (const p of [lo + margin, hi - margin]) {
    ctx.beginPath();
    ctx.moveTo(pad.l, y(p));
    ctx.lineTo(w - pad.r, y(p));
    ctx.stroke();
    label(ctx, p.toFixed(decimals), w - pad.r + 4, y(p) + 4);
  }
  ctx.strokeStyle = COLORS.line;
  ctx.beginPath();
  points.forEach(([t, p], i) => {
    const px = x(t);
    const py = y(p);
    if (i === 0) ctx.moveTo(px, py);
    else {
      ctx.lineTo(px, y(points[i - 1][1]));
      ctx.lineTo(px, py);
    }
  });
  ctx.lineTo(w - pad.r, y(points[points.length - 1][1]));
  ctx.stroke();
  const seconds = Math.round((t1 - t0) / 1000);
  label(ctx, seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${seconds} s`, pad.l, h - 4);
  label(ctx, "now", w - pad.r, h - 4, "right");
}

// values: numbers (null: no value), oldest first
export function sparkline(canvas, values, unit = "") {
  const { ctx, w, h } = prepare(canvas);
  const known = values.filter((v) => v !== null && Number.isFinite(v));
  if (!known.length) return empty(ctx, w, h, "no data yet");
  const pad = { l: 6, r: 60, t: 14, b: 8 };
  const hi = Math.max(...known) || 1;
  const x = (i) => pad.l + (i / Math.max(values.length - 1, 1)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - (v / hi) * (h - pad.t - pad.b);
  ctx.strokeStyle = COLORS.line;
  ctx.beginPath();
  let started = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) return;
    if (!started) ctx.moveTo(x(i), y(v));
    else ctx.lineTo(x(i), y(v));
    started = true;
  });
  ctx.stroke();
  const last = known[known.length - 1];
  label(ctx, `${format(last)}${unit}`, w - pad.r + 4, y(last) + 4);
  label(ctx, `max ${format(hi)}${unit}`, pad.l + 2, pad.t + 2);
}

export function format(v) {
  if (Number.isInteger(v) || v >= 1000) return Math.round(v).toLocaleString("en-US");
  if (v >= 10) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toFixed(3);
}
