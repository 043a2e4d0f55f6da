// Canonical state (snapshot) encoding, decoding and the invariant checker.
//
// The canonical state is the engine's logical state in a fixed order
// (docs/matchcore.md §6): it does not depend on slot numbers, hash layout or
// arena placement, so two engines in the same logical state, the C++ core and
// the Python reference model included, produce the same bytes and digest.
#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "matchcore/engine.hpp"

namespace matchcore {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the state format is little-endian");

// Format 3: order ids name their slot (order_pool.hpp). A format 2 state was
// written by an engine that numbered orders 1, 2, 3, ... whatever the slots:
// its journal would replay into other ids here, so it is refused, not converted.
// Format 4 adds each market's price bounds; a format 3 state reads as markets
// without bounds.
constexpr char MAGIC[8] = {'M', 'C', 'S', 'T', 'A', 'T', 'E', '\x04'};
constexpr char MAGIC_V3[8] = {'M', 'C', 'S', 'T', 'A', 'T', 'E', '\x03'};
constexpr char MAGIC_V2[8] = {'M', 'C', 'S', 'T', 'A', 'T', 'E', '\x02'};

template <class T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

/// Bounds-checked little-endian reader; after the first short read every read
/// returns 0 and ok() is false.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <class T>
  T get() {
    T value{};
    if (!ok_ || size_ - pos_ < sizeof(T)) {
      ok_ = false;
      return value;
    }
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == size_; }
  const uint8_t* bytes(size_t n) {
    if (!ok_ || size_ - pos_ < n) {
      ok_ = false;
      return nullptr;
    }
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  bool ok_ = true;
};

bool fail(std::string& error, std::string message) {
  error = std::move(message);
  return false;
}

}  // namespace

void Engine::encode_state(std::string& out) const {
  out.clear();
  out.append(MAGIC, sizeof MAGIC);
  put(out, config_.max_orders);
  put(out, config_.max_markets);
  put(out, config_.max_accounts);
  put(out, config_.max_levels);
  put(out, config_.max_positions);
  put(out, uint8_t{config_.ledger});
  put(out, now_);
  put(out, next_order_id_);
  put(out, net_deposits_);
  put(out, fees_);

  uint32_t n_accounts = 0;
  for (const Account& a : accounts_) n_accounts += a.exists;
  put(out, n_accounts);
  for (uint32_t id = 0; id < config_.max_accounts; ++id) {
    if (!accounts_[id].exists) continue;
    put(out, id);
    put(out, accounts_[id].cash_free);
    put(out, accounts_[id].cash_reserved);
  }

  // Positions grouped by market, ascending account within each.
  std::vector<uint32_t> held = config_.ledger ? positions_.live_slots() : std::vector<uint32_t>{};
  std::sort(held.begin(), held.end(), [this](uint32_t a, uint32_t b) {
    const Position& x = positions_[a];
    const Position& y = positions_[b];
    return x.market != y.market ? x.market < y.market : x.account < y.account;
  });
  size_t next_held = 0;

  uint32_t n_markets = 0;
  for (const Market& m : markets_) n_markets += m.state != STATE_NONE;
  put(out, n_markets);
  for (const Market& m : markets_) {
    if (m.state == STATE_NONE) continue;
    put(out, m.id);
    put(out, m.state);
    put(out, m.tick);
    put(out, m.min_size);
    put(out, m.lot);
    put(out, m.fees.taker_bps);
    put(out, m.fees.maker_bps);
    put(out, m.fees.base);
    put(out, m.outcome);
    put(out, m.collateral);
    put(out, m.min_price);
    put(out, m.max_price);
    for (int side = BID; side <= ASK; ++side) {
      const size_t count_at = out.size();
      put(out, uint32_t{0});
      uint32_t n_levels = 0;
      for (int32_t i = m.best[side]; i >= 0; i = next_level(m, side, i), ++n_levels) {
        const Level& lv = level(m, side, i);
        put(out, level_price(m, i));
        put(out, lv.count);
        put(out, lv.total);
        for (uint32_t slot = lv.head; slot != NIL; slot = pool_[slot].next) {
          const Order& o = pool_[slot];
          put(out, o.order_id);
          put(out, o.client_order_id);
          put(out, o.account);
          put(out, o.leaves_qty);
          put(out, expiry_of(o));
          put(out, o.intent);
          put(out, o.tif);
          put(out, o.stp);
          put(out, o.flags);
        }
      }
      std::memcpy(&out[count_at], &n_levels, sizeof n_levels);
    }
    while (next_held < held.size() && positions_[held[next_held]].market < m.id) ++next_held;
    size_t end = next_held;
    while (end < held.size() && positions_[held[end]].market == m.id) ++end;
    put(out, static_cast<uint32_t>(end - next_held));
    for (; next_held < end; ++next_held) {
      const Position& p = positions_[held[next_held]];
      put(out, p.account);
      put(out, p.yes_free);
      put(out, p.yes_reserved);
      put(out, p.no_free);
      put(out, p.no_reserved);
    }
  }
}

