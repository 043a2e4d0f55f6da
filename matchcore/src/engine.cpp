// The command path of the engine: validation, matching, settlement, book upkeep.
// The exact order of checks and events is docs/matchcore.md §4 and §8.
#include "matchcore/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace matchcore {

namespace {

bool valid_transition(uint8_t from, uint8_t to) noexcept {
  const bool ends = to == CLOSED || to == EXPIRED;
  switch (from) {
    case PRE_OPEN:
      return to == OPEN || ends;
    case OPEN:
      return to == SUSPENDED || to == HALTED || ends;
    case SUSPENDED:
      return to == OPEN || to == HALTED || ends;
    case HALTED:
      return to == OPEN || to == SUSPENDED || ends;
    default:
      return false;
  }
}

}  // namespace

bool Engine::init(const Config& config, std::string& error) {
  const struct {
    const char* name;
    uint32_t value;
    uint32_t limit;
    bool zero_means_default;
  } bounds[] = {{"max_orders", config.max_orders, MAX_ORDERS, false},
                {"max_markets", config.max_markets, MAX_MARKETS, false},
                {"max_accounts", config.max_accounts, MAX_ACCOUNTS, false},
                {"max_levels", config.max_levels, MAX_LEVELS, true},
                {"max_positions", config.max_positions, MAX_POSITIONS, true}};
  for (const auto& b : bounds) {
    if ((b.value < 1 && !b.zero_means_default) || b.value > b.limit) {
      error = std::string(b.name) + " must be in [1, " + std::to_string(b.limit) + "], not " +
              std::to_string(b.value);
      return false;
    }
  }
  config_ = config;
  if (config_.max_levels == 0) {
    uint64_t levels = uint64_t{config.max_markets} * 2 * 999;
    config_.max_levels = static_cast<uint32_t>(std::min<uint64_t>(levels, MAX_LEVELS));
  }
  if (config_.max_positions == 0) {
    uint64_t positions = uint64_t{config.max_orders} + config.max_accounts;
    config_.max_positions = static_cast<uint32_t>(std::min<uint64_t>(positions, MAX_POSITIONS));
  }
  pool_.init(config_.max_orders);
  client_index_.init(config_.max_orders);
  expiry_.init(config_.max_orders);
  accounts_.assign(config_.max_accounts, Account{0, 0, NIL, NIL, 0, 0});
  positions_.init(config_.ledger ? config_.max_positions : 1);
  net_deposits_ = fees_ = 0;
  Market blank{};
  blank.best[BID] = blank.best[ASK] = -1;
  blank.bits[BID].clear_all();
  blank.bits[ASK].clear_all();
  markets_.assign(config_.max_markets, blank);
  for (uint32_t i = 0; i < config_.max_markets; ++i) markets_[i].id = i;
  levels_.assign(config_.max_levels, Level{NIL, NIL, 0, 0, 0});
  levels_top_ = levels_in_use_ = 0;
  events_.reserve(1 << 16);
  const MemoryStats bytes = memory();
  prefetch_ = bytes.orders + bytes.slot_map + bytes.client_index + bytes.expiry_heap +
                  bytes.levels + bytes.markets + bytes.accounts + bytes.positions >=
              PREFETCH_BYTES;
  now_ = 0;
  next_order_id_ = 1;
  return true;
}

void Engine::process(const Command* commands, size_t count) {
  if (!full_prefetch()) {
    for (size_t i = 0; i < count; ++i) {
      prefetch_near(commands, i, count);
      execute(commands[i]);
    }
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    prefetch_ahead(commands, i, count);
    execute(commands[i]);
  }
}

// ----------------------------------------------------------- prefetching

void Engine::prefetch_market(uint32_t market) const noexcept {
  // The header, up to the level bitsets (which prefetch_level() asks for by word).
  const char* first = reinterpret_cast<const char*>(&markets_[market]);
  for (size_t at = 0; at < offsetof(Market, bits); at += 64) prefetch_line(first + at);
  prefetch_line(first + offsetof(Market, bits) - 1);
}

void Engine::prefetch_level(const Market& m, int side, int32_t price) const noexcept {
  if (m.levels_per_side == 0 || price <= 0 || price >= PRICE_SCALE) return;
  const int32_t index = level_index(m, price);
  if (index < 0 || static_cast<uint32_t>(index) >= m.levels_per_side) return;
  levels_.prefetch(m.level_base + side * m.levels_per_side + index);
  m.bits[side].prefetch(static_cast<uint32_t>(index));
}

void Engine::prefetch_resting(uint32_t slot, int stage) const noexcept {
  const Order& o = pool_[slot];
  if (stage == 1) {  // what unlink() and retire() touch
    prefetch_market(o.market);
    if (o.prev != NIL) pool_.prefetch_slot(o.prev);
    if (o.next != NIL) pool_.prefetch_slot(o.next);
    if (o.acct_prev != NIL) pool_.prefetch_slot(o.acct_prev);
    if (o.acct_next != NIL) pool_.prefetch_slot(o.acct_next);
    accounts_.prefetch(o.account);
    if (o.position != NIL) positions_.prefetch(o.position);
    return;
  }
  prefetch_level(markets_[o.market], side_of(o.intent), o.price);
}

void Engine::prefetch(const Command& c, int stage) const noexcept {
  if (c.type == CMD_CANCEL || c.type == CMD_REPLACE) {
    // The command's market is only a hint (the order's own counts), but one that
    // lets the levels be asked for a stage earlier.
    const bool hinted = c.market < config_.max_markets;
    if (stage == 0) {
      pool_.prefetch(c.order_id);
      if (hinted) prefetch_market(c.market);
      return;
    }
    const uint32_t slot = pool_.find(c.order_id);
    if (slot == NIL) return;
    prefetch_resting(slot, stage);
    const Order& o = pool_[slot];
    if (!hinted || o.market != c.market) return;
    const Market& m = markets_[o.market];
    const int side = side_of(o.intent);
    const bool moves = c.type == CMD_REPLACE && c.price != 0 && c.price != o.price;
    if (stage == 1) {
      prefetch_level(m, side, o.price);
      if (moves) prefetch_level(m, side, c.price);
    } else if (moves && c.price > 0 && c.price < PRICE_SCALE) {  // the order it rests after
      const int32_t index = level_index(m, c.price);
      if (index >= 0 && static_cast<uint32_t>(index) < m.levels_per_side) {
        const uint32_t tail = level(m, side, index).tail;
        if (tail != NIL) pool_.prefetch_slot(tail);
      }
    }
    return;
  }
  if (c.type != CMD_NEW_ORDER || c.market >= config_.max_markets ||
      c.account >= config_.max_accounts) {
    return;
  }
  if (stage == 0) {
    prefetch_market(c.market);
    accounts_.prefetch(c.account);
    if (config_.ledger) positions_.prefetch_find(c.account, c.market);
    return;
  }
  const Market& m = markets_[c.market];
  const int side = side_of(c.intent);
  const int32_t best = m.best[side ^ 1];
  const bool crosses = best >= 0 && takes_level(side, level_price(m, best), c.price);
  if (stage == 1) {
    // A crossing order sweeps the best opposite level; a passive one rests at its price.
    if (crosses) {
      levels_.prefetch(m.level_base + (side ^ 1) * m.levels_per_side + best);
    } else {
      prefetch_level(m, side, c.price);
    }
    if (config_.ledger) {
      const uint32_t position = positions_.find(c.account, c.market);
      if (position != NIL) positions_.prefetch(position);
    }
    const Account& a = accounts_[c.account];
    if (a.tail != NIL) pool_.prefetch_slot(a.tail);  // rest_new() links the order after it
    return;
  }
  // The first maker of a sweep, or the order a resting one is linked after.
  uint32_t slot = NIL;
  if (crosses) {
    slot = level(m, side ^ 1, best).head;
  } else if (m.levels_per_side != 0 && c.price > 0 && c.price < PRICE_SCALE) {
    const int32_t index = level_index(m, c.price);
    if (index >= 0 && static_cast<uint32_t>(index) < m.levels_per_side) {
      slot = level(m, side, index).tail;
    }
  }
  if (slot != NIL) pool_.prefetch_slot(slot);
}

