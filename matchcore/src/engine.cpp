// The command path of the engine: validation, matching, book maintenance.
// The exact order of checks and events is docs/matchcore.md §4.
#include "matchcore/engine.hpp"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace matchcore {

namespace {

bool valid_transition(uint8_t from, uint8_t to) noexcept {
  switch (from) {
    case PRE_OPEN:
      return to == OPEN || to == CLOSED;
    case OPEN:
      return to == HALTED || to == CLOSED;
    case HALTED:
      return to == OPEN || to == CLOSED;
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
  } bounds[] = {{"max_orders", config.max_orders, MAX_ORDERS},
                {"max_markets", config.max_markets, MAX_MARKETS},
                {"max_accounts", config.max_accounts, MAX_ACCOUNTS},
                {"max_levels", config.max_levels, MAX_LEVELS}};
  for (const auto& b : bounds) {
    // max_levels 0 asks for the default.
    if ((b.value < 1 && b.limit != MAX_LEVELS) || b.value > b.limit) {
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
  pool_.init(config_.max_orders);
  order_index_.init(config_.max_orders);
  client_index_.init(config_.max_orders);
  expiry_.init(config_.max_orders);
  accounts_.assign(config_.max_accounts, Account{NIL, NIL, 0, 0});
  Market blank{};
  blank.best[BID] = blank.best[ASK] = -1;
  blank.bits[BID].clear_all();
  blank.bits[ASK].clear_all();
  markets_.assign(config_.max_markets, blank);
  for (uint32_t i = 0; i < config_.max_markets; ++i) markets_[i].id = i;
  levels_.assign(config_.max_levels, Level{NIL, NIL, 0, 0, 0});
  levels_top_ = levels_in_use_ = 0;
  events_.reserve(1 << 16);
  now_ = 0;
  next_order_id_ = 1;
  return true;
}

void Engine::process(const Command* commands, size_t count) {
  for (size_t i = 0; i < count; ++i) execute(commands[i]);
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
  for (size_t i = 0; i < count; ++i) {
    const uint64_t before = ticks();
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
      uint32_t slot = order_index_.find(c.order_id);
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
    default:
      return reject(c, R_INVALID_COMMAND);
  }
}

uint32_t Engine::expire_due() {
  uint32_t expired = 0;
  while (!expiry_.empty() && expiry_.top().expiry <= now_) {
    const uint32_t slot = expiry_.top().slot;
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
  const bool immediate = c.tif == IOC || c.tif == FOK;
  if (c.intent > SELL_NO || c.tif > FOK || c.stp > CANCEL_BOTH || (c.flags & ~KNOWN_FLAGS) ||
      (post_only && (immediate || market_order)) || (market_order && !immediate) ||
      (by_cash && (!market_order || c.intent == SELL_YES || c.intent == SELL_NO))) {
    return reject(c, R_INVALID_ORDER);
  }
  if (m.state != OPEN) return reject(c, R_MARKET_NOT_OPEN);
  if (!price_ok(m, c.price)) return reject(c, R_INVALID_PRICE);
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
  if (!immediate && pool_.full()) return reject(c, R_CAPACITY);
  // (risk) the ledger's pre-trade check will reserve cash or shares here.
  const int side = side_of(c.intent);
  if (post_only && crosses_book(m, side, c.price)) return reject(c, R_POST_ONLY_WOULD_CROSS);

  Taker t{0,        c.client_order_id,
          c.quantity, c.tif == GTD ? c.expiry : 0,
          c.account, NIL,
          c.price,  c.intent,
          static_cast<uint8_t>(side), c.tif,
          c.stp,    c.flags};
  if (c.tif == FOK && !fok_completes(m, t)) return reject(c, R_FOK_NOT_FILLED);

  t.order_id = next_order_id_++;
  Event& e = emit(EV_ACCEPTED);
  e.order_id = t.order_id;
  e.account = c.account;
  e.market = c.market;
  e.price = c.price;
  e.quantity = e.leaves_qty = c.quantity;
  e.intent = c.intent;
  e.side = static_cast<uint8_t>(side);
  e.tif = c.tif;
  e.flags = c.flags;

  Stop stop = sweep(m, t);
  finish_taker(m, t, stop);
  return static_cast<int64_t>(t.order_id);
}


// ------------------------------------------------------------------ matching

Engine::Stop Engine::sweep(Market& m, Taker& t) {
  const int opposite = t.side ^ 1;
  const bool by_cash = t.flags & BY_CASH;
  for (;;) {
    const int32_t index = m.best[opposite];
    if (index < 0) return STOP_NO_CROSS;
    const int32_t price = level_price(m, index);
    if (!takes_level(t.side, price, t.limit)) return STOP_NO_CROSS;
    Level& lv = level_at(m, opposite, index);
    const int64_t token = token_price(t.intent, price);
    const int64_t lot_cost = token * m.lot;
    bool changed = false;
    Stop stop = STOP_NONE;
    for (uint32_t slot = lv.head; slot != NIL;) {
      Order& o = pool_[slot];
      const uint32_t next = o.next;
      if (by_cash ? t.remaining < lot_cost : t.remaining == 0) {
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
      int64_t fill;
      if (by_cash) {
        fill = std::min(o.leaves_qty, t.remaining / lot_cost * m.lot);
        t.remaining -= token * fill;
      } else {
        fill = std::min(o.leaves_qty, t.remaining);
        t.remaining -= fill;
      }
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

bool Engine::fok_completes(const Market& m, const Taker& t) const noexcept {
  const int opposite = t.side ^ 1;
  const bool by_cash = t.flags & BY_CASH;
  int64_t remaining = t.remaining;
  for (int32_t index = m.best[opposite]; index >= 0; index = next_level(m, opposite, index)) {
    const int32_t price = level_price(m, index);
    if (!takes_level(t.side, price, t.limit)) break;
    const int64_t token = token_price(t.intent, price);
    const int64_t lot_cost = token * m.lot;
    for (uint32_t slot = level(m, opposite, index).head; slot != NIL; slot = pool_[slot].next) {
      const Order& o = pool_[slot];
      if (by_cash ? remaining < lot_cost : remaining == 0) return complete(m, t, remaining);
      if (o.account == t.account) {  // a self-trade stop never completes an order
        if (t.stp == CANCEL_RESTING) continue;
        return false;
      }
      if (by_cash) {
        remaining -= token * std::min(o.leaves_qty, remaining / lot_cost * m.lot);
      } else {
        remaining -= std::min(o.leaves_qty, remaining);
      }
    }
  }
  return complete(m, t, remaining);
}

bool Engine::complete(const Market& m, const Taker& t, int64_t remaining) const noexcept {
  if (t.flags & BY_CASH) return remaining < token_price(t.intent, t.limit) * m.lot;
  return remaining == 0;
}

void Engine::finish_taker(Market& m, Taker& t, Stop stop) {
  const bool by_cash = t.flags & BY_CASH;
  uint8_t cancel_reason = 0;
  if (stop == STOP_SELF_TRADE) {
    cancel_reason = C_SELF_TRADE;
  } else if (t.remaining > 0 && (by_cash || t.tif == IOC || t.tif == FOK)) {
    cancel_reason = C_UNFILLED;
  } else if (t.remaining > 0) {  // GTC / GTD remainder rests
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
  if (t.slot != NIL) retire(t.slot);  // a replaced order that is done
}

uint32_t Engine::rest_new(const Taker& t, uint32_t market) {
  uint32_t slot = pool_.allocate();  // cannot fail: checked before acceptance
  Order& o = pool_[slot];
  o.order_id = t.order_id;
  o.client_order_id = t.client_order_id;
  o.leaves_qty = t.remaining;
  o.account = t.account;
  o.market = market;
  o.price = t.limit;
  o.intent = t.intent;
  o.tif = t.tif;
  o.stp = t.stp;
  o.flags = t.flags;
  o.heap_pos = NIL;
  order_index_.insert(t.order_id, slot);
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
  return slot;
}

// ------------------------------------------------------------ book upkeep



void Engine::retire(uint32_t slot) noexcept {
  Order& o = pool_[slot];
  order_index_.erase(o.order_id);
  if (o.client_order_id) client_index_.erase(ClientKey{o.client_order_id, o.account});
  if (o.heap_pos != NIL) expiry_.remove(pool_, slot);
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
  pool_.release(slot);
}

void Engine::cancel_resting(Market& m, uint32_t slot, uint8_t reason) {
  emit_canceled(pool_[slot], reason);
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
  int64_t canceled = 0;
  for (uint32_t slot = accounts_[c.account].head; slot != NIL;) {
    const Order& o = pool_[slot];
    const uint32_t next = o.acct_next;
    if (c.market == ALL_MARKETS || o.market == c.market) {
      Market& m = markets_[o.market];
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
  const uint32_t slot = order_index_.find(c.order_id);
  if (slot == NIL) return reject(c, R_UNKNOWN_ORDER);
  Order& o = pool_[slot];
  if (o.account != c.account) return reject(c, R_NOT_OWNER);
  Market& m = markets_[o.market];
  if (m.state != OPEN) return reject(c, R_MARKET_NOT_OPEN);
  const int32_t price = c.price != 0 ? c.price : o.price;
  if (c.price != 0 && !price_ok(m, price)) return reject(c, R_INVALID_PRICE);
  const int64_t quantity = c.quantity != 0 ? c.quantity : o.leaves_qty;
  if (c.quantity != 0) {
    if (Reject r = quantity_check(m, quantity); r != R_NONE) return reject(c, r);
  }
  // (risk) the ledger will re-reserve the difference here.
  const int side = side_of(o.intent);
  if ((o.flags & POST_ONLY) && crosses_book(m, side, price)) {
    return reject(c, R_POST_ONLY_WOULD_CROSS);
  }

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
  if (crosses_book(m, side, price)) {
    emit_level(m, side, old_index);
    Taker t{o.order_id, o.client_order_id, quantity,     expiry_of(o),
            o.account,  slot,              price,        o.intent,
            static_cast<uint8_t>(side),    o.tif,        o.stp,
            o.flags};
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
  if (c.taker_fee_bps != 0 || c.maker_fee_bps != 0 || c.fee_base != 0) {
    return reject(c, R_INVALID_ORDER);
  }
  const uint32_t needed = 2 * static_cast<uint32_t>(levels_per_side(c.price));
  if (uint64_t{levels_in_use_} + needed > config_.max_levels) return reject(c, R_CAPACITY);
  m.level_base = allocate_levels(needed);
  m.levels_per_side = needed / 2;
  m.tick = c.price;
  m.min_size = min_size;
  m.lot = lot;
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
  m.state = c.arg;
  emit_market(m, m.tick);
  if (m.state == CLOSED) cancel_levels(m, C_MARKET_CLOSED, 0);
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
  // Off-grid orders are canceled while the book is still indexed by the old tick.
  if (c.price > m.tick) cancel_levels(m, C_TICK_CHANGE, c.price);
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
  e.quantity = m.min_size;
  e.leaves_qty = m.lot;
  e.state = m.state;
}

// ---------------------------------------------------------------- queries

const Market* Engine::market(uint32_t id) const noexcept {
  if (id >= config_.max_markets || markets_[id].state == STATE_NONE) return nullptr;
  return &markets_[id];
}

const Order* Engine::find_order(uint64_t order_id) const noexcept {
  uint32_t slot = order_index_.find(order_id);
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
                     order_index_.bytes(),
                     client_index_.bytes(),
                     expiry_.bytes(),
                     levels_.size() * sizeof(Level),
                     markets_.size() * sizeof(Market),
                     accounts_.size() * sizeof(Account)};
}

}  // namespace matchcore