bool Engine::decode_state(const uint8_t* data, size_t size, std::string& error) {
  Reader in(data, size);
  const uint8_t* magic = in.bytes(sizeof MAGIC);
  if (magic && std::memcmp(magic, MAGIC_V2, sizeof MAGIC_V2) == 0) {
    return fail(error,
                "a matchcore state of format 2, whose order ids do not name their slots; "
                "this engine reads formats 3 and 4 only");
  }
  const bool v3 = magic && std::memcmp(magic, MAGIC_V3, sizeof MAGIC_V3) == 0;
  if (!magic || (!v3 && std::memcmp(magic, MAGIC, sizeof MAGIC) != 0)) {
    return fail(error, "not a matchcore state (bad magic or version)");
  }
  Config config;
  config.max_orders = in.get<uint32_t>();
  config.max_markets = in.get<uint32_t>();
  config.max_accounts = in.get<uint32_t>();
  config.max_levels = in.get<uint32_t>();
  config.max_positions = in.get<uint32_t>();
  const uint8_t ledger = in.get<uint8_t>();
  const int64_t now = in.get<int64_t>();
  const uint64_t next_order_id = in.get<uint64_t>();
  const int64_t net_deposits = in.get<int64_t>();
  const int64_t fees = in.get<int64_t>();
  if (!in.ok()) return fail(error, "truncated header");
  if (config.max_levels == 0 || config.max_positions == 0) {
    return fail(error, "max_levels and max_positions must be >= 1");
  }
  if (ledger > 1) return fail(error, "the ledger flag must be 0 or 1");
  config.ledger = ledger == 1;
  if (!init(config, error)) return false;
  now_ = now;
  next_order_id_ = next_order_id;
  if (now_ < 0) return fail(error, "negative engine time");
  if (next_order_id_ == 0) return fail(error, "next_order_id is 0");
  // Net deposits go below 0 only when rebates paid out exceeded the fees charged.
  if (net_deposits < -MAX_TOTAL_CASH || net_deposits > MAX_TOTAL_CASH) {
    return fail(error, "bad net deposits");
  }
  if (!config_.ledger && (net_deposits != 0 || fees != 0)) {
    return fail(error, "money in an engine without the ledger");
  }
  net_deposits_ = net_deposits;
  fees_ = fees;

  const uint32_t n_accounts = in.get<uint32_t>();
  if (!in.ok() || n_accounts > config_.max_accounts) return fail(error, "bad account count");
  int64_t previous = -1;
  for (uint32_t k = 0; k < n_accounts; ++k) {
    const uint32_t id = in.get<uint32_t>();
    const int64_t cash_free = in.get<int64_t>();
    const int64_t cash_reserved = in.get<int64_t>();
    if (!in.ok() || id >= config_.max_accounts || int64_t{id} <= previous) {
      return fail(error, "account ids must be ascending and below max_accounts");
    }
    if (cash_free < 0 || cash_reserved < 0 || cash_free > MAX_TOTAL_CASH ||
        cash_reserved > MAX_TOTAL_CASH) {
      return fail(error, "account cash out of range");
    }
    accounts_[id].exists = 1;
    accounts_[id].cash_free = cash_free;
    accounts_[id].cash_reserved = cash_reserved;
    previous = id;
  }

  std::vector<std::pair<uint64_t, uint32_t>> resting;  // (order id, slot)
  const uint32_t n_markets = in.get<uint32_t>();
  if (!in.ok() || n_markets > config_.max_markets) return fail(error, "bad market count");
  previous = -1;
  for (uint32_t k = 0; k < n_markets; ++k) {
    const uint32_t id = in.get<uint32_t>();
    const uint8_t state = in.get<uint8_t>();
    const int32_t tick = in.get<int32_t>();
    const int64_t min_size = in.get<int64_t>();
    const int64_t lot = in.get<int64_t>();
    const int16_t taker_bps = in.get<int16_t>();
    const int16_t maker_bps = in.get<int16_t>();
    const uint8_t fee_base = in.get<uint8_t>();
    const uint8_t outcome = in.get<uint8_t>();
    const int64_t collateral = in.get<int64_t>();
    const int32_t min_price = v3 ? 0 : in.get<int32_t>();
    const int32_t max_price = v3 ? 0 : in.get<int32_t>();
    if (!in.ok()) return fail(error, "truncated market");
    if (!valid_bounds(min_price, max_price)) return fail(error, "bad price bounds");
    if (taker_bps < 0 || taker_bps > FEE_BPS_LIMIT || maker_bps < -FEE_BPS_LIMIT ||
        maker_bps > FEE_BPS_LIMIT || maker_bps < -taker_bps || fee_base > FEE_PQ_CENTS) {
      return fail(error, "bad fee schedule");
    }
    if (outcome > OUTCOME_HALF || (outcome != OUTCOME_NONE) != (state == RESOLVED)) {
      return fail(error, "an outcome goes with, and only with, a resolved market");
    }
    if (collateral < 0 || collateral > MAX_TOTAL_CASH) return fail(error, "bad collateral");
    if (id >= config_.max_markets || int64_t{id} <= previous) {
      return fail(error, "market ids must be ascending and below max_markets");
    }
    previous = id;
    if (state < PRE_OPEN || state > EXPIRED) return fail(error, "bad market state");
    if (!valid_tick(tick)) return fail(error, "bad tick");
    if (lot <= 0 || min_size <= 0 || min_size > MAX_QUANTITY || min_size % lot != 0) {
      return fail(error, "bad min size or lot");
    }
    const uint32_t needed = 2 * static_cast<uint32_t>(levels_per_side(tick));
    if (uint64_t{levels_in_use_} + needed > config_.max_levels) {
      return fail(error, "markets need more than max_levels price levels");
    }
    Market& m = markets_[id];
    m.level_base = allocate_levels(needed);
    m.levels_per_side = needed / 2;
    m.tick = tick;
    m.min_size = min_size;
    m.lot = lot;
    m.fees = FeeSchedule{taker_bps, maker_bps, fee_base};
    m.outcome = outcome;
    m.collateral = collateral;
    m.min_price = min_price;
    m.max_price = max_price;
    set_price_range(m);
    m.state = state;
    for (int side = BID; side <= ASK; ++side) {
      const uint32_t n_levels = in.get<uint32_t>();
      if (!in.ok() || n_levels > m.levels_per_side) return fail(error, "bad level count");
      for (uint32_t l = 0; l < n_levels; ++l) {
        const int32_t price = in.get<int32_t>();
        const uint32_t count = in.get<uint32_t>();
        const int64_t total = in.get<int64_t>();
        if (!in.ok()) return fail(error, "truncated level");
        if (!price_ok(m, price)) return fail(error, "level price off the grid");
        const int32_t index = level_index(m, price);
        if (count == 0 || m.bits[side].test(static_cast<uint32_t>(index)) ||
            (m.best[side] >= 0 && (side == BID ? index > m.best[side] : index < m.best[side]))) {
          return fail(error, "levels must be non-empty, distinct and listed best first");
        }
        for (uint32_t n = 0; n < count; ++n) {
          Taker t{};
          t.order_id = in.get<uint64_t>();
          t.client_order_id = in.get<uint64_t>();
          t.account = in.get<uint32_t>();
          t.remaining = in.get<int64_t>();
          t.expiry = in.get<int64_t>();
          t.intent = in.get<uint8_t>();
          t.tif = in.get<uint8_t>();
          t.stp = in.get<uint8_t>();
          t.flags = in.get<uint8_t>();
          t.limit = price;
          if (!in.ok()) return fail(error, "truncated order");
          if (t.order_id == 0 || t.order_id >= next_order_id_) {
            return fail(error, "order ids must be non-zero and below next_order_id");
          }
          if (!pool_.is_free(pool_.slot_of(t.order_id))) {
            return fail(error, "two resting orders with the same slot (id modulo max_orders)");
          }
          if (t.account >= config_.max_accounts || !accounts_[t.account].exists) {
            return fail(error, "order of an unknown account");
          }
          if (t.intent > SELL_NO || side_of(t.intent) != side) {
            return fail(error, "order intent does not match its side");
          }
          if ((t.tif != GTC && t.tif != GTD) || (t.tif == GTD) != (t.expiry != 0) ||
              t.stp > REMOVE_BOTH || (t.flags & ~POST_ONLY)) {
            return fail(error, "resting order with a bad time in force, expiry, stp or flags");
          }
          if (t.remaining <= 0 || t.remaining > MAX_QUANTITY || t.remaining % lot != 0) {
            return fail(error, "resting order with a bad quantity");
          }
          if (t.client_order_id &&
              client_index_.find(ClientKey{t.client_order_id, t.account}) != NIL) {
            return fail(error, "duplicate client order id");
          }
          const uint32_t slot = pool_.occupy(t.order_id);
          Order& o = pool_[slot];
          o = Order{t.order_id, t.client_order_id, t.remaining, t.account, id,       NIL,
                    NIL,        NIL,               NIL,         NIL,       price,    t.intent,
                    t.tif,      t.stp,             t.flags};
          if (t.client_order_id) client_index_.insert(ClientKey{t.client_order_id, t.account}, slot);
          if (t.tif == GTD) expiry_.push(pool_, slot, t.expiry);
          link_back(m, slot);
          resting.emplace_back(t.order_id, slot);
        }
        const Level& lv = level(m, side, index);
        if (lv.total != total) return fail(error, "level total differs from its orders");
      }
    }
    const int32_t bid = m.best[BID];
    const int32_t ask = m.best[ASK];
    if (bid >= 0 && ask >= 0 && bid >= ask && m.state != PRE_OPEN) {
      return fail(error, "crossed book");  // only an auction's book may cross
    }
    const uint32_t n_positions = in.get<uint32_t>();
    if (!in.ok()) return fail(error, "truncated positions");
    if (!config_.ledger && n_positions != 0) return fail(error, "positions without the ledger");
    int64_t previous_account = -1;
    for (uint32_t k = 0; k < n_positions; ++k) {
      const uint32_t account = in.get<uint32_t>();
      int64_t amounts[4];
      for (int64_t& amount : amounts) amount = in.get<int64_t>();
      if (!in.ok()) return fail(error, "truncated position");
      if (int64_t{account} <= previous_account || account >= config_.max_accounts ||
          !accounts_[account].exists) {
        return fail(error, "positions must be of added accounts, in ascending order");
      }
      previous_account = account;
      for (int64_t amount : amounts) {
        if (amount < 0 || amount > MAX_TOTAL_CASH) return fail(error, "position out of range");
      }
      const uint32_t slot = positions_.find_or_create(account, id);
      if (slot == NIL) return fail(error, "more positions than max_positions");
      Position& p = positions_[slot];
      p.yes_free = amounts[0];
      p.yes_reserved = amounts[1];
      p.no_free = amounts[2];
      p.no_reserved = amounts[3];
    }
  }
  if (!in.at_end()) return fail(error, "trailing bytes after the state");

  // Account lists run in acceptance order, that is ascending order id.
  std::sort(resting.begin(), resting.end());
  for (const auto& [order_id, slot] : resting) {
    Order& o = pool_[slot];
    if (config_.ledger) {
      const uint32_t position = positions_.find(o.account, o.market);
      if (position == NIL) return fail(error, "a resting order without its position");
      ++positions_[position].orders;
      o.position = position;
    }
    Account& a = accounts_[o.account];
    o.acct_prev = a.tail;
    o.acct_next = NIL;
    if (a.tail != NIL) {
      pool_[a.tail].acct_next = slot;
    } else {
      a.head = slot;
    }
    a.tail = slot;
    ++a.orders;
  }
  return validate(error);
}