namespace {

/// A cheap monotonic tick: the time-stamp counter where there is one.
inline uint64_t ticks() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

}  // namespace

void Engine::process_timed(const Command* commands, size_t count, int64_t* nanoseconds) {
  using Clock = std::chrono::steady_clock;
  const auto wall_start = Clock::now();
  const uint64_t tick_start = ticks();
  const bool full = full_prefetch();
  for (size_t i = 0; i < count; ++i) {
    const uint64_t before = ticks();
    if (full) {
      prefetch_ahead(commands, i, count);
    } else {
      prefetch_near(commands, i, count);
    }
    execute(commands[i]);
    nanoseconds[i] = static_cast<int64_t>(ticks() - before);  // ticks until scaled below
  }
  const double wall_ns = std::chrono::duration<double, std::nano>(Clock::now() - wall_start).count();
  const uint64_t elapsed_ticks = ticks() - tick_start;
  const double ns_per_tick = elapsed_ticks ? wall_ns / static_cast<double>(elapsed_ticks) : 1.0;
  for (size_t i = 0; i < count; ++i) {
    nanoseconds[i] = static_cast<int64_t>(static_cast<double>(nanoseconds[i]) * ns_per_tick + 0.5);
  }
}

int64_t Engine::execute(const Command& c) {
  seq_ = c.seq;
  command_ = c.type;
  if (c.time > now_) now_ = c.time;
  uint32_t expired = expire_due();
  switch (c.type) {
    case CMD_NEW_ORDER:
      return new_order(c);
    case CMD_CANCEL: {
      uint32_t slot = pool_.find(c.order_id);
      if (slot == NIL) return reject(c, R_UNKNOWN_ORDER);
      return cancel(c, slot);
    }
    case CMD_CANCEL_CLIENT: {
      uint32_t slot = c.client_order_id == 0
                          ? NIL
                          : client_index_.find(ClientKey{c.client_order_id, c.account});
      if (slot == NIL) return reject(c, R_UNKNOWN_ORDER);
      return cancel(c, slot);
    }
    case CMD_CANCEL_ALL:
      return cancel_all(c);
    case CMD_REPLACE:
      return replace(c);
    case CMD_ADVANCE_TIME:
      return expired;
    case CMD_CREATE_MARKET:
      return create_market(c);
    case CMD_SET_MARKET_STATE:
      return set_market_state(c);
    case CMD_SET_TICK:
      return set_tick(c);
    case CMD_ADD_ACCOUNT:
      return add_account(c);
    case CMD_DEPOSIT:
      return deposit(c);
    case CMD_WITHDRAW:
      return withdraw(c);
    case CMD_SPLIT:
    case CMD_MERGE:
      return split_or_merge(c);
    case CMD_RESOLVE:
      return resolve(c);
    default:
      return reject(c, R_INVALID_COMMAND);
  }
}

uint32_t Engine::expire_due() {
  uint32_t expired = 0;
  while (!expiry_.empty() && expiry_.top().expiry <= now_) {
    const uint32_t slot = pool_.slot_of(expiry_.top().order_id);  // the top is never stale
    const Order& o = pool_[slot];
    Market& m = markets_[o.market];
    int side = side_of(o.intent);
    int32_t index = level_index(m, o.price);
    cancel_resting(m, slot, C_EXPIRED);
    emit_level(m, side, index);
    ++expired;
  }
  return expired;
}

// ---------------------------------------------------------------- new orders


Reject Engine::quantity_check(const Market& m, int64_t quantity) const noexcept {
  if (quantity <= 0 || quantity > MAX_QUANTITY || quantity % m.lot != 0) {
    return R_INVALID_QUANTITY;
  }
  return quantity < m.min_size ? R_BELOW_MIN_SIZE : R_NONE;
}

