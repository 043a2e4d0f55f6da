// The market list and the market page: ladder, depth chart, price chart, trade tape, and
// for a key: the order ticket, open orders, positions and balance.

import { signedPost } from "./api.js";
import { depthChart, priceChart } from "./charts.js";
import { amount, units } from "./live.js";
import { $, el, fill, on } from "./render.js";

const INTENTS = {
  ORDER_INTENT_BUY_LONG: "Buy YES",
  ORDER_INTENT_SELL_LONG: "Sell YES",
  ORDER_INTENT_BUY_SHORT: "Buy NO",
  ORDER_INTENT_SELL_SHORT: "Sell NO",
};
const STATE_NAMES = { MARKET_STATE_OPEN: "open" };

const shortState = (s) => (s ? STATE_NAMES[s] || s.replace(/^MARKET_(STATE|STATUS)_/, "").toLowerCase() : "");
const dash = (v) => (v === null || v === undefined || v === "" ? "—" : v);
const money = (v) => (v === null || v === undefined ? "—" : `$${Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`);
const clock = (iso) => (iso ? iso.slice(11, 23) : "");

export function setupMarkets(live) {
  on("list", () => {
    const rows = live.order.map((slug) => {
      const m = live.markets.get(slug);
      return el(
        "tr",
        { "data-slug": slug, onclick: () => (location.hash = `#/market/${slug}`) },
        el("td", {}, el("a", { href: `#/market/${slug}` }, m.title || slug), " ", el("small", { class: "hint" }, slug)),
        el("td", {}, shortState(m.state) || shortState(m.status)),
        el("td", { class: "num bid" }, dash(m.bid)),
        el("td", { class: "num ask" }, dash(m.ask)),
        el("td", { class: "num" }, dash(m.last)),
        el("td", { class: "num" }, dash(m.shares)),
        el("td", { class: "num" }, money(m.notional)),
      );
    });
    fill($("market-list").tBodies[0], rows);
    $("list-source").textContent = live.key
      ? "Bid, ask, last and shares traded stream live (MARKET_DATA_LITE); notional is re-read every 15 s."
      : "Polled from the public REST endpoints every 3 s. Paste a key for the live streams.";
  });
}