bool Engine::validate(std::string& error) const {
  std::vector<uint8_t> seen(pool_.capacity(), 0);
  uint32_t live = 0;
  uint32_t with_client_id = 0;
  uint32_t gtd = 0;
  uint64_t levels_used = 0;
  // Messages are built only when a check fails: validate() runs after every
  // command in the tests, and most levels and orders are fine.
  for (const Market& m : markets_) {
    const auto where = [&m] { return "market " + std::to_string(m.id); };
    if (m.state == STATE_NONE) {
      if (m.levels_per_side != 0) return fail(error, where() + ": not created but holds levels");
      continue;
    }
    if (m.levels_per_side != static_cast<uint32_t>(levels_per_side(m.tick))) {
      return fail(error, where() + ": level count does not match the tick");
    }
    if (uint64_t{m.level_base} + 2 * m.levels_per_side > levels_top_) {
      return fail(error, where() + ": level block outside the arena");
    }
    levels_used += 2 * m.levels_per_side;
    for (int side = BID; side <= ASK; ++side) {
      const char* side_name = side == BID ? " bid" : " ask";
      int32_t best = -1;
      for (int32_t i = 0; i < static_cast<int32_t>(m.levels_per_side); ++i) {
        const Level& lv = level(m, side, i);
        const auto at = [&] {
          return where() + side_name + " level " + std::to_string(level_price(m, i));
        };
        if (m.bits[side].test(static_cast<uint32_t>(i)) != (lv.count > 0)) {
          return fail(error, at() + ": bitset disagrees with the level");
        }
        if (lv.count == 0 && lv.head == NIL && lv.tail == NIL && lv.total == 0) continue;
        uint32_t count = 0;
        int64_t total = 0;
        uint32_t prev = NIL;
        for (uint32_t slot = lv.head; slot != NIL; slot = pool_[slot].next) {
          if (slot >= pool_.capacity() || seen[slot]) {
            return fail(error, at() + ": broken or cyclic order list");
          }
          seen[slot] = 1;
          const Order& o = pool_[slot];
          const auto id = [&] { return at() + ": order " + std::to_string(o.order_id); };
          if (o.prev != prev) return fail(error, id() + ": prev link is wrong");
          if (o.market != m.id || o.price != level_price(m, i) || side_of(o.intent) != side) {
            return fail(error, id() + ": market, price or side differs from its level");
          }
          if (o.leaves_qty <= 0 || o.leaves_qty % m.lot != 0) {
            return fail(error, id() + ": remaining quantity is not a positive number of lots");
          }
          if (pool_.slot_of(o.order_id) != slot || pool_.is_free(slot)) {
            return fail(error, id() + ": not in the slot its id names, or the slot is free");
          }
          if (o.order_id >= next_order_id_) return fail(error, id() + ": id not yet assigned");
          if (o.client_order_id) {
            ++with_client_id;
            if (client_index_.find(ClientKey{o.client_order_id, o.account}) != slot) {
              return fail(error, id() + ": missing from the client order id index");
            }
          }
          if (o.tif == GTD) {
            ++gtd;
            if (expiry_.expiry(slot) <= now_) return fail(error, id() + ": should have expired");
          }
          if (o.account >= config_.max_accounts || !accounts_[o.account].exists) {
            return fail(error, id() + ": unknown account");
          }
          ++count;
          total += o.leaves_qty;
          prev = slot;
        }
        if (lv.tail != prev) return fail(error, at() + ": tail link is wrong");
        if (lv.count != count) return fail(error, at() + ": count differs from its orders");
        if (lv.total != total) return fail(error, at() + ": total differs from its orders");
        if (count > 0 && (side == BID || best < 0)) best = i;  // highest bid, lowest ask
      }
      if (m.best[side] != best) return fail(error, where() + side_name + ": best level is wrong");
    }
    if (m.best[BID] >= 0 && m.best[ASK] >= 0 && m.best[BID] >= m.best[ASK] &&
        m.state != PRE_OPEN) {
      return fail(error, where() + ": book is crossed");
    }
    if (!holds_orders(m.state) && (m.best[BID] >= 0 || m.best[ASK] >= 0)) {
      return fail(error, where() + ": orders rest in a market that is not trading");
    }
  }
  live = pool_.live();
  uint32_t linked = 0;
  for (uint8_t s : seen) linked += s;
  if (linked != live) return fail(error, "pool counts orders that are in no level");
  for (uint32_t slot = 0; slot < pool_.capacity(); ++slot) {
    if (pool_.is_free(slot) != (pool_[slot].order_id == 0) || pool_.is_free(slot) == seen[slot]) {
      return fail(error, "slot " + std::to_string(slot) + ": the free-slot map disagrees");
    }
  }
  if (client_index_.size() != with_client_id) return fail(error, "client index size differs");
  // The expiry heap: in order, within its room, one entry per resting GTD order
  // with its expiry (the others stale: their ids name no resting order), the top
  // not stale.
  if (expiry_.size() > expiry_.capacity()) return fail(error, "expiry heap overflows");
  std::vector<uint8_t> listed_gtd(pool_.capacity(), 0);
  uint32_t entries = 0;
  for (uint64_t pos = 0; pos < expiry_.size(); ++pos) {
    const ExpiryHeap::Entry& entry = expiry_.at(pos);
    if (pos > 0 && ExpiryHeap::before(entry, expiry_.at(ExpiryHeap::parent(pos)))) {
      return fail(error, "expiry heap order is broken");
    }
    const uint32_t slot = pool_.find(entry.order_id);
    if (slot == NIL) {
      if (pos == 0) return fail(error, "expiry heap top is stale");
      continue;
    }
    if (pool_[slot].tif != GTD || listed_gtd[slot] || expiry_.expiry(slot) != entry.expiry) {
      return fail(error, "expiry heap entry of order " + std::to_string(entry.order_id) +
                             " is not its only one, or differs from it");
    }
    listed_gtd[slot] = 1;
    ++entries;
  }
  if (entries != gtd) return fail(error, "expiry heap misses resting GTD orders");
  if (levels_used != levels_in_use_ || levels_in_use_ > config_.max_levels) {
    return fail(error, "level arena accounting is wrong");
  }
  uint32_t listed = 0;
  for (uint32_t id = 0; id < config_.max_accounts; ++id) {
    const Account& a = accounts_[id];
    uint32_t prev = NIL;
    uint64_t last_id = 0;
    uint32_t n = 0;
    for (uint32_t slot = a.head; slot != NIL; slot = pool_[slot].acct_next) {
      if (slot >= pool_.capacity() || !seen[slot] || n > live) {
        return fail(error, "account " + std::to_string(id) + ": broken order list");
      }
      const Order& o = pool_[slot];
      if (o.account != id || o.acct_prev != prev || o.order_id <= last_id) {
        return fail(error, "account " + std::to_string(id) + ": order list out of order");
      }
      last_id = o.order_id;
      prev = slot;
      ++n;
    }
    if (a.tail != prev || a.orders != n) {
      return fail(error, "account " + std::to_string(id) + ": order count or tail is wrong");
    }
    listed += n;
  }
  if (listed != live) return fail(error, "account lists do not cover every order");
  return validate_ledger(seen, error);
}

