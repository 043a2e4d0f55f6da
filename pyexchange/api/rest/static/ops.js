// The operator page: /ops/v1/health once a second while the page is shown; rates over the
// last 5 s, quantiles over the last 10 s, two minutes of history in the sparklines.

import { publicGet } from "./api.js";
import { format, sparkline } from "./charts.js";
import { bound, byLabel, mean, quantile, rate, rates, total, delta } from "./metrics.js";
import { $, el, fill, invalidate, on } from "./render.js";

const KEEP = 120;
const LATENCY = "pyexchange_command_latency_seconds";

const ms = (seconds) => (seconds === null ? "—" : `${format(seconds * 1000)} ms`);
const per = (v) => (v === null ? "—" : `${format(v)}/s`);

export function setupOps() {
  const samples = [];
  const history = { commands: [], p99: [], queue: [] };
  let timer = null;
  let failed = false;

  const ago = (seconds) => {
    const last = samples[samples.length - 1];
    for (let i = samples.length - 2; i >= 0; i -= 1) if (last.time - samples[i].time >= seconds - 0.25) return samples[i];
    return samples[0];
  };

  async function poll() {
    try {
      const sample = await publicGet("/ops/v1/health");
      failed = false;
      const previous = samples[samples.length - 1];
      samples.push(sample);
      if (samples.length > KEEP) samples.shift();
      const recent = previous ? delta(previous, sample, LATENCY) : null;
      history.commands.push(previous ? rate(previous, sample, "pyexchange_commands_total") : null);
      history.p99.push(recent && recent.count ? quantile(0.99, recent) * 1000 : null);
      history.queue.push(total(sample, "pyexchange_queue_depth"));
      for (const list of Object.values(history)) if (list.length > KEEP) list.shift();
    } catch {
      failed = true;
    }
    invalidate("ops");
  }

  on("ops", () => {
    const last = samples[samples.length - 1];
    if (!last) return;
    const five = ago(5);
    const ten = ago(10);
    const batches = delta(ten, last, "pyexchange_batch_size");
    const fsync = delta(ten, last, "pyexchange_journal_fsync_seconds");
    const acks = delta(ten, last, LATENCY);
    const seconds = last.time - ten.time;
    const cards = [
      ["status", failed ? "unreachable" : last.status.toLowerCase()],
      ["commands/s", per(rate(five, last, "pyexchange_commands_total"))],
      ["orders/s", per(rate(five, last, "pyexchange_orders_total"))],
      ["trades/s", per(rate(five, last, "pyexchange_trades_total"))],
      ["queue depth", format(total(last, "pyexchange_queue_depth"))],
      ["sequencer queue", format(total(last, "pyexchange_sequencer_queue"))],
      ["batch size (mean, p99)", batches && batches.count ? `${format(mean(batches))}, ≤ ${format(bound(0.99, batches))}` : "—"],
      ["journal fsync (p50, p99)", fsync && fsync.count ? `${ms(quantile(0.5, fsync))}, ${ms(quantile(0.99, fsync))}` : "no fsync"],
      ["ack p50", ms(quantile(0.5, acks))],
      ["ack p99", ms(quantile(0.99, acks))],
      ["ack p99.9", ms(quantile(0.999, acks))],
    ];
    fill($("ops-cards"), cards.map(([k, v]) => el("div", { class: "card", "data-card": k }, el("div", { class: "v" }, v), el("div", { class: "k" }, k))));
    $("ops-note").textContent = failed ? "the server cannot be reached: retrying" : `sampled every second, windows of 5 and 10 s`;
    sparkline($("ops-commands"), history.commands, "/s");
    sparkline($("ops-latency"), history.p99, " ms");
    sparkline($("ops-queue"), history.queue);

    const commands = new Set(byLabel(last, LATENCY, "command").keys());
    fill($("ops-latency-table").tBodies[0], [...commands].sort().map((command) => {
      const w = delta(ten, last, LATENCY, { command });
      const q = (x) => ms(quantile(x, w));
      return el("tr", {}, el("td", {}, command), el("td", { class: "num" }, w && seconds > 0 ? format(w.count / seconds) : "—"),
        el("td", { class: "num" }, q(0.5)), el("td", { class: "num" }, q(0.9)), el("td", { class: "num" }, q(0.99)), el("td", { class: "num" }, q(0.999)));
    }));

    const subscribers = [
      ...[...byLabel(last, "pyexchange_websocket_connections", "endpoint")].map(([k, v]) => [`WebSocket ${k}`, v]),
      ...[...byLabel(last, "pyexchange_subscribers", "feed")].map(([k, v]) => [`gRPC ${k}`, v]),
    ];
    fill($("ops-subscribers").tBodies[0], subscribers.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, format(v)))));

    const refused = [
      ...[...rates(ten, last, "pyexchange_refused_total", "status")].map(([k, v]) => [`refused ${k}`, v]),
      ...[...rates(ten, last, "pyexchange_rejects_total", "reason")].map(([k, v]) => [`rejected ${k}`, v]),
    ];
    fill($("ops-refused").tBodies[0], refused.length
      ? refused.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, per(v))))
      : [el("tr", {}, el("td", { class: "hint" }, "none"))]);

    const routes = [...rates(ten, last, "pyexchange_http_requests_total", "route")].sort((a, b) => b[1] - a[1]).slice(0, 12);
    fill($("ops-routes").tBodies[0], routes.length
      ? routes.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, per(v))))
      : [el("tr", {}, el("td", { class: "hint" }, "none"))]);
  });

  return {
    show() {
      if (!timer) {
        poll();
        timer = setInterval(poll, 1000);
      }
    },
    hide() {
      clearInterval(timer);
      timer = null;
    },
  };
}
