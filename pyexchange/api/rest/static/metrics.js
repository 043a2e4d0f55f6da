// The operator page's arithmetic on /ops/v1/health samples (cumulative Prometheus values):
// rates between two samples, and windowed quantiles from histogram bucket deltas with
// linear interpolation inside a bucket, as Prometheus's histogram_quantile() does.

function family(sample, name) {
  return (sample && sample.metrics && sample.metrics[name]) || { type: "", series: [] };
}

const matches = (labels, filter) => !filter || Object.entries(filter).every(([k, v]) => labels[k] === v);

export function total(sample, name, filter) {
  let sum = 0;
  for (const s of family(sample, name).series) if (matches(s.labels, filter)) sum += s.value;
  return sum;
}

export function byLabel(sample, name, label) {
  const out = new Map();
  for (const s of family(sample, name).series) {
    const key = s.labels[label] ?? "";
    out.set(key, (out.get(key) || 0) + (s.value ?? s.count ?? 0));
  }
  return out;
}

// per second between two samples; null across a restart (a counter went down)
export function rate(a, b, name, filter) {
  if (!a || !b || b.time <= a.time) return null;
  const d = total(b, name, filter) - total(a, name, filter);
  return d < 0 ? null : d / (b.time - a.time);
}

export function rates(a, b, name, label) {
  const out = new Map();
  if (!a || !b || b.time <= a.time) return out;
  const before = byLabel(a, name, label);
  for (const [key, value] of byLabel(b, name, label)) {
    const d = value - (before.get(key) || 0);
    if (d > 0) out.set(key, d / (b.time - a.time));
  }
  return out;
}

// {buckets: [[le, cumulative]], sum, count} of a histogram, its series merged
export function histogram(sample, name, filter) {
  const merged = new Map();
  let sum = 0;
  let count = 0;
  for (const s of family(sample, name).series) {
    if (!matches(s.labels, filter)) continue;
    sum += s.sum;
    count += s.count;
    for (const [le, c] of s.buckets) merged.set(le, (merged.get(le) || 0) + c);
  }
  const buckets = [...merged].map(([le, c]) => [le === "+Inf" ? Infinity : Number(le), c]);
  buckets.sort((x, y) => x[0] - y[0]);
  return { buckets, sum, count };
}

// what happened between two samples (null across a restart)
export function delta(a, b, name, filter) {
  const x = histogram(a, name, filter);
  const y = histogram(b, name, filter);
  if (y.count < x.count) return null;
  const before = new Map(x.buckets);
  return {
    buckets: y.buckets.map(([le, c]) => [le, c - (before.get(le) || 0)]),
    sum: y.sum - x.sum,
    count: y.count - x.count,
  };
}

export function quantile(q, hist) {
  if (!hist || !hist.count) return null;
  const rank = q * hist.count;
  let lower = 0;
  let below = 0;
  for (const [le, cumulative] of hist.buckets) {
    if (cumulative >= rank) {
      if (le === Infinity) return lower; // beyond the last bound: its lower edge
      const inBucket = cumulative - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = cumulative;
  }
  return lower;
}

// the upper bound of the bucket the q-quantile falls in (for counts such as batch sizes,
// where interpolating inside a bucket would show a fraction)
export function bound(q, hist) {
  if (!hist || !hist.count) return null;
  const rank = q * hist.count;
  for (const [le, cumulative] of hist.buckets) if (cumulative >= rank) return le;
  return Infinity;
}

export function mean(hist) {
  return hist && hist.count ? hist.sum / hist.count : null;
}