bool Engine::validate_ledger(const std::vector<uint8_t>& resting, std::string& error) const {
  if (!config_.ledger) {
    for (uint32_t slot = 0; slot < resting.size(); ++slot) {
      if (resting[slot] && pool_[slot].position != NIL) {
        return fail(error, "an order with a position without the ledger");
      }
    }
    if (net_deposits_ != 0 || fees_ != 0) return fail(error, "money without the ledger");
    for (const Account& a : accounts_) {
      if (a.cash_free != 0 || a.cash_reserved != 0) return fail(error, "cash without the ledger");
    }
    for (const Market& m : markets_) {
      if (m.collateral != 0) return fail(error, "collateral without the ledger");
    }
    return true;
  }
  // What the resting orders need: cash per account, shares and order counts per position.
  struct Need {
    int64_t yes = 0;
    int64_t no = 0;
    uint32_t orders = 0;
  };
  std::vector<int64_t> cash_needed(config_.max_accounts, 0);
  std::unordered_map<uint64_t, Need> needed;
  for (uint32_t slot = 0; slot < resting.size(); ++slot) {
    if (!resting[slot]) continue;
    const Order& o = pool_[slot];
    const Market& m = markets_[o.market];
    if (o.position != positions_.find(o.account, o.market)) {
      return fail(error, "order " + std::to_string(o.order_id) + ": points at another position");
    }
    Need& n = needed[uint64_t{o.account} << 32 | o.market];
    ++n.orders;
    if (o.intent == SELL_YES) n.yes += o.leaves_qty;
    if (o.intent == SELL_NO) n.no += o.leaves_qty;
    if (o.intent == BUY_YES || o.intent == BUY_NO) {
      cash_needed[o.account] += buy_reserve(m, o.intent, o.price, o.leaves_qty);
    }
  }
  __int128 cash = fees_;
  for (uint32_t id = 0; id < config_.max_accounts; ++id) {
    const Account& a = accounts_[id];
    const auto who = [id] { return "account " + std::to_string(id); };
    if (a.cash_free < 0 || a.cash_reserved < 0) return fail(error, who() + ": negative cash");
    if (a.cash_reserved != cash_needed[id]) {
      return fail(error, who() + ": reserves " + std::to_string(a.cash_reserved) +
                             " but its resting buys need " + std::to_string(cash_needed[id]));
    }
    if (!a.exists && (a.cash_free != 0 || a.cash_reserved != 0)) {
      return fail(error, who() + ": cash in an account that was never added");
    }
    cash += a.cash_free;
    cash += a.cash_reserved;
  }
  if (net_deposits_ > MAX_TOTAL_CASH || net_deposits_ < -MAX_TOTAL_CASH) {
    return fail(error, "net deposits out of range");
  }
  std::vector<__int128> yes(config_.max_markets, 0);
  std::vector<__int128> no(config_.max_markets, 0);
  size_t matched = 0;
  for (uint32_t slot : positions_.live_slots()) {
    const Position& p = positions_[slot];
    const auto where = [&p] {
      return "position of account " + std::to_string(p.account) + " in market " +
             std::to_string(p.market);
    };
    if (p.market >= config_.max_markets || markets_[p.market].state == STATE_NONE ||
        p.account >= config_.max_accounts || !accounts_[p.account].exists) {
      return fail(error, where() + ": unknown account or market");
    }
    if (p.yes_free < 0 || p.yes_reserved < 0 || p.no_free < 0 || p.no_reserved < 0) {
      return fail(error, where() + ": negative shares");
    }
    if (p.empty()) return fail(error, where() + ": empty but still held");
    const auto it = needed.find(uint64_t{p.account} << 32 | p.market);
    const Need n = it == needed.end() ? Need{} : it->second;
    matched += it != needed.end();
    if (p.yes_reserved != n.yes || p.no_reserved != n.no) {
      return fail(error, where() + ": reserved shares differ from what its resting sells need");
    }
    if (p.orders != n.orders) return fail(error, where() + ": resting order count is wrong");
    yes[p.market] += p.yes_free + p.yes_reserved;
    no[p.market] += p.no_free + p.no_reserved;
  }
  if (matched != needed.size()) return fail(error, "a resting order has no position");
  if (positions_.live() > config_.max_positions) return fail(error, "too many positions");
  for (const Market& m : markets_) {
    if (m.state == STATE_NONE) continue;
    const auto where = [&m] { return "market " + std::to_string(m.id); };
    if ((m.outcome != OUTCOME_NONE) != (m.state == RESOLVED) || m.outcome > OUTCOME_HALF) {
      return fail(error, where() + ": an outcome goes with, and only with, a resolved market");
    }
    const FeeSchedule& f = m.fees;
    if (f.taker_bps < 0 || f.taker_bps > FEE_BPS_LIMIT || f.maker_bps < -f.taker_bps ||
        f.maker_bps > FEE_BPS_LIMIT || f.base > FEE_PQ_CENTS) {
      return fail(error, where() + ": fee schedule out of bounds");
    }
    if (m.state == RESOLVED && m.collateral != 0) {
      return fail(error, where() + ": collateral left after resolution");
    }
    if (m.collateral < 0 || m.collateral % PRICE_SCALE != 0) {
      return fail(error, where() + ": collateral is not a whole number of pairs");
    }
    if (yes[m.id] != no[m.id] || yes[m.id] * PRICE_SCALE != m.collateral) {
      return fail(error, where() + ": YES shares, NO shares and collateral disagree");
    }
    cash += m.collateral;
  }
  if (cash != net_deposits_) {
    return fail(error, "cash, collateral and fees do not add up to the net deposits");
  }
  return true;
}

}  // namespace matchcore
