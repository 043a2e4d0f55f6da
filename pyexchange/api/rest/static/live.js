// What the pages show, and where it comes from.
//
// Without a key: the public REST endpoints (the venue's gateway), polled: the market list
// every 3 s, the open market's book every second. With a key: the venue's two WebSockets,
// signed in the browser: MARKET_DATA_LITE and TRADE for every listed market (up to 100),
// MARKET_DATA for the open market; ORDER, ORDER_SNAPSHOT, POSITION and ACCOUNT_BALANCE of
// the key's account; positions re-read over REST (at most once a second) after a POSITION
// frame. Nothing here draws: each change marks a part of the page dirty (render.js).
//
// Staleness: a socket that is down or quiet for 2.5 heartbeats (stream.js); the open
// market's trade tape disagreeing with the book's own count of shares traded for more than
// 1.5 s (a trade frame was missed: the tape is marked and counted again from the next book frame); an
// order execution whose cumulative quantity does not follow from the last one seen (a
// missed execution: the open orders are read again from a fresh ORDER_SNAPSHOT).

import { ApiError, publicGet, signedGet } from "./api.js";
import { invalidate } from "./render.js";
import { Stream } from "./stream.js";

const OPEN_STATES = new Set(["ORDER_STATE_NEW", "ORDER_STATE_PARTIALLY_FILLED", "ORDER_STATE_PENDING_NEW"]);
const MAX_TRADES = 200;
const MAX_PRICES = 2000;
const GAP_GRACE_MS = 1500;

// A decimal string as an integer of 1e-4 units (exact for the venue's quantities and prices).
export function units(text) {
  if (text === null || text === undefined || text === "") return 0;
  const value = typeof text === "object" ? text.value : String(text);
  const negative = value.startsWith("-");
  const [whole, fraction = ""] = value.replace("-", "").split(".");
  const n = Number(whole || "0") * 10000 + Number((fraction + "0000").slice(0, 4));
  return negative ? -n : n;
}

export const amount = (a) => (a && typeof a === "object" ? a.value : a ?? null);

class Tape {
  constructor() {
    this.trades = []; // newest first: {time, px, qty, taker}
    this.base = null; // sharesTraded of the book frame the count starts from (units)
    this.baseTime = "";
    this.after = 0; // units traded since, from the trade frames
    this.mismatchSince = 0;
    this.gapAt = 0;
    this.missed = 0;
  }

  rebase() {
    this.base = null;
    this.mismatchSince = 0;
  }
}

export class Live {
  constructor() {
    this.key = null;
    this.heartbeatS = 10;
    this.markets = new Map(); // slug -> row of the market list
    this.order = []; // slugs in list order
    this.books = new Map(); // slug -> marketData
    this.tapes = new Map(); // slug -> Tape
    this.prices = new Map(); // slug -> [[ms, price units]]
    this.orders = new Map(); // open orders by id
    this.executions = new Map(); // the last execution of recent orders, by order id
    this.positions = {};
    this.balance = null;
    this.focus = null;
    this.notice = "";
    this.pollOk = true;
    this.pollFailedSince = 0;
    this.marketStream = null;
    this.privateStream = null;
    this.timers = [];
    this.snapshot = null; // orders of an ORDER_SNAPSHOT being received
    this.snapshotId = 0;
    this.positionsDue = null;
    this.positionsAt = 0;
    this.listeners = { execution: [] };
    this.debug = { dropTrades: 0 };
    setInterval(() => this.checkTapes(), 250);
  }

  async start(key) {
    this.stop();
    this.key = key;
    try {
      const health = await publicGet("/ops/v1/health");
      this.heartbeatS = health.heartbeatSeconds || 10;
    } catch {
      /* an older server, or down: the default period */
    }
    await this.refreshList();
    this.every(key ? 15000 : 3000, () => this.refreshList());
    if (key) {
      this.openStreams();
      this.refreshPositions();
    } else {
      this.every(1000, () => this.pollBook());
    }
    this.setFocus(this.focus);
  }