export function setupMarket(live) {
  const ticket = $("ticket");
  const result = $("ticket-result");
  let sentId = null;

  on("market", () => {
    const slug = live.focus;
    if (!slug) return;
    const m = live.markets.get(slug) || {};
    $("m-title").textContent = m.title || slug;
    $("m-slug").textContent = slug;
    $("m-state").textContent = shortState(m.state || m.status);
    if (!ticket.price.value && m.bid) ticket.price.placeholder = m.bid;
  });

  on("book", () => {
    const slug = live.focus;
    const book = slug && live.books.get(slug);
    const tbody = $("ladder").tBodies[0];
    if (!book) {
      fill(tbody, [el("tr", {}, el("td", { colspan: 5, class: "hint" }, "waiting for the book"))]);
      depthChart($("depth"), [], []);
      return;
    }
    const mine = { bid: new Map(), ask: new Map() };
    for (const o of live.orders.values()) {
      if (o.marketSlug !== slug) continue;
      const side = o.side === "ORDER_SIDE_BUY" ? "bid" : "ask";
      const px = units(o.price);
      mine[side].set(px, (mine[side].get(px) || 0) + units(String(o.leavesQuantity)));
    }
    const shown = (map, px) => (map.has(px) ? String(map.get(px) / 10000) : "");
    const rows = [];
    for (const level of [...book.offers].reverse()) {
      const px = amount(level.px);
      const own = shown(mine.ask, units(px));
      rows.push(
        el("tr", { "data-side": "ask", "data-px": px, "data-qty": level.qty, class: "ask-row" },
          el("td", {}), el("td", {}), el("td", { class: "px ask" }, px),
          el("td", { class: "num ask" }, level.qty), el("td", { class: "num mine" }, own)),
      );
    }
    book.bids.forEach((level, i) => {
      const px = amount(level.px);
      const own = shown(mine.bid, units(px));
      rows.push(
        el("tr", { "data-side": "bid", "data-px": px, "data-qty": level.qty, class: i === 0 ? "best-bid" : "" },
          el("td", { class: "num mine" }, own), el("td", { class: "num bid" }, level.qty),
          el("td", { class: "px bid" }, px), el("td", {}), el("td", {})),
      );
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "hint" }, "empty book")));
    fill(tbody, rows);
    const levels = (side) => side.map((l) => [units(l.px) / 10000, units(l.qty) / 10000]);
    depthChart($("depth"), levels(book.bids), levels(book.offers));
    const s = book.stats;
    $("stats").replaceChildren(
      ...(s
        ? [["last", amount(s.lastTradePx)], ["high", amount(s.highPx)], ["low", amount(s.lowPx)],
           ["shares", s.sharesTraded], ["notional", money(amount(s.notionalTraded))]]
            .map(([k, v]) => el("span", {}, `${k} `, el("b", {}, dash(v))))
        : [el("span", {}, "no trade yet")]),
    );
    $("book-age").textContent = live.key ? "live" : "polled every second";
  });

  on("tape", () => {
    const slug = live.focus;
    const tape = slug && live.tapes.get(slug);
    const tbody = $("tape").tBodies[0];
    if (!live.key) {
      fill(tbody, []);
      $("tape-note").textContent = "the venue streams trades on its WebSocket: paste a key";
      return;
    }
    const trades = tape ? tape.trades.slice(0, 25) : [];
    fill(tbody, trades.map((t) => {
      const side = t.taker === "ORDER_SIDE_BUY" ? "buy" : "sell";
      return el("tr", {}, el("td", {}, clock(t.time)), el("td", { class: `num ${side}` }, t.px),
        el("td", { class: "num" }, t.qty), el("td", { class: side }, side));
    }));
    const gap = tape && tape.gapAt && performance.now() - tape.gapAt < 6000;
    $("tape-note").textContent = gap ? "missed a trade frame: counting again" : "since this page opened";
  });

  on("price", () => {
    const slug = live.focus;
    const points = (live.prices.get(slug) || []).map(([t, p]) => [t, p / 10000]);
    const tick = (live.markets.get(slug) || {}).tick;
    priceChart($("price"), points, tick && tick < 0.01 ? 3 : 2);
    $("price-note").textContent = live.key ? "trades since this page opened" : "last price, sampled";
  });

  on("orders", () => {
    const slug = live.focus;
    const tbody = $("orders").tBodies[0];
    const mine = [...live.orders.values()].filter((o) => o.marketSlug === slug);
    fill(tbody, mine.map((o) =>
      el("tr", { "data-order": o.id },
        el("td", {}, o.id), el("td", {}, INTENTS[o.intent] || o.intent),
        el("td", { class: "num" }, amount(o.price)), el("td", { class: "num" }, o.leavesQuantity),
        el("td", { class: "num" }, o.cumQuantity || 0),
        el("td", {}, el("button", { class: "small", "data-cancel": o.id, onclick: () => cancel(o) }, "Cancel"))),
    ));
    if (!mine.length) fill(tbody, [el("tr", {}, el("td", { colspan: 6, class: "hint" }, "no open order in this market"))]);
  });

  on("positions", () => {
    const rows = Object.entries(live.positions).map(([slug, p]) =>
      el("tr", { "data-position": slug }, el("td", {}, slug), el("td", { class: "num" }, p.netPositionDecimal ?? p.netPosition),
        el("td", { class: "num" }, money(amount(p.cost))), el("td", { class: "num" }, money(amount(p.realized)))),
    );
    fill($("positions").tBodies[0], rows.length ? rows : [el("tr", {}, el("td", { colspan: 4, class: "hint" }, "no position"))]);
  });

  on("balance", () => {
    const b = live.balance;
    const rows = b
      ? [["cash", b.currentBalance], ["buying power", b.buyingPower], ["in open orders", b.openOrders],
         ["positions' value", b.assetNotional]].map(([k, v]) => el("tr", { "data-balance": k }, el("td", {}, k), el("td", {}, money(v))))
      : [el("tr", {}, el("td", { class: "hint" }, "waiting for the balance"))];
    fill($("balance").tBodies[0], rows);
  });

  const show = (execution) => {
    const o = execution.order;
    const state = o.state.replace("ORDER_STATE_", "").toLowerCase().replace("_", " ");
    const text = execution.text ? `: ${execution.text}` : "";
    result.textContent = `order ${o.id} ${state}${text}`;
    result.classList.toggle("error", o.state === "ORDER_STATE_REJECTED");
  };
  live.listeners.execution.push((execution) => {
    if (execution.order.id === sentId) show(execution);
  });

  async function cancel(order) {
    try {
      await signedPost(live.key, `/v1/order/${order.id}/cancel`, { marketSlug: order.marketSlug });
    } catch (error) {
      result.textContent = `cancel refused: ${error.message}`;
      result.classList.add("error");
    }
  }

  $("cancel-all").addEventListener("click", async () => {
    try {
      const { canceledOrderIds = [] } = await signedPost(live.key, "/v1/orders/open/cancel", { slugs: [live.focus] });
      result.textContent = `${canceledOrderIds.length} order(s) canceled`;
      result.classList.remove("error");
    } catch (error) {
      result.textContent = `cancel refused: ${error.message}`;
      result.classList.add("error");
    }
  });

  ticket.type.addEventListener("change", () => {
    const market = ticket.type.value === "ORDER_TYPE_MARKET";
    ticket.price.disabled = market;
    if (market && ticket.tif.value === "TIME_IN_FORCE_GOOD_TILL_CANCEL") ticket.tif.value = "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL";
  });

  ticket.addEventListener("submit", async (event) => {
    event.preventDefault();
    const limit = ticket.type.value === "ORDER_TYPE_LIMIT";
    const body = {
      marketSlug: live.focus,
      intent: ticket.intent.value,
      type: ticket.type.value,
      quantity: Number(ticket.quantity.value),
      tif: ticket.tif.value,
    };
    if (limit) body.price = { value: ticket.price.value.trim(), currency: "USD" };
    if (ticket.postOnly.checked) body.participateDontInitiate = true;
    result.classList.remove("error");
    result.textContent = "sending...";
    try {
      const { id } = await signedPost(live.key, "/v1/orders", body);
      sentId = id;
      result.textContent = `order ${id} sent`;
      const seen = live.executions.get(id); // its execution may have come before this answer
      if (seen) show(seen);
    } catch (error) {
      result.textContent = `refused (${error.status}): ${error.message}`;
      result.classList.add("error");
    }
  });
}