int64_t Engine::new_order(const Command& c) {
  if (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  Market& m = markets_[c.market];
  if (c.account >= config_.max_accounts || !accounts_[c.account].exists) {
    return reject(c, R_UNKNOWN_ACCOUNT);
  }
  const bool post_only = c.flags & POST_ONLY;
  const bool market_order = c.flags & MARKET_ORDER;
  const bool by_cash = c.flags & BY_CASH;
  const bool slippage = c.flags & SLIPPAGE;
  const bool immediate = c.tif == IOC || c.tif == FOK;
  if (c.intent > SELL_NO || c.tif > FOK || c.stp > REMOVE_BOTH || (c.flags & ~KNOWN_FLAGS) ||
      (post_only && (immediate || market_order)) || (market_order && !immediate) ||
      (slippage && !market_order) ||
      (by_cash && (!market_order || c.intent == SELL_YES || c.intent == SELL_NO))) {
    return reject(c, R_INVALID_ORDER);
  }
  if (m.state != OPEN) {
    if (m.state != PRE_OPEN) return reject(c, R_MARKET_NOT_OPEN);
    if (immediate || market_order || post_only) return reject(c, R_NOT_IN_AUCTION);
  }
  int32_t limit = c.price;
  if (slippage) {  // price 0: none; aux: ticks, bps <= 10_000, a current price (0: none)
    const int64_t current = c.aux >> 48;
    if ((c.price != 0 && !price_ok(m, c.price)) || c.aux < 0 ||
        ((c.aux >> 32) & 0xFFFF) > PRICE_SCALE ||
        (current != 0 && !price_ok(m, static_cast<int32_t>(current)))) {
      return reject(c, R_INVALID_PRICE);
    }
    limit = slippage_limit(m, side_of(c.intent), c.price, c.aux);
  } else if (!price_ok(m, c.price)) {
    return reject(c, R_INVALID_PRICE);
  }
  if (by_cash) {
    if (c.quantity <= 0 || c.quantity > MAX_CASH) return reject(c, R_INVALID_QUANTITY);
  } else if (Reject r = quantity_check(m, c.quantity); r != R_NONE) {
    return reject(c, r);
  }
  if (c.tif == GTD ? c.expiry <= now_ : c.expiry != 0) return reject(c, R_INVALID_EXPIRY);
  if (c.client_order_id != 0 &&
      client_index_.find(ClientKey{c.client_order_id, c.account}) != NIL) {
    return reject(c, R_DUPLICATE_CLIENT_ORDER_ID);
  }
  const bool ledger = config_.ledger;
  const uint32_t position = ledger ? positions_.find(c.account, c.market) : NIL;
  if ((!immediate && pool_.full()) || (ledger && position == NIL && positions_.full())) {
    return reject(c, R_CAPACITY);
  }
  const int side = side_of(c.intent);
  Taker t;  // every field set below: `Taker t{}` would zero it with `rep stos`
  t.order_id = 0;
  t.client_order_id = c.client_order_id;
  t.remaining = c.quantity;
  t.expiry = c.tif == GTD ? c.expiry : 0;
  t.lot_reserve = 0;
  t.fee_reserve = 0;
  t.account = c.account;
  t.slot = NIL;
  t.position = position;
  t.limit = limit;
  t.intent = c.intent;
  t.side = static_cast<uint8_t>(side);
  t.tif = c.tif;
  t.stp = c.stp;
  t.flags = c.flags;
  if (ledger) {
    const bool buy = c.intent == BUY_YES || c.intent == BUY_NO;
    if (buy && !by_cash) t.lot_reserve = m.fees.lot_reserve(c.intent, limit, m.lot);
    if (by_cash) t.fee_reserve = m.fees.budget_fee_reserve(c.quantity);
    if (!affordable(m, t)) return reject(c, R_INSUFFICIENT_BALANCE);
  }
  if (post_only && crosses_book(m, side, c.price)) return reject(c, R_POST_ONLY_WOULD_CROSS);
  if (slippage && !fills_any(m, t)) return reject(c, R_NO_LIQUIDITY);
  if (c.tif == FOK && !fok_completes(m, t)) return reject(c, R_FOK_NOT_FILLED);

  if (ledger) {
    // The position found by the capacity check, or a new one (one index probe).
    if (t.position == NIL) t.position = positions_.create(c.account, c.market);
    // The taker counts as an order of its position while it runs, so that a
    // self-trade cancel of the account's last resting order cannot free it.
    ++positions_[t.position].orders;
    reserve(t.account, t.position, t.intent, holding(m, t));
  }
  // An order that can rest takes the next id whose slot is free (the pool is
  // not full: checked above); IOC/FOK never rest and take the next id.
  t.order_id = immediate ? next_order_id_ : pool_.next_free_id(next_order_id_);
  next_order_id_ = t.order_id + 1;
  Event& e = emit(EV_ACCEPTED);
  e.order_id = t.order_id;
  e.account = c.account;
  e.market = c.market;
  e.price = limit;
  e.quantity = e.leaves_qty = c.quantity;
  e.intent = c.intent;
  e.side = static_cast<uint8_t>(side);
  e.tif = c.tif;
  e.flags = c.flags;

  // PRE_OPEN: it rests, crossed or not, for the opening auction.
  const Stop stop = m.state == OPEN ? sweep(m, t) : STOP_NO_CROSS;
  finish_taker(m, t, stop);
  return static_cast<int64_t>(t.order_id);
}


// ------------------------------------------------------------------ matching

Engine::Stop Engine::sweep(Market& m, Taker& t) {
  const int opposite = t.side ^ 1;
  const bool by_cash = t.flags & BY_CASH;
  if (t.stp >= CANCEL_NEWEST) {
    // The venue's modes leave no owner's order within reach: the loop below never
    // meets one.
    if (const Stop stop = self_match_first(m, t); stop != STOP_NONE) return stop;
  }
  for (;;) {
    const int32_t index = m.best[opposite];
    if (index < 0) return STOP_NO_CROSS;
    const int32_t price = level_price(m, index);
    if (!takes_level(t.side, price, t.limit)) return STOP_NO_CROSS;
    Level& lv = level_at(m, opposite, index);
    const int64_t token = token_price(t.intent, price);
    bool changed = false;
    Stop stop = STOP_NONE;
    for (uint32_t slot = lv.head; slot != NIL;) {
      Order& o = pool_[slot];
      const uint32_t next = o.next;
      const int64_t lots = by_cash ? cash_lots(m, t, t.remaining, t.fee_reserve, price) : 0;
      if (by_cash ? lots == 0 : t.remaining == 0) {  // nothing left to buy here
        stop = STOP_DONE;
        break;
      }
      if (o.account == t.account) {  // self-trade prevention, whatever the intents
        if (t.stp == REJECT_AGGRESSOR) {
          stop = STOP_SELF_TRADE;
          break;
        }
        cancel_resting(m, slot, C_SELF_TRADE);
        changed = true;
        if (t.stp == CANCEL_BOTH) {
          stop = STOP_SELF_TRADE;
          break;
        }
        slot = next;
        continue;
      }
      const int64_t fill = std::min(o.leaves_qty, by_cash ? lots * m.lot : t.remaining);
      int64_t taker_fee = 0;
      int64_t maker_fee = 0;
      if (config_.ledger) settle(m, t, o, price, fill, taker_fee, maker_fee);
      t.remaining -= by_cash ? token * fill : fill;
      o.leaves_qty -= fill;
      lv.total -= fill;
      changed = true;

      Event& e = emit(EV_TRADE);
      e.order_id = t.order_id;
      e.account = t.account;
      e.intent = t.intent;
      e.side = t.side;
      e.tif = t.tif;
      e.flags = t.flags;
      e.maker_order_id = o.order_id;
      e.maker_account = o.account;
      e.maker_intent = o.intent;
      e.market = m.id;
      e.price = price;
      e.quantity = fill;
      e.leaves_qty = t.remaining;
      e.maker_leaves_qty = o.leaves_qty;
      e.fee = taker_fee;
      e.maker_fee = maker_fee;
      e.match_type = t.side == BID ? match_type(t.intent, o.intent) : match_type(o.intent, t.intent);

      if (o.leaves_qty == 0) {
        unlink(m, slot);
        retire(slot);
      }
      slot = next;
    }
    if (changed) emit_level(m, opposite, index);
    if (stop != STOP_NONE) return stop;
  }
}

bool Engine::reaches_own(const Market& m, const Taker& t) const noexcept {
  if (!crosses_book(m, t.side, t.limit)) return false;
  const int opposite = t.side ^ 1;
  // The account's own orders (its list, all markets): no book scan past other owners.
  for (uint32_t slot = accounts_[t.account].head; slot != NIL; slot = pool_[slot].acct_next) {
    const Order& o = pool_[slot];
    if (o.market == m.id && side_of(o.intent) == opposite &&
        takes_level(t.side, o.price, t.limit)) {
      return true;
    }
  }
  return false;
}

Engine::Stop Engine::self_match_first(Market& m, const Taker& t) {
  if (!reaches_own(m, t)) return STOP_NONE;
  if (t.stp != CANCEL_NEWEST) {  // CANCEL_OLDEST, REMOVE_BOTH: the owner's orders go first
    const int opposite = t.side ^ 1;
    for (uint32_t slot = accounts_[t.account].head; slot != NIL;) {
      const Order& o = pool_[slot];
      const uint32_t next = o.acct_next;
      if (o.market == m.id && side_of(o.intent) == opposite &&
          takes_level(t.side, o.price, t.limit)) {
        const int32_t index = level_index(m, o.price);
        cancel_resting(m, slot, C_SELF_TRADE);
        emit_level(m, opposite, index);
      }
      slot = next;
    }
  }
  return t.stp == CANCEL_OLDEST ? STOP_NONE : STOP_SELF_TRADE;
}

int64_t Engine::cash_lots(const Market& m, const Taker& t, int64_t budget, int64_t fee_reserve,
                          int32_t price) const noexcept {
  int64_t lots = budget / (token_price(t.intent, price) * m.lot);
  if (config_.ledger && m.fees.taker_bps > 0 && lots > 0) {
    // fee(k lots) <= ceil(x * bps * B_lot * k / D) <= fee_reserve  <=>  x * bps * B_lot * k <=
    // fee_reserve * D, with x the bound factor (2 where fees round to the cent)
    const __int128 per_lot = __int128{m.fees.bound_factor() * m.fees.taker_bps} *
                             m.fees.amount(t.intent, price, m.lot);
    if (per_lot > 0) {
      const __int128 covered = __int128{fee_reserve} * m.fees.divisor() / per_lot;
      if (covered < lots) lots = static_cast<int64_t>(covered);
    }
  }
  return lots;
}

bool Engine::fok_completes(const Market& m, const Taker& t) const noexcept {
  const int opposite = t.side ^ 1;
  const bool by_cash = t.flags & BY_CASH;
  if ((t.stp == CANCEL_NEWEST || t.stp == REMOVE_BOTH) && reaches_own(m, t)) return false;
  int64_t remaining = t.remaining;
  int64_t fee_reserve = t.fee_reserve;
  TakerFees fees = t.fees;
  for (int32_t index = m.best[opposite]; index >= 0; index = next_level(m, opposite, index)) {
    const int32_t price = level_price(m, index);
    if (!takes_level(t.side, price, t.limit)) break;
    for (uint32_t slot = level(m, opposite, index).head; slot != NIL; slot = pool_[slot].next) {
      const Order& o = pool_[slot];
      const int64_t lots = by_cash ? cash_lots(m, t, remaining, fee_reserve, price) : 0;
      if (by_cash ? lots == 0 : remaining == 0) goto done;
      if (o.account == t.account) {  // a self-trade stop never completes an order
        if (t.stp == CANCEL_RESTING || t.stp == CANCEL_OLDEST) continue;  // canceled first
        return false;
      }
      const int64_t fill = std::min(o.leaves_qty, by_cash ? lots * m.lot : remaining);
      if (by_cash) {
        remaining -= token_price(t.intent, price) * fill;
        if (config_.ledger) fee_reserve -= m.fees.taker_fee(fees, t.intent, price, fill);
      } else {
        remaining -= fill;
      }
    }
  }
done:
  // Complete: nothing left to buy at the limit price itself.
  return by_cash ? cash_lots(m, t, remaining, fee_reserve, t.limit) == 0 : remaining == 0;
}

int32_t Engine::slippage_limit(const Market& m, int side, int32_t price,
                               int64_t aux) const noexcept {
  const int64_t ticks = aux & 0xFFFF'FFFF;
  const int64_t bps = (aux >> 32) & 0xFFFF;
  const int32_t best = m.best[side ^ 1];
  const int64_t tick = m.tick;  // the bound: the market's last price on the grid
  const int64_t bound = side == BID ? m.highest / tick * tick : (m.lowest + tick - 1) / tick * tick;
  int64_t current = aux >> 48;  // none given: the best opposite price (none: the bound)
  if (current == 0) current = best >= 0 ? level_price(m, best) : bound;
  int64_t limit;
  if (ticks != 0) {  // ticks win over bps (spec §3.2)
    limit = side == BID ? current + ticks * m.tick : current - ticks * m.tick;
  } else if (bps != 0) {  // on the grid, within the tolerance
    limit = side == BID ? current * (PRICE_SCALE + bps) / PRICE_SCALE / tick * tick
                        : (current * (PRICE_SCALE - bps) + PRICE_SCALE * tick - 1) /
                              (PRICE_SCALE * tick) * tick;
  } else {
    limit = price != 0 ? price : bound;  // then the order's price, then the bound
  }
  limit = side == BID ? std::min(limit, bound) : std::max(limit, bound);
  return static_cast<int32_t>(limit);
}

bool Engine::fills_any(const Market& m, const Taker& t) const noexcept {
  if ((t.stp == CANCEL_NEWEST || t.stp == REMOVE_BOTH) && reaches_own(m, t)) return false;
  const int opposite = t.side ^ 1;
  for (int32_t index = m.best[opposite]; index >= 0; index = next_level(m, opposite, index)) {
    const int32_t price = level_price(m, index);
    if (!takes_level(t.side, price, t.limit)) return false;
    for (uint32_t slot = level(m, opposite, index).head; slot != NIL; slot = pool_[slot].next) {
      if ((t.flags & BY_CASH) && cash_lots(m, t, t.remaining, t.fee_reserve, price) == 0) {
        return false;
      }
      if (pool_[slot].account != t.account) return true;
      if (t.stp != CANCEL_RESTING && t.stp != CANCEL_OLDEST) return false;  // stops here
    }
  }
  return false;
}

void Engine::finish_taker(Market& m, Taker& t, Stop stop) {
  const bool by_cash = t.flags & BY_CASH;
  uint8_t cancel_reason = 0;
  if (stop == STOP_SELF_TRADE) {
    cancel_reason = C_SELF_TRADE;
  } else if (t.remaining > 0 && (by_cash || t.tif == IOC || t.tif == FOK)) {
    cancel_reason = C_UNFILLED;
  } else if (t.remaining > 0) {  // GTC / GTD remainder rests, keeping its reservation
    uint32_t slot = t.slot;
    if (slot == NIL) {
      slot = rest_new(t, m.id);
    } else {
      pool_[slot].leaves_qty = t.remaining;
      pool_[slot].price = t.limit;
    }
    link_back(m, slot);
    emit_level(m, t.side, level_index(m, t.limit));
    return;
  }
  if (config_.ledger) reserve(t.account, t.position, t.intent, -holding(m, t));
  if (cancel_reason) {
    Event& e = emit(EV_CANCELED);
    e.order_id = t.order_id;
    e.account = t.account;
    e.market = m.id;
    e.price = t.limit;
    e.intent = t.intent;
    e.side = t.side;
    e.tif = t.tif;
    e.flags = t.flags;
    e.quantity = t.remaining;
    e.reason = cancel_reason;
  }
  if (t.slot != NIL) {
    retire(t.slot);  // a replaced order that is done
  } else if (config_.ledger) {
    --positions_[t.position].orders;  // the new order's pin
    positions_.release_if_empty(t.position);
  }
}

// ---------------------------------------------------------- opening auction

void Engine::open_auction(Market& m) {
  // One round uncrosses the book unless a self-match cancel left it crossed
  // (each round removes at least one order, so this ends).
  while (m.best[BID] >= 0 && m.best[ASK] >= 0 && m.best[BID] >= m.best[ASK]) {
    auction_round(m, auction_index(m));
  }
}

int32_t Engine::auction_index(const Market& m) const noexcept {
  // Candidates: every price from the best ask to the best bid (elsewhere nothing
  // trades). At level index i, D = bids priced >= i, S = asks priced <= i.
  const int32_t lo = m.best[ASK];
  const int32_t hi = m.best[BID];
  int64_t demand = 0;
  for (int32_t i = hi; i >= lo; i = m.bits[BID].next_below(i)) demand += level(m, BID, i).total;
  int64_t supply = 0;
  int64_t best_volume = -1;
  int64_t best_gap = 0;
  int32_t first = lo;
  int32_t last = lo;
  int64_t first_imbalance = 0;
  int64_t last_imbalance = 0;
  for (int32_t i = lo; i <= hi; ++i) {
    if (i > lo) demand -= level(m, BID, i - 1).total;
    supply += level(m, ASK, i).total;
    const int64_t volume = std::min(demand, supply);
    const int64_t imbalance = demand - supply;
    const int64_t gap = imbalance < 0 ? -imbalance : imbalance;
    if (volume > best_volume || (volume == best_volume && gap < best_gap)) {
      best_volume = volume;
      best_gap = gap;
      first = last = i;
      first_imbalance = last_imbalance = imbalance;
    } else if (volume == best_volume && gap == best_gap) {
      last = i;  // the ties are contiguous (docs/matchcore.md)
      last_imbalance = imbalance;
    }
  }
  if (first_imbalance > 0 && last_imbalance > 0) return last;  // buyers left over: highest
  if (first_imbalance < 0 && last_imbalance < 0) return first;  // sellers left over: lowest
  return first + (last - first) / 2;  // balanced: the middle, the lower of two
}

void Engine::auction_round(Market& m, int32_t index) {
  const int32_t price = level_price(m, index);
  int32_t bid = m.best[BID];
  int32_t ask = m.best[ASK];
  bool bid_changed = false;
  bool ask_changed = false;
  while (bid >= index && ask >= 0 && ask <= index) {
    const uint32_t bid_slot = level(m, BID, bid).head;
    const uint32_t ask_slot = level(m, ASK, ask).head;
    Order& b = pool_[bid_slot];
    Order& a = pool_[ask_slot];
    // The newer order of a pair stands for the taker: it takes the taker fee, and
    // it goes on a self-match, whatever the modes.
    const bool bid_newer = b.order_id > a.order_id;
    if (b.account == a.account) {
      cancel_resting(m, bid_newer ? bid_slot : ask_slot, C_SELF_TRADE);
      (bid_newer ? bid_changed : ask_changed) = true;
    } else {
      Order& taker = bid_newer ? b : a;
      Order& maker = bid_newer ? a : b;
      const int64_t fill = std::min(b.leaves_qty, a.leaves_qty);
      int64_t taker_fee = 0;
      int64_t maker_fee = 0;
      if (config_.ledger) {
        TakerFees fees;  // each auction fill is capped alone
        taker_fee = m.fees.taker_fee(fees, taker.intent, price, fill);
        maker_fee = m.fees.fee(m.fees.maker_bps, maker.intent, price, fill);
        for (const Order* o : {&taker, &maker}) {
          const bool buys = o->intent == BUY_YES || o->intent == BUY_NO;
          settle_side(m, o->account, positions_[o->position], o->intent, price, fill,
                      o == &taker ? taker_fee : maker_fee,
                      buys ? m.fees.lot_reserve(o->intent, o->price, m.lot) : 0);
        }
        const MatchType kind = match_type(b.intent, a.intent);
        if (kind == MINT) m.collateral += PRICE_SCALE * fill;
        if (kind == MERGE) m.collateral -= PRICE_SCALE * fill;
        fees_ += taker_fee + maker_fee;
      }
      b.leaves_qty -= fill;
      a.leaves_qty -= fill;
      level_at(m, BID, bid).total -= fill;
      level_at(m, ASK, ask).total -= fill;
      bid_changed = ask_changed = true;
      Event& e = emit(EV_TRADE);
      e.order_id = taker.order_id;
      e.account = taker.account;
      e.intent = taker.intent;
      e.side = side_of(taker.intent);
      e.tif = taker.tif;
      e.flags = taker.flags;
      e.maker_order_id = maker.order_id;
      e.maker_account = maker.account;
      e.maker_intent = maker.intent;
      e.market = m.id;
      e.price = price;
      e.quantity = fill;
      e.leaves_qty = taker.leaves_qty;
      e.maker_leaves_qty = maker.leaves_qty;
      e.fee = taker_fee;
      e.maker_fee = maker_fee;
      e.match_type = match_type(b.intent, a.intent);
      for (const uint32_t slot : {bid_slot, ask_slot}) {
        if (pool_[slot].leaves_qty == 0) {
          unlink(m, slot);
          retire(slot);
        }
      }
    }
    // A level is reported when the auction leaves it, bids before asks.
    if (level(m, BID, bid).count == 0) {
      emit_level(m, BID, bid);
      bid_changed = false;
      bid = m.best[BID];
    }
    if (level(m, ASK, ask).count == 0) {
      emit_level(m, ASK, ask);
      ask_changed = false;
      ask = m.best[ASK];
    }
  }
  if (bid_changed) emit_level(m, BID, bid);
  if (ask_changed) emit_level(m, ASK, ask);
}

uint32_t Engine::rest_new(const Taker& t, uint32_t market) {
  const uint32_t slot = pool_.occupy(t.order_id);  // free: new_order chose the id for it
  Order& o = pool_[slot];
  o.client_order_id = t.client_order_id;
  o.leaves_qty = t.remaining;
  o.account = t.account;
  o.market = market;
  o.price = t.limit;
  o.intent = t.intent;
  o.tif = t.tif;
  o.stp = t.stp;
  o.flags = t.flags;
  o.position = t.position;
  if (t.client_order_id) client_index_.insert(ClientKey{t.client_order_id, t.account}, slot);
  if (t.tif == GTD) expiry_.push(pool_, slot, t.expiry);
  Account& a = accounts_[t.account];
  o.acct_prev = a.tail;
  o.acct_next = NIL;
  if (a.tail != NIL) {
    pool_[a.tail].acct_next = slot;
  } else {
    a.head = slot;
  }
  a.tail = slot;
  ++a.orders;
  return slot;  // the position already counts the order (new_order pinned it)
}

// ----------------------------------------------------------------- ledger

int64_t Engine::holding(const Market& m, const Taker& t) const noexcept {
  if (t.intent == SELL_YES || t.intent == SELL_NO) return t.remaining;
  return (t.flags & BY_CASH) ? t.remaining + t.fee_reserve : t.remaining / m.lot * t.lot_reserve;
}

bool Engine::affordable(const Market& m, const Taker& t) const noexcept {
  if (t.intent == SELL_YES || t.intent == SELL_NO) {
    if (t.position == NIL) return false;
    const Position& p = positions_[t.position];
    return (t.intent == SELL_YES ? p.yes_free : p.no_free) >= t.remaining;
  }
  return accounts_[t.account].cash_free >= holding(m, t);
}

void Engine::reserve(uint32_t account, uint32_t position, uint8_t intent, int64_t amount) {
  if (intent == SELL_YES || intent == SELL_NO) {
    Position& p = positions_[position];
    free_shares(p, intent) -= amount;
    reserved_shares(p, intent) += amount;
  } else {
    Account& a = accounts_[account];
    a.cash_free -= amount;
    a.cash_reserved += amount;
  }
}

void Engine::release_order(const Market& m, const Order& o) {
  const bool sell = o.intent == SELL_YES || o.intent == SELL_NO;
  reserve(o.account, o.position, o.intent,
          sell ? -o.leaves_qty : -buy_reserve(m, o.intent, o.price, o.leaves_qty));
}

void Engine::settle(Market& m, Taker& t, const Order& maker, int32_t price, int64_t quantity,
                    int64_t& taker_fee, int64_t& maker_fee) {
  taker_fee = m.fees.taker_fee(t.fees, t.intent, price, quantity);
  maker_fee = m.fees.fee(m.fees.maker_bps, maker.intent, price, quantity);
  Position& taker_position = positions_[t.position];
  if (t.flags & BY_CASH) {  // pays from its budget and fee reserve, both reserved cash
    accounts_[t.account].cash_reserved -= token_price(t.intent, price) * quantity + taker_fee;
    t.fee_reserve -= taker_fee;
    (t.intent == BUY_YES ? taker_position.yes_free : taker_position.no_free) += quantity;
  } else {
    settle_side(m, t.account, taker_position, t.intent, price, quantity, taker_fee, t.lot_reserve);
  }
  const bool maker_buys = maker.intent == BUY_YES || maker.intent == BUY_NO;
  settle_side(m, maker.account, positions_[maker.position], maker.intent,
              price, quantity, maker_fee,
              maker_buys ? m.fees.lot_reserve(maker.intent, maker.price, m.lot) : 0);
  const uint8_t bid = t.side == BID ? t.intent : maker.intent;
  const uint8_t ask = t.side == BID ? maker.intent : t.intent;
  const MatchType kind = match_type(bid, ask);
  if (kind == MINT) m.collateral += PRICE_SCALE * quantity;
  if (kind == MERGE) m.collateral -= PRICE_SCALE * quantity;
  fees_ += taker_fee + maker_fee;
}

void Engine::settle_side(const Market& m, uint32_t account, Position& p, uint8_t intent,
                         int32_t price, int64_t quantity, int64_t fee, int64_t lot_reserve) {
  Account& a = accounts_[account];
  switch (intent) {
    case BUY_YES:
    case BUY_NO: {  // pays price and fee from its lots' reservation; the rest is freed
      const int64_t released = quantity / m.lot * lot_reserve;
      a.cash_reserved -= released;
      a.cash_free += released - token_price(intent, price) * quantity - fee;
      (intent == BUY_YES ? p.yes_free : p.no_free) += quantity;
      break;
    }
    default:  // a sell gives up reserved shares, takes its proceeds less its fee
      reserved_shares(p, intent) -= quantity;
      a.cash_free += token_price(intent, price) * quantity - fee;
      break;
  }
}

// ------------------------------------------------------------ book upkeep



void Engine::retire(uint32_t slot) noexcept {
  Order& o = pool_[slot];
  if (o.client_order_id) client_index_.erase(ClientKey{o.client_order_id, o.account});
  if (o.tif == GTD) expiry_.leave(pool_, o.order_id);
  Account& a = accounts_[o.account];
  if (o.acct_prev != NIL) {
    pool_[o.acct_prev].acct_next = o.acct_next;
  } else {
    a.head = o.acct_next;
  }
  if (o.acct_next != NIL) {
    pool_[o.acct_next].acct_prev = o.acct_prev;
  } else {
    a.tail = o.acct_prev;
  }
  --a.orders;
  if (config_.ledger) {
    --positions_[o.position].orders;
    positions_.release_if_empty(o.position);
  }
  pool_.release(slot);
}

void Engine::cancel_resting(Market& m, uint32_t slot, uint8_t reason) {
  emit_canceled(pool_[slot], reason);
  if (config_.ledger) release_order(m, pool_[slot]);
  unlink(m, slot);
  retire(slot);
}

void Engine::cancel_levels(Market& m, uint8_t reason, int32_t keep_tick) {
  for (int side = BID; side <= ASK; ++side) {
    for (int32_t index = m.best[side]; index >= 0;) {
      const int32_t next = next_level(m, side, index);
      if (keep_tick == 0 || level_price(m, index) % keep_tick != 0) {
        Level& lv = level_at(m, side, index);
        for (uint32_t slot = lv.head; slot != NIL;) {
          const uint32_t after = pool_[slot].next;
          cancel_resting(m, slot, reason);
          slot = after;
        }
        emit_level(m, side, index);
      }
      index = next;
    }
  }
}

// ------------------------------------------------- cancel, replace, admin

int64_t Engine::cancel(const Command& c, uint32_t slot) {
  const Order& o = pool_[slot];
  if (o.account != c.account) return reject(c, R_NOT_OWNER);
  Market& m = markets_[o.market];
  if (m.state == HALTED) return reject(c, R_MARKET_NOT_OPEN);
  const int side = side_of(o.intent);
  const int32_t index = level_index(m, o.price);
  cancel_resting(m, slot, C_USER);
  emit_level(m, side, index);
  return 0;
}

int64_t Engine::cancel_all(const Command& c) {
  if (c.account >= config_.max_accounts || !accounts_[c.account].exists) {
    return reject(c, R_UNKNOWN_ACCOUNT);
  }
  if (c.market != ALL_MARKETS &&
      (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE)) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  if (c.market != ALL_MARKETS && markets_[c.market].state == HALTED) {
    return reject(c, R_MARKET_NOT_OPEN);
  }
  int64_t canceled = 0;
  for (uint32_t slot = accounts_[c.account].head; slot != NIL;) {
    const Order& o = pool_[slot];
    const uint32_t next = o.acct_next;
    Market& m = markets_[o.market];
    if ((c.market == ALL_MARKETS || o.market == c.market) && m.state != HALTED) {
      const int side = side_of(o.intent);
      const int32_t index = level_index(m, o.price);
      cancel_resting(m, slot, C_USER);
      emit_level(m, side, index);
      ++canceled;
    }
    slot = next;
  }
  return canceled;
}

int64_t Engine::replace(const Command& c) {
  const uint32_t slot = pool_.find(c.order_id);
  if (slot == NIL) return reject(c, R_UNKNOWN_ORDER);
  Order& o = pool_[slot];
  if (o.account != c.account) return reject(c, R_NOT_OWNER);
  Market& m = markets_[o.market];
  if (m.state != OPEN && m.state != PRE_OPEN) return reject(c, R_MARKET_NOT_OPEN);
  const int32_t price = c.price != 0 ? c.price : o.price;
  if (c.price != 0 && !price_ok(m, price)) return reject(c, R_INVALID_PRICE);
  const int64_t quantity = c.quantity != 0 ? c.quantity : o.leaves_qty;
  if (c.quantity != 0) {
    if (Reject r = quantity_check(m, quantity); r != R_NONE) return reject(c, r);
  }
  const int side = side_of(o.intent);
  const bool buy = o.intent == BUY_YES || o.intent == BUY_NO;
  const uint32_t position = o.position;
  int64_t more = 0;  // ledger: what the order needs now minus what it holds
  if (config_.ledger) {
    more = buy ? buy_reserve(m, o.intent, price, quantity) -
                     buy_reserve(m, o.intent, o.price, o.leaves_qty)
               : quantity - o.leaves_qty;
    const int64_t available =
        buy ? accounts_[o.account].cash_free : free_shares(positions_[position], o.intent);
    if (more > available) return reject(c, R_INSUFFICIENT_BALANCE);
  }
  if ((o.flags & POST_ONLY) && crosses_book(m, side, price)) {
    return reject(c, R_POST_ONLY_WOULD_CROSS);
  }
  if (config_.ledger) reserve(o.account, position, o.intent, more);

  Event& e = emit(EV_REPLACED);
  e.order_id = o.order_id;
  e.account = o.account;
  e.market = m.id;
  e.price = price;
  e.quantity = e.leaves_qty = quantity;
  e.intent = o.intent;
  e.side = static_cast<uint8_t>(side);
  e.tif = o.tif;
  e.flags = o.flags;

  const int32_t old_index = level_index(m, o.price);
  if (price == o.price && quantity <= o.leaves_qty) {  // keeps time priority
    if (quantity < o.leaves_qty) {
      level_at(m, side, old_index).total -= o.leaves_qty - quantity;
      o.leaves_qty = quantity;
      emit_level(m, side, old_index);
    }
    return 0;
  }
  unlink(m, slot);
  const bool moved = price != o.price;
  o.price = price;
  o.leaves_qty = quantity;
  if (m.state == OPEN && crosses_book(m, side, price)) {
    emit_level(m, side, old_index);
    Taker t;  // every field set below
    t.fee_reserve = 0;
    t.order_id = o.order_id;
    t.client_order_id = o.client_order_id;
    t.remaining = quantity;
    t.expiry = expiry_of(o);
    t.lot_reserve = config_.ledger && buy ? m.fees.lot_reserve(o.intent, price, m.lot) : 0;
    t.account = o.account;
    t.slot = slot;
    t.position = position;
    t.limit = price;
    t.intent = o.intent;
    t.side = static_cast<uint8_t>(side);
    t.tif = o.tif;
    t.stp = o.stp;
    t.flags = o.flags;
    Stop stop = sweep(m, t);
    finish_taker(m, t, stop);
  } else {
    link_back(m, slot);
    if (moved) emit_level(m, side, old_index);
    emit_level(m, side, level_index(m, price));
  }
  return 0;
}

int64_t Engine::create_market(const Command& c) {
  if (c.market >= config_.max_markets) return reject(c, R_CAPACITY);
  Market& m = markets_[c.market];
  if (m.state != STATE_NONE) return reject(c, R_MARKET_EXISTS);
  if (!valid_tick(c.price)) return reject(c, R_INVALID_TICK);
  const int64_t min_size = c.quantity;
  const int64_t lot = c.aux;
  if (lot <= 0 || min_size <= 0 || min_size > MAX_QUANTITY || min_size % lot != 0) {
    return reject(c, R_INVALID_QUANTITY);
  }
  if (c.taker_fee_bps < 0 || c.taker_fee_bps > FEE_BPS_LIMIT ||
      c.maker_fee_bps < -FEE_BPS_LIMIT || c.maker_fee_bps > FEE_BPS_LIMIT ||
      c.maker_fee_bps < -c.taker_fee_bps || c.fee_base > FEE_PQ_CENTS) {
    return reject(c, R_INVALID_FEE);
  }
  const uint64_t bounds = static_cast<uint64_t>(c.expiry);
  const int64_t min_price = static_cast<int64_t>(bounds & 0xFFFF'FFFFu);
  const int64_t max_price = static_cast<int64_t>(bounds >> 32);
  if (!valid_bounds(min_price, max_price)) return reject(c, R_INVALID_PRICE);
  const uint32_t needed = 2 * static_cast<uint32_t>(levels_per_side(c.price));
  if (uint64_t{levels_in_use_} + needed > config_.max_levels) return reject(c, R_CAPACITY);
  m.level_base = allocate_levels(needed);
  m.levels_per_side = needed / 2;
  m.tick = c.price;
  m.min_size = min_size;
  m.lot = lot;
  m.fees = FeeSchedule{c.taker_fee_bps, c.maker_fee_bps, c.fee_base};
  m.outcome = OUTCOME_NONE;
  m.collateral = 0;
  m.min_price = static_cast<int32_t>(min_price);
  m.max_price = static_cast<int32_t>(max_price);
  set_price_range(m);
  m.state = PRE_OPEN;
  emit_market(m, m.tick);
  return 0;
}

int64_t Engine::set_market_state(const Command& c) {
  if (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  Market& m = markets_[c.market];
  if (!valid_transition(m.state, c.arg)) return reject(c, R_INVALID_STATE_TRANSITION);
  const uint8_t before = m.state;
  m.state = c.arg;
  emit_market(m, m.tick);
  if (m.state == CLOSED) cancel_levels(m, C_MARKET_CLOSED, 0);
  if (m.state == EXPIRED) cancel_levels(m, C_EXPIRED, 0);
  if (before == PRE_OPEN && m.state == OPEN) open_auction(m);
  return 0;
}

int64_t Engine::set_tick(const Command& c) {
  if (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  Market& m = markets_[c.market];
  if (!valid_tick(c.price)) return reject(c, R_INVALID_TICK);
  const uint64_t after = uint64_t{levels_in_use_} - 2 * m.levels_per_side +
                         2 * static_cast<uint64_t>(levels_per_side(c.price));
  if (after > config_.max_levels) return reject(c, R_CAPACITY);
  emit_market(m, c.price);
  // Off-grid orders are canceled while the book is still indexed by the old tick; a
  // tick that divides the old one (finer) leaves none, others (coarser, or 25 <-> 10) may.
  if (m.tick % c.price != 0) cancel_levels(m, C_TICK_CHANGE, c.price);
  if (c.price != m.tick) reindex(m, c.price);
  return 0;
}

int64_t Engine::add_account(const Command& c) {
  if (c.account >= config_.max_accounts) return reject(c, R_CAPACITY);
  Account& a = accounts_[c.account];
  if (a.exists) return reject(c, R_ACCOUNT_EXISTS);
  a.exists = 1;
  Event& e = emit(EV_ACCOUNT);
  e.account = c.account;
  return 0;
}

int64_t Engine::deposit(const Command& c) {
  if (!config_.ledger) return reject(c, R_LEDGER_DISABLED);
  if (c.account >= config_.max_accounts || !accounts_[c.account].exists) {
    return reject(c, R_UNKNOWN_ACCOUNT);
  }
  if (c.quantity <= 0 || c.quantity > MAX_CASH) return reject(c, R_INVALID_QUANTITY);
  if (net_deposits_ > MAX_TOTAL_CASH - c.quantity) return reject(c, R_CAPACITY);
  Account& a = accounts_[c.account];
  a.cash_free += c.quantity;
  net_deposits_ += c.quantity;
  Event& e = emit(EV_BALANCE);
  e.account = c.account;
  e.quantity = c.quantity;
  e.leaves_qty = a.cash_free;
  e.maker_leaves_qty = a.cash_reserved;
  return 0;
}

int64_t Engine::withdraw(const Command& c) {
  if (!config_.ledger) return reject(c, R_LEDGER_DISABLED);
  if (c.account >= config_.max_accounts || !accounts_[c.account].exists) {
    return reject(c, R_UNKNOWN_ACCOUNT);
  }
  if (c.quantity <= 0 || c.quantity > MAX_CASH) return reject(c, R_INVALID_QUANTITY);
  Account& a = accounts_[c.account];
  if (c.quantity > a.cash_free) return reject(c, R_INSUFFICIENT_BALANCE);
  a.cash_free -= c.quantity;
  net_deposits_ -= c.quantity;
  Event& e = emit(EV_BALANCE);
  e.account = c.account;
  e.quantity = -c.quantity;
  e.leaves_qty = a.cash_free;
  e.maker_leaves_qty = a.cash_reserved;
  return 0;
}

int64_t Engine::split_or_merge(const Command& c) {
  if (!config_.ledger) return reject(c, R_LEDGER_DISABLED);
  if (c.account >= config_.max_accounts || !accounts_[c.account].exists) {
    return reject(c, R_UNKNOWN_ACCOUNT);
  }
  if (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  Market& m = markets_[c.market];
  const bool split = c.type == CMD_SPLIT;
  const uint8_t state = m.state;
  if (!(holds_orders(state) || (!split && (state == CLOSED || state == EXPIRED)))) {
    return reject(c, R_MARKET_NOT_OPEN);
  }
  const int64_t pairs = c.quantity;
  if (pairs <= 0 || pairs > MAX_QUANTITY || pairs % m.lot != 0) {
    return reject(c, R_INVALID_QUANTITY);
  }
  Account& a = accounts_[c.account];
  uint32_t position = positions_.find(c.account, c.market);
  const int64_t cash = PRICE_SCALE * pairs;
  if (split) {
    if (position == NIL && positions_.full()) return reject(c, R_CAPACITY);
    if (a.cash_free < cash) return reject(c, R_INSUFFICIENT_BALANCE);
    if (position == NIL) position = positions_.create(c.account, c.market);
    Position& p = positions_[position];
    a.cash_free -= cash;
    p.yes_free += pairs;
    p.no_free += pairs;
    m.collateral += cash;
  } else {
    if (position == NIL || positions_[position].yes_free < pairs ||
        positions_[position].no_free < pairs) {
      return reject(c, R_INSUFFICIENT_BALANCE);
    }
    Position& p = positions_[position];
    a.cash_free += cash;
    p.yes_free -= pairs;
    p.no_free -= pairs;
    m.collateral -= cash;
  }
  Event& e = emit(EV_POSITION);
  e.account = c.account;
  e.market = c.market;
  e.quantity = pairs;
  e.leaves_qty = positions_[position].yes_free;
  e.maker_leaves_qty = positions_[position].no_free;
  positions_.release_if_empty(position);
  return 0;
}

int64_t Engine::resolve(const Command& c) {
  if (c.market >= config_.max_markets || markets_[c.market].state == STATE_NONE) {
    return reject(c, R_UNKNOWN_MARKET);
  }
  if (c.arg != OUTCOME_YES && c.arg != OUTCOME_NO && c.arg != OUTCOME_HALF) {
    return reject(c, R_INVALID_OUTCOME);
  }
  Market& m = markets_[c.market];
  if (m.state == RESOLVED) return reject(c, R_INVALID_STATE_TRANSITION);
  m.state = RESOLVED;
  m.outcome = c.arg;
  emit_market(m, m.tick);
  cancel_levels(m, C_MARKET_CLOSED, 0);
  if (!config_.ledger) return 0;
  std::vector<uint32_t> holders;  // resolution is rare: a scan of the table is fine
  for (uint32_t slot : positions_.live_slots()) {
    if (positions_[slot].market == m.id) holders.push_back(slot);
  }
  std::sort(holders.begin(), holders.end(), [this](uint32_t a, uint32_t b) {
    return positions_[a].account < positions_[b].account;
  });
  const int64_t yes_pays = m.outcome == OUTCOME_YES ? PRICE_SCALE
                           : m.outcome == OUTCOME_HALF ? PRICE_SCALE / 2 : 0;
  const int64_t no_pays = m.outcome == OUTCOME_NO ? PRICE_SCALE
                          : m.outcome == OUTCOME_HALF ? PRICE_SCALE / 2 : 0;
  for (uint32_t slot : holders) {
    Position& p = positions_[slot];
    const int64_t yes = p.yes_free + p.yes_reserved;  // nothing is reserved after the cancels
    const int64_t no = p.no_free + p.no_reserved;
    const int64_t paid = yes * yes_pays + no * no_pays;
    accounts_[p.account].cash_free += paid;
    m.collateral -= paid;
    p.yes_free = p.yes_reserved = p.no_free = p.no_reserved = 0;
    if (yes != 0 || no != 0) {
      Event& e = emit(EV_SETTLEMENT);
      e.account = p.account;
      e.market = m.id;
      e.quantity = paid;
      e.leaves_qty = yes;
      e.maker_leaves_qty = no;
      e.reason = m.outcome;
    }
    positions_.release_if_empty(slot);
  }
  return 0;
}

// ------------------------------------------------------------ level arena

uint32_t Engine::allocate_levels(uint32_t count) {
  if (uint64_t{levels_top_} + count > config_.max_levels) compact_levels();
  const uint32_t base = levels_top_;
  std::fill(levels_.begin() + base, levels_.begin() + base + count, Level{NIL, NIL, 0, 0, 0});
  levels_top_ += count;
  levels_in_use_ += count;
  return base;
}

void Engine::compact_levels() {
  std::vector<Market*> live;
  for (Market& m : markets_)
    if (m.levels_per_side != 0) live.push_back(&m);
  std::sort(live.begin(), live.end(),
            [](const Market* a, const Market* b) { return a->level_base < b->level_base; });
  uint32_t cursor = 0;
  for (Market* m : live) {
    const uint32_t size = 2 * m->levels_per_side;
    if (m->level_base != cursor) {
      std::copy(levels_.begin() + m->level_base, levels_.begin() + m->level_base + size,
                levels_.begin() + cursor);
      m->level_base = cursor;
    }
    cursor += size;
  }
  levels_top_ = cursor;
}

void Engine::reindex(Market& m, int32_t tick) {
  struct Saved {
    int side;
    int32_t price;
    Level level;
  };
  std::vector<Saved> saved;
  for (int side = BID; side <= ASK; ++side) {
    for (int32_t i = m.best[side]; i >= 0; i = next_level(m, side, i)) {
      saved.push_back(Saved{side, level_price(m, i), level(m, side, i)});
    }
  }
  levels_in_use_ -= 2 * m.levels_per_side;
  m.levels_per_side = 0;  // frees the block for compaction
  const uint32_t per_side = static_cast<uint32_t>(levels_per_side(tick));
  m.level_base = allocate_levels(2 * per_side);
  m.levels_per_side = per_side;
  m.tick = tick;
  set_price_range(m);
  m.best[BID] = m.best[ASK] = -1;
  m.bits[BID].clear_all();
  m.bits[ASK].clear_all();
  for (const Saved& s : saved) {
    const int32_t index = level_index(m, s.price);
    level_at(m, s.side, index) = s.level;
    m.bits[s.side].set(static_cast<uint32_t>(index));
    int32_t& best = m.best[s.side];
    if (best < 0 || (s.side == BID ? index > best : index < best)) best = index;
  }
}

// ----------------------------------------------------------------- events

int64_t Engine::reject(const Command& c, Reject reason) {
  Event& e = emit(EV_REJECTED);
  e.reason = reason;
  e.account = c.account;
  e.market = c.market;
  if (c.type == CMD_CANCEL || c.type == CMD_REPLACE) e.order_id = c.order_id;
  return -static_cast<int64_t>(reason);
}


void Engine::emit_canceled(const Order& o, uint8_t reason) {
  Event& e = emit(EV_CANCELED);
  e.order_id = o.order_id;
  e.account = o.account;
  e.market = o.market;
  e.price = o.price;
  e.intent = o.intent;
  e.side = side_of(o.intent);
  e.tif = o.tif;
  e.flags = o.flags;
  e.quantity = o.leaves_qty;
  e.reason = reason;
}

void Engine::emit_market(const Market& m, int32_t tick) {
  Event& e = emit(EV_MARKET);
  e.market = m.id;
  e.price = tick;
  e.fee = m.fees.taker_bps;
  e.maker_fee = m.fees.maker_bps;
  e.count = m.fees.base;
  e.reason = m.outcome;
  e.quantity = m.min_size;
  e.leaves_qty = m.lot;
  e.state = m.state;
}

// ---------------------------------------------------------------- queries

const Market* Engine::market(uint32_t id) const noexcept {
  if (id >= config_.max_markets || markets_[id].state == STATE_NONE) return nullptr;
  return &markets_[id];
}

const Account* Engine::account(uint32_t id) const noexcept {
  if (id >= config_.max_accounts || !accounts_[id].exists) return nullptr;
  return &accounts_[id];
}

size_t Engine::orders_of(uint32_t account, const Order** out, size_t capacity) const noexcept {
  if (account >= config_.max_accounts) return 0;
  size_t n = 0;
  for (uint32_t slot = accounts_[account].head; slot != NIL && n < capacity;
       slot = pool_[slot].acct_next) {
    out[n++] = &pool_[slot];
  }
  return n;
}

const Position* Engine::position(uint32_t account, uint32_t market) const noexcept {
  if (!config_.ledger) return nullptr;
  const uint32_t slot = positions_.find(account, market);
  return slot == NIL ? nullptr : &positions_[slot];
}

const Order* Engine::find_order(uint64_t order_id) const noexcept {
  uint32_t slot = pool_.find(order_id);
  return slot == NIL ? nullptr : &pool_[slot];
}

size_t Engine::book_side(const Market& m, int side, size_t depth,
                         BookLevel* out) const noexcept {
  size_t n = 0;
  for (int32_t i = m.best[side]; i >= 0 && n < depth; i = next_level(m, side, i), ++n) {
    const Level& lv = level(m, side, i);
    out[n] = BookLevel{level_price(m, i), lv.count, lv.total};
  }
  return n;
}

MemoryStats Engine::memory() const noexcept {
  return MemoryStats{sizeof(Order),
                     size_t{pool_.capacity()} * sizeof(Order),
                     pool_.map_bytes(),
                     client_index_.bytes(),
                     expiry_.bytes(),
                     levels_.size() * sizeof(Level),
                     markets_.size() * sizeof(Market),
                     accounts_.size() * sizeof(Account),
                     positions_.bytes()};
}

}  // namespace matchcore