  stop() {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const stream of [this.marketStream, this.privateStream]) if (stream) stream.close();
    this.marketStream = this.privateStream = null;
    this.orders.clear();
    this.positions = {};
    this.balance = null;
    for (const tape of this.tapes.values()) tape.rebase();
  }

  every(ms, fn) {
    this.timers.push(setInterval(fn, ms));
  }

  // ------------------------------------------------------------- status

  status() {
    if (!this.key) {
      if (!this.pollOk) return ["down", "the server cannot be reached"];
      return ["polling", "public REST, polled (paste a key for the live streams)"];
    }
    const states = [this.marketStream, this.privateStream].filter(Boolean).map((s) => s.state);
    if (states.includes("down")) return ["down", "reconnecting"];
    if (states.includes("connecting")) return ["connecting", "connecting"];
    if (states.includes("stale")) return ["stale", `stale: no heartbeat for ${2.5 * this.heartbeatS} s`];
    const tape = this.focus && this.tapes.get(this.focus);
    if (tape && tape.gapAt && performance.now() - tape.gapAt < 5000) {
      return ["stale", `stale: the trade tape missed ${tape.missed / 10000} shares; counting again`];
    }
    return ["live", "live: WebSocket streams"];
  }

  // ------------------------------------------------------------- REST

  async refreshList() {
    try {
      const { markets = [] } = await publicGet("/v1/markets", { limit: 1000 });
      const slugs = [];
      for (const m of markets) {
        slugs.push(m.slug);
        const row = this.markets.get(m.slug) || { slug: m.slug, last: null, shares: null, state: null };
        row.title = m.title;
        row.status = m.status;
        row.tick = m.orderPriceMinTickSize;
        row.notional = m.volume;
        if (!this.key || row.state === null) {
          row.bid = amount(m.bestBidQuote);
          row.ask = amount(m.bestAskQuote);
        }
        this.markets.set(m.slug, row);
      }
      const changed = slugs.join() !== this.order.join();
      this.order = slugs;
      if (!this.key) await this.pollLite(slugs.slice(0, 12));
      if (changed && this.marketStream) this.subscribeMarkets();
      this.pollDone(true);
    } catch (error) {
      this.pollDone(false, error);
    }
    invalidate("list", "status");
  }

  async pollLite(slugs) {
    const answers = await Promise.all(slugs.map((s) => publicGet(`/v1/markets/${s}/bbo`).catch(() => null)));
    for (const answer of answers) if (answer) this.onLite(answer.marketData);
  }

  async pollBook() {
    const slug = this.focus;
    if (!slug) return;
    try {
      const { marketData } = await publicGet(`/v1/markets/${slug}/book`);
      this.onBook(marketData, true);
      this.pollDone(true);
    } catch (error) {
      this.pollDone(false, error);
    }
  }

  pollDone(ok, error) {
    this.pollOk = ok || (error instanceof ApiError && error.status !== 0 && error.status !== 503);
    this.notice = error && error.status === 503 ? error.message : ok ? "" : this.notice;
    invalidate("status");
  }

  async refreshPositions() {
    if (!this.key) return;
    this.positionsAt = performance.now();
    try {
      const { positions = {} } = await signedGet(this.key, "/v1/portfolio/positions", { limit: 100 });
      this.positions = positions;
      invalidate("positions");
    } catch {
      /* shown again on the next change */
    }
  }

  positionsChanged() {
    if (this.positionsDue) return;
    const wait = Math.max(0, 1000 - (performance.now() - this.positionsAt));
    this.positionsDue = setTimeout(() => {
      this.positionsDue = null;
      this.refreshPositions();
    }, wait);
  }

  // ------------------------------------------------------------- streams

  openStreams() {
    const onState = () => invalidate("status");
    this.marketStream = new Stream("/v1/ws/markets", this.key, {
      heartbeatS: this.heartbeatS,
      onFrame: (m) => this.onMarketFrame(m),
      onState,
      onOpen: () => {
        for (const tape of this.tapes.values()) tape.rebase();
      },
    });
    this.privateStream = new Stream("/v1/ws/private", this.key, {
      heartbeatS: this.heartbeatS,
      onFrame: (m) => this.onPrivateFrame(m),
      onState,
      onOpen: () => this.requestSnapshot(),
    });
    this.subscribeMarkets();
    this.privateStream.subscribe("orders", "SUBSCRIPTION_TYPE_ORDER");
    this.privateStream.subscribe("positions", "SUBSCRIPTION_TYPE_POSITION");
    this.privateStream.subscribe("balance", "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE");
    this.marketStream.open();
    this.privateStream.open();
  }

  subscribeMarkets() {
    const stream = this.marketStream;
    if (!stream) return;
    const slugs = this.order.slice(0, 100);
    if (!slugs.length) return;
    // trades before the lite frames: a book frame never counts a trade whose frame is not
    // already queued behind it or before it (the gap check relies on it)
    stream.subscribe("trades", "SUBSCRIPTION_TYPE_TRADE", slugs);
    stream.subscribe("lite", "SUBSCRIPTION_TYPE_MARKET_DATA_LITE", slugs);
  }

  setFocus(slug) {
    this.focus = slug;
    const stream = this.marketStream;
    if (stream) {
      if (slug) {
        const tape = this.tape(slug);
        tape.rebase();
        stream.subscribe("book", "SUBSCRIPTION_TYPE_MARKET_DATA", [slug]);
      } else {
        stream.unsubscribe("book");
      }
    } else if (slug && this.key === null) {
      this.pollBook();
    }
    invalidate("market", "book", "tape", "price", "orders", "positions", "balance", "status");
  }

  requestSnapshot() {
    this.snapshotId += 1;
    this.snapshot = { id: `snapshot-${this.snapshotId}`, orders: [] };
    this.privateStream.request(this.snapshot.id, "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT");
  }

  onMarketFrame(m) {
    if (m.error !== undefined) {
      this.notice = `market stream: ${m.error}`;
      invalidate("status");
    } else if (m.marketData) this.onBook(m.marketData, false);
    else if (m.marketDataLite) this.onLite(m.marketDataLite);
    else if (m.trade) this.onTrade(m.trade);
  }

  onPrivateFrame(m) {
    if (m.error) {
      this.notice = `private stream: ${m.error}`;
      invalidate("status");
      return;
    }
    if (m.orderSubscriptionSnapshot) {
      const part = m.orderSubscriptionSnapshot;
      if (!this.snapshot || m.requestId !== this.snapshot.id) return;
      this.snapshot.orders.push(...(part.orders || []));
      if (part.eof) {
        this.orders = new Map(this.snapshot.orders.map((o) => [o.id, o]));
        this.snapshot = null;
        invalidate("orders", "book");
      }
    } else if (m.orderSubscriptionUpdate) {
      this.onExecution(m.orderSubscriptionUpdate.execution);
    } else if (m.positionSubscription) {
      this.positionsChanged();
    } else if (m.accountBalancesSnapshot) {
      this.balance = (m.accountBalancesSnapshot.balances || [])[0] || null;
      invalidate("balance");
    } else if (m.accountBalancesUpdate) {
      this.balance = m.accountBalancesUpdate.balanceChange.afterBalance;
      invalidate("balance");
    }
  }

  onExecution(execution) {
    const order = execution.order;
    const known = this.orders.get(order.id);
    if (known && execution.lastShares && execution.type !== "EXECUTION_TYPE_REPLACE") {
      const expected = units(String(known.cumQuantity || 0)) + units(execution.lastShares);
      if (units(String(order.cumQuantity || 0)) !== expected && !this.snapshot) {
        this.notice = "an order execution was missed: open orders read again";
        this.requestSnapshot();
      }
    }
    if (OPEN_STATES.has(order.state)) this.orders.set(order.id, order);
    else this.orders.delete(order.id);
    this.executions.delete(order.id);
    this.executions.set(order.id, execution);
    if (this.executions.size > 500) this.executions.delete(this.executions.keys().next().value);
    for (const listener of this.listeners.execution) listener(execution);
    invalidate("orders", "book");
  }

  tape(slug) {
    let tape = this.tapes.get(slug);
    if (!tape) this.tapes.set(slug, (tape = new Tape()));
    return tape;
  }

  onBook(book, polled) {
    const slug = book.marketSlug;
    this.books.set(slug, { ...book, receivedAt: performance.now() });
    const row = this.markets.get(slug);
    if (row) {
      row.state = book.state;
      row.bid = book.bids.length ? amount(book.bids[0].px) : null;
      row.ask = book.offers.length ? amount(book.offers[0].px) : null;
      if (book.stats) {
        row.last = amount(book.stats.lastTradePx);
        row.shares = book.stats.sharesTraded;
      }
    }
    if (polled && book.stats && book.stats.lastTradePx) {
      this.addPrice(slug, Date.now(), units(book.stats.lastTradePx), true);
    }
    if (!polled) this.countTape(slug, book);
    invalidate("book", "list", "market");
  }

  onLite(lite) {
    const row = this.markets.get(lite.marketSlug);
    if (!row) return;
    row.bid = amount(lite.bestBid);
    row.ask = amount(lite.bestAsk);
    row.last = amount(lite.lastTradePx);
    row.shares = lite.sharesTraded || null;
    row.state = lite.state || row.state;
    invalidate("list");
  }

  onTrade(trade) {
    const slug = trade.marketSlug;
    if (this.debug.dropTrades > 0 && slug === this.focus) {
      this.debug.dropTrades -= 1; // the tests' way to lose a frame (the gap check must see it)
      return;
    }
    const tape = this.tape(slug);
    const entry = {
      time: trade.tradeTime,
      px: amount(trade.price),
      qty: amount(trade.quantity),
      taker: trade.taker && trade.taker.side,
    };
    tape.trades.unshift(entry);
    if (tape.trades.length > MAX_TRADES) tape.trades.length = MAX_TRADES;
    if (tape.base !== null && entry.time > tape.baseTime) tape.after += units(entry.qty);
    this.addPrice(slug, Date.parse(entry.time), units(entry.px), false);
    this.judgeTape(tape, this.books.get(slug));
    if (slug === this.focus) invalidate("tape", "price");
  }

  addPrice(slug, ms, px, sampled) {
    let prices = this.prices.get(slug);
    if (!prices) this.prices.set(slug, (prices = []));
    const last = prices[prices.length - 1];
    if (sampled && last && last[1] === px) return;
    prices.push([ms, px]);
    if (prices.length > MAX_PRICES) prices.splice(0, prices.length - MAX_PRICES);
    if (slug === this.focus) invalidate("price");
  }

  // The tape against the book's sharesTraded: the count starts at a book frame (trades
  // stamped at or before its transactTime are in it) and follows the trade frames.
  countTape(slug, book) {
    const tape = this.tape(slug);
    if (!book.stats) return;
    if (tape.base === null) {
      tape.base = units(book.stats.sharesTraded);
      tape.baseTime = book.transactTime || "";
      tape.after = 0;
      for (const t of tape.trades) if (t.time > tape.baseTime) tape.after += units(t.qty);
    }
    this.judgeTape(tape, this.books.get(slug));
  }

  judgeTape(tape, book) {
    if (tape.base === null || !book || !book.stats) return;
    const difference = units(book.stats.sharesTraded) - tape.base - tape.after;
    if (difference === 0) tape.mismatchSince = 0;
    else if (!tape.mismatchSince) tape.mismatchSince = performance.now();
  }

  checkTapes() {
    const now = performance.now();
    for (const [slug, tape] of this.tapes) {
      if (tape.mismatchSince && now - tape.mismatchSince > GAP_GRACE_MS) {
        const book = this.books.get(slug);
        tape.missed = book && book.stats ? units(book.stats.sharesTraded) - tape.base - tape.after : 0;
        tape.gapAt = now;
        tape.rebase(); // counted again from the next book frame
        invalidate("status", "tape");
      }
    }
    if (this.focus) {
      const tape = this.tapes.get(this.focus);
      if (tape && tape.gapAt && now - tape.gapAt < 6000) invalidate("status");
    }
  }
}
