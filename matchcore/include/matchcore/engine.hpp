// matchcore/engine.hpp — the matching engine: commands in, events out.
//
// Design (docs/matchcore.md is the contract, DESIGN.md §5 the intent):
//
// * One engine owns all memory, sized once by Config: the order pool (where an
//   order id names its slot), the client order id index, the expiry heap, the accounts, the markets and one arena of
//   price levels. Nothing on the command path allocates (the event buffer
//   grows only when a batch produces more events than any before it).
// * One book per market, in YES prices. Each side is an array of levels
//   indexed by price / tick - 1 (9 to 9,999 levels), each level an intrusive
//   FIFO of order slots with its total and count; a two-level bitset per side
//   finds the next non-empty level when the best one empties. Markets get
//   their level arrays from one arena that is compacted when a tick change
//   needs a block of another size.
// * Bids hold BUY_YES and SELL_NO, asks SELL_YES and BUY_NO: a NO order at
//   1 - p is a YES order at p on the other side, so one book serves the four
//   intents, and the match type (complementary, mint, merge) follows from the
//   two intents of a trade.
// * Deterministic: time comes only from the commands (GTD expiry included),
//   ties break on order id, so the same commands give the same events and
//   the same canonical state, byte for byte, as the Python reference model.
// * The ledger (ledger.hpp) runs in the same step: pre-trade risk reserves
//   cash or shares on entry, each fill settles both sides at once (cash,
//   shares, fees, the market's collateral for a mint or a merge). With
//   Config::ledger off the engine only matches.
// * No exceptions and no Python on the hot path: rejects are events and
//   negative results; only allocation failure (std::bad_alloc) can throw.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "event_buffer.hpp"
#include "expiry_heap.hpp"
#include "hash_index.hpp"
#include "huge_array.hpp"
#include "ledger.hpp"
#include "level_bits.hpp"
#include "order_pool.hpp"
#include "types.hpp"

namespace matchcore {

/// Capacities; every table is allocated once from these.
struct Config {
  uint32_t max_orders = 65536;
  uint32_t max_markets = 64;
  uint32_t max_accounts = 4096;
  uint32_t max_levels = 0;     ///< 0: max_markets * 2 * 999 (every market at tick $0.001)
  uint32_t max_positions = 0;  ///< 0: max_orders + max_accounts
  bool ledger = true;          ///< false: matching only, no money moves
};

/// One price level: an intrusive FIFO of order slots with its running total.
struct Level {
  uint32_t head;
  uint32_t tail;
  uint32_t count;
  uint32_t pad;
  int64_t total;
};

struct Market {
  uint32_t id;
  uint8_t state;  ///< MarketState; STATE_NONE when not created
  int32_t tick;
  int64_t min_size;
  int64_t lot;
  uint32_t levels_per_side;  ///< L(tick) = 10'000 / tick - 1
  uint32_t level_base;       ///< first level in the arena: bids, then asks
  int32_t best[2];           ///< best level index per side, -1 when the side is empty
  FeeSchedule fees;
  uint8_t outcome;     ///< Outcome once RESOLVED
  int64_t collateral;  ///< micro-dollars locked: 10'000 per outstanding YES+NO pair
  int32_t min_price;   ///< the market's price bounds as created (0: none)
  int32_t max_price;
  int32_t lowest;   ///< the prices an order may have: max(tick, min_price) ..
  int32_t highest;  ///< min(PRICE_SCALE - tick, max_price), on the grid
  LevelBits bits[2];
};

struct Account {
  int64_t cash_free;      ///< micro-dollars
  int64_t cash_reserved;  ///< what its resting buys need
  uint32_t head;          ///< oldest resting order (ascending order id along acct_next)
  uint32_t tail;
  uint32_t orders;
  uint8_t exists;
};

/// One row of Engine::book_side(); the layout of matchcore.BOOK_LEVEL_DTYPE.
struct BookLevel {
  int32_t price;
  uint32_t count;
  int64_t quantity;
};

/// Bytes used by each structure, for the benchmark reports.
struct MemoryStats {
  size_t order_slot;
  size_t orders;
  size_t slot_map;  ///< the free-slot bitmap of the order pool
  size_t client_index;
  size_t expiry_heap;
  size_t levels;
  size_t markets;
  size_t accounts;
  size_t positions;
};

class Engine {
 public:
  /// Allocates every table; returns false with a message for bad capacities.
  bool init(const Config& config, std::string& error);
  const Config& config() const noexcept { return config_; }

  /// Runs one command, appending its events. Returns >= 0 on success (the new
  /// order id for NEW_ORDER, a count for CANCEL_ALL / ADVANCE_TIME, else 0)
  /// and -Reject when the command is rejected.
  int64_t execute(const Command& command);
  /// Runs a batch in order; the events go to events(). While it runs a command
  /// it asks the cache for the state the next few commands will reach (see
  /// prefetch()).
  void process(const Command* commands, size_t count);
  /// As process(), and writes each command's run time in nanoseconds, read
  /// from the CPU's time-stamp counter around execute() (and its prefetches) and
  /// scaled by the counter's rate over the batch. A separate loop, so process()
  /// pays nothing.
  void process_timed(const Command* commands, size_t count, int64_t* nanoseconds);

  EventBuffer& events() noexcept { return events_; }

  // Queries (not on the command path).
  int64_t now() const noexcept { return now_; }
  uint64_t next_order_id() const noexcept { return next_order_id_; }
  uint32_t order_count() const noexcept { return pool_.live(); }
  /// The earliest expiry of a resting GTD order (0: none rests), for a caller that
  /// advances time only when an order is due.
  int64_t next_expiry() const noexcept { return expiry_.empty() ? 0 : expiry_.top().expiry; }
  /// The market, or nullptr when it was never created.
  const Market* market(uint32_t id) const noexcept;
  /// The resting order with this id, or nullptr.
  const Order* find_order(uint64_t order_id) const noexcept;
  /// The account, or nullptr when it was never added.
  const Account* account(uint32_t id) const noexcept;
  /// The account's resting orders, oldest first (its intrusive list); returns how many.
  size_t orders_of(uint32_t account, const Order** out, size_t capacity) const noexcept;
  /// The position of (account, market), or nullptr when none is held.
  const Position* position(uint32_t account, uint32_t market) const noexcept;
  int64_t net_deposits() const noexcept { return net_deposits_; }
  int64_t fees() const noexcept { return fees_; }
  /// A resting order's expiry time: 0 unless it is GTD.
  int64_t expiry_of(const Order& o) const noexcept {
    return o.tif == GTD ? expiry_.expiry(pool_.slot_of(o.order_id)) : 0;
  }
  /// Up to `depth` non-empty levels of one side, best first; returns how many.
  size_t book_side(const Market& m, int side, size_t depth, BookLevel* out) const noexcept;
  int32_t level_price(const Market& m, int32_t index) const noexcept {
    return (index + 1) * m.tick;
  }
  const Level& level(const Market& m, int side, int32_t index) const noexcept {
    return levels_[m.level_base + side * m.levels_per_side + index];
  }
  MemoryStats memory() const noexcept;

  /// The canonical state of docs/matchcore.md §6 (also the snapshot format).
  void encode_state(std::string& out) const;
  /// Rebuilds this (uninitialized) engine from encode_state() bytes.
  bool decode_state(const uint8_t* data, size_t size, std::string& error);
  /// Checks every invariant; on failure returns false and says which.
  bool validate(std::string& error) const;
  /// The ledger's part of validate(): `resting` marks the slots of resting orders.
  bool validate_ledger(const std::vector<uint8_t>& resting, std::string& error) const;

 private:
  /// The incoming side of a match: a new order, or a resting one being replaced.
  struct Taker {
    uint64_t order_id;
    uint64_t client_order_id;
    int64_t remaining;  ///< quantity, or the budget of a BY_CASH order
    int64_t expiry;
    int64_t lot_reserve;  ///< ledger: what a buy by quantity holds per lot
    int64_t fee_reserve;  ///< ledger: the fee reserve left to a BY_CASH buy
    TakerFees fees;       ///< ledger: this sweep's taker fees so far (FEE_PQ_CENTS cap)
    uint32_t account;
    uint32_t slot;      ///< NIL for a new order
    uint32_t position;  ///< ledger: the account's position in the market
    int32_t limit;
    uint8_t intent;
    uint8_t side;
    uint8_t tif;
    uint8_t stp;
    uint8_t flags;
  };
  enum Stop { STOP_NONE, STOP_DONE, STOP_NO_CROSS, STOP_SELF_TRADE };

  /// A batch knows its commands in advance: before running command i, process()
  /// asks the cache for what command i + AHEAD[s] reaches at stage s. Each stage
  /// reads only lines an earlier stage asked for (a command's own fields name its
  /// order slot or its market and account; the slot names its market, neighbours,
  /// account, position and heap entry; the market header names the levels), so it
  /// does not wait on memory itself. Hints only: state may change before the
  /// command runs, and nothing here writes.
  static constexpr size_t AHEAD[3] = {8, 4, 2};
  /// Tables above this size prefetch (init() decides): on SCALE (1.1 GB) it
  /// saves 45% of the CPU time; an engine whose state is in cache (XC: one
  /// market, 4,096 orders) would only pay the hints' instructions. Between the
  /// two it is not measured.
  static constexpr size_t PREFETCH_BYTES = size_t{256} << 20;
  /// ... and while this many orders rest (process() checks per batch): large
  /// tables holding a small book are the small engine's case, where the full
  /// prefetch costs more than it saves (the capacity sweep's 4,000 orders at
  /// 2^21 and 2^22 slots: 47 -> 57 ns/command; at 16,384 the light hints still
  /// win, at 65,536 with the ledger the full prefetch does). SCALE rests 1,000,000.
  static constexpr uint32_t PREFETCH_ORDERS = 1u << 16;
  bool full_prefetch() const noexcept { return prefetch_ && pool_.live() >= PREFETCH_ORDERS; }
  static constexpr size_t COMMANDS_AHEAD = 16;
  void prefetch(const Command& c, int stage) const noexcept;
  void prefetch_ahead(const Command* commands, size_t i, size_t count) const noexcept {
    if (i + COMMANDS_AHEAD < count) {
      const char* record = reinterpret_cast<const char*>(&commands[i + COMMANDS_AHEAD]);
      prefetch_line(record);
      prefetch_line(record + sizeof(Command) - 1);
    }
    for (int stage = 0; stage < 3; ++stage) {
      if (i + AHEAD[stage] < count) prefetch(commands[i + AHEAD[stage]], stage);
    }
    // The next order to expire, once it is due by the time of a command ahead.
    if (expiry_.empty()) return;
    const ExpiryHeap::Entry& next = expiry_.top();
    const uint32_t slot = pool_.slot_of(next.order_id);
    pool_.prefetch_slot(slot);
    for (int stage = 1; stage < 3; ++stage) {
      if (i + AHEAD[stage] < count && next.expiry <= commands[i + AHEAD[stage]].time) {
        prefetch_resting(slot, stage);
      }
    }
  }
  /// Below PREFETCH_BYTES the full prefetch costs more than it saves (XC at
  /// 262,144 orders: 68 -> 105 ns/command), but two kinds of line are cold
  /// there all the same, and named by the command alone: the slot of a
  /// CANCEL's or REPLACE's order and a NEW_ORDER's account and position index
  /// entry (lines shared by many orders, evicted between uses); and the slot the
  /// next resting order will take (ids name their slots, so at a large capacity
  /// it is a line untouched since the counter last passed it).
  static constexpr size_t NEAR_AHEAD = 4;
  void prefetch_near(const Command* commands, size_t i, size_t count) const noexcept {
    // The counter's own slot, not next_free_id()'s scan: it is the one taken
    // unless an order of a lap before still rests there (then the hint is wasted).
    pool_.prefetch_write(next_order_id_);
    if (i + NEAR_AHEAD >= count) return;
    // No branch on the command's type (a mix makes it unpredictable: a miss cost
    // PEER more than the hints saved); a hint a command does not need is harmless.
    const Command& c = commands[i + NEAR_AHEAD];
    const uint64_t targets = (c.type == CMD_CANCEL) | (c.type == CMD_REPLACE);
    pool_.prefetch(next_order_id_ ^ ((c.order_id ^ next_order_id_) & (0 - targets)));
    const uint32_t account = c.account < config_.max_accounts ? c.account : 0;
    accounts_.prefetch(account);
    if (config_.ledger) positions_.prefetch_find(account, c.market);
  }
  /// What cancel_resting() reaches from a resting order's slot (stage 1), then
  /// from its market header (stage 2).
  void prefetch_resting(uint32_t slot, int stage) const noexcept;
  void prefetch_market(uint32_t market) const noexcept;
  void prefetch_level(const Market& m, int side, int32_t price) const noexcept;

  // Commands.
  int64_t new_order(const Command& c);
  int64_t cancel(const Command& c, uint32_t slot);
  int64_t cancel_all(const Command& c);
  int64_t replace(const Command& c);
  int64_t create_market(const Command& c);
  int64_t set_market_state(const Command& c);
  int64_t set_tick(const Command& c);
  int64_t add_account(const Command& c);
  int64_t deposit(const Command& c);
  int64_t withdraw(const Command& c);
  int64_t split_or_merge(const Command& c);
  int64_t resolve(const Command& c);
  uint32_t expire_due();

  // Matching.
  Stop sweep(Market& m, Taker& t);
  /// The venue's self-match modes, before the first fill: whether the owner has a
  /// resting order the taker's limit reaches; cancels them for CANCEL_OLDEST and
  /// REMOVE_BOTH; STOP_SELF_TRADE when the taker is canceled whole.
  [[gnu::cold]] Stop self_match_first(Market& m, const Taker& t);
  [[gnu::cold]] bool reaches_own(const Market& m, const Taker& t) const noexcept;
  /// The opening auction of PRE_OPEN -> OPEN: uncrosses the book at one price per
  /// round (docs/matchcore.md §4, The opening auction).
  [[gnu::cold]] void open_auction(Market& m);
  int32_t auction_index(const Market& m) const noexcept;
  void auction_round(Market& m, int32_t index);
  bool fok_completes(const Market& m, const Taker& t) const noexcept;
  // The venue's rules off the common path (REJECT_AGGRESSOR orders with a limit, in
  // an OPEN market): cold, so that they stay out of new_order's and sweep's code.
  /// Whether the sweep would fill anything (a SLIPPAGE order's NO_LIQUIDITY check).
  [[gnu::cold]] bool fills_any(const Market& m, const Taker& t) const noexcept;
  /// The limit of a SLIPPAGE market order (aux as in types.hpp; valid, checked).
  [[gnu::cold]] int32_t slippage_limit(const Market& m, int side, int32_t price,
                                       int64_t aux) const noexcept;
  /// Lots a buy by cash can take at `price` with this budget and fee reserve
  /// (without the ledger, the budget alone decides); 0 stops its sweep.
  int64_t cash_lots(const Market& m, const Taker& t, int64_t budget, int64_t fee_reserve,
                    int32_t price) const noexcept;
  void finish_taker(Market& m, Taker& t, Stop stop);
  bool crosses_book(const Market& m, int side, int32_t price) const noexcept;

  // Book maintenance.
  Level& level_at(Market& m, int side, int32_t index) noexcept {
    return levels_[m.level_base + side * m.levels_per_side + index];
  }
  int32_t level_index(const Market& m, int32_t price) const noexcept {
    return divide_by_tick(price, m.tick) - 1;
  }
  int32_t next_level(const Market& m, int side, int32_t index) const noexcept {
    return side == BID ? m.bits[BID].next_below(index) : m.bits[ASK].next_above(index);
  }
  void link_back(Market& m, uint32_t slot) noexcept;
  void unlink(Market& m, uint32_t slot) noexcept;
  uint32_t rest_new(const Taker& t, uint32_t market);
  void retire(uint32_t slot) noexcept;
  void cancel_resting(Market& m, uint32_t slot, uint8_t reason);
  /// Cancels whole levels, bids then asks, best to worst: every level when
  /// keep_tick is 0, else the levels whose price is not a multiple of it.
  void cancel_levels(Market& m, uint8_t reason, int32_t keep_tick);
  bool price_ok(const Market& m, int32_t price) const noexcept;
  Reject quantity_check(const Market& m, int64_t quantity) const noexcept;

  // Ledger (only when config_.ledger).
  /// Cash a resting or entering buy by quantity holds for `quantity` at `price`.
  int64_t buy_reserve(const Market& m, uint8_t intent, int32_t price, int64_t quantity) const {
    return quantity / m.lot * m.fees.lot_reserve(intent, price, m.lot);
  }
  /// Free shares of the token a sell gives up.
  static int64_t& free_shares(Position& p, uint8_t intent) noexcept {
    return intent == SELL_YES ? p.yes_free : p.no_free;
  }
  static int64_t& reserved_shares(Position& p, uint8_t intent) noexcept {
    return intent == SELL_YES ? p.yes_reserved : p.no_reserved;
  }
  /// What a taker holds for its remaining quantity: cash for a buy, shares for a sell.
  int64_t holding(const Market& m, const Taker& t) const noexcept;
  bool affordable(const Market& m, const Taker& t) const noexcept;
  /// Moves `amount` from free to reserved (negative: back) — cash for a buy
  /// intent, shares of the position for a sell.
  void reserve(uint32_t account, uint32_t position, uint8_t intent, int64_t amount);
  void release_order(const Market& m, const Order& o);
  void settle(Market& m, Taker& t, const Order& maker, int32_t price, int64_t quantity,
              int64_t& taker_fee, int64_t& maker_fee);
  void settle_side(const Market& m, uint32_t account, Position& p, uint8_t intent,
                   int32_t price, int64_t quantity, int64_t fee, int64_t lot_reserve);

  // Level arena.
  uint32_t allocate_levels(uint32_t count);
  void compact_levels();
  void reindex(Market& m, int32_t tick);

  // Events.
  Event& emit(uint8_t type) {
    Event& e = events_.emit();
    e.seq = seq_;
    e.command = command_;
    e.type = type;
    return e;
  }
  int64_t reject(const Command& c, Reject reason);
  void emit_level(const Market& m, int side, int32_t index);
  void emit_canceled(const Order& o, uint8_t reason);
  void emit_market(const Market& m, int32_t tick);

  Config config_;
  OrderPool pool_;
  ClientIndex client_index_;
  ExpiryHeap expiry_;
  HugeArray<Account> accounts_;
  HugeArray<Market> markets_;
  PositionTable positions_;
  int64_t net_deposits_ = 0;  ///< deposits minus withdrawals
  int64_t fees_ = 0;          ///< fees charged minus rebates paid
  HugeArray<Level> levels_;
  uint32_t levels_top_ = 0;     ///< arena high-water mark
  uint32_t levels_in_use_ = 0;  ///< sum of 2 * L(tick) over created markets
  EventBuffer events_;
  int64_t now_ = 0;
  uint64_t next_order_id_ = 1;
  bool prefetch_ = false;  ///< the tables pass PREFETCH_BYTES (full_prefetch())
  uint64_t seq_ = 0;     ///< seq of the command being run
  uint8_t command_ = 0;  ///< type of the command being run
};

inline int32_t levels_per_side(int32_t tick) noexcept { return PRICE_SCALE / tick - 1; }

// ------------------------------------------------------------------------
// Hot-path helpers, inline so that a command compiles to one straight function.

/// Whether an order of `side` with this limit trades with a level at `level_price`:
/// a bid takes asks priced at or below its limit, an ask takes bids at or above.
inline bool takes_level(int side, int32_t level_price, int32_t limit) noexcept {
  return side == BID ? level_price <= limit : level_price >= limit;
}

inline bool Engine::price_ok(const Market& m, int32_t price) const noexcept {
  return price >= m.lowest && price <= m.highest &&
         divide_by_tick(price, m.tick) * m.tick == price;
}

/// Sets the prices a market's orders may have from its tick and bounds.
inline void set_price_range(Market& m) noexcept {
  m.lowest = std::max(m.tick, m.min_price);
  m.highest = PRICE_SCALE - m.tick;
  if (m.max_price != 0 && m.max_price < m.highest) m.highest = m.max_price;
}

/// Whether (min_price, max_price) are bounds a market can have: each within 0 ..
/// PRICE_SCALE, 0 meaning none, and the low one not above the high one.
inline bool valid_bounds(int64_t low, int64_t high) noexcept {
  return low >= 0 && low <= PRICE_SCALE && high >= 0 && high <= PRICE_SCALE &&
         (high == 0 || low <= high);
}

inline bool Engine::crosses_book(const Market& m, int side, int32_t price) const noexcept {
  int opposite = side ^ 1;
  int32_t best = m.best[opposite];
  return best >= 0 && takes_level(side, level_price(m, best), price);
}

inline void Engine::link_back(Market& m, uint32_t slot) noexcept {
  Order& o = pool_[slot];
  const int side = side_of(o.intent);
  const int32_t index = level_index(m, o.price);
  Level& lv = level_at(m, side, index);
  o.prev = lv.tail;
  o.next = NIL;
  if (lv.tail != NIL) {
    pool_[lv.tail].next = slot;
  } else {
    lv.head = slot;
    m.bits[side].set(static_cast<uint32_t>(index));
    int32_t& best = m.best[side];
    if (best < 0 || (side == BID ? index > best : index < best)) best = index;
  }
  lv.tail = slot;
  ++lv.count;
  lv.total += o.leaves_qty;
}

inline void Engine::unlink(Market& m, uint32_t slot) noexcept {
  Order& o = pool_[slot];
  const int side = side_of(o.intent);
  const int32_t index = level_index(m, o.price);
  Level& lv = level_at(m, side, index);
  if (o.prev != NIL) {
    pool_[o.prev].next = o.next;
  } else {
    lv.head = o.next;
  }
  if (o.next != NIL) {
    pool_[o.next].prev = o.prev;
  } else {
    lv.tail = o.prev;
  }
  --lv.count;
  lv.total -= o.leaves_qty;
  if (lv.count == 0) {
    m.bits[side].reset(static_cast<uint32_t>(index));
    if (m.best[side] == index) m.best[side] = next_level(m, side, index);
  }
}

inline void Engine::emit_level(const Market& m, int side, int32_t index) {
  const Level& lv = level(m, side, index);
  Event& e = emit(EV_LEVEL);
  e.market = m.id;
  e.side = static_cast<uint8_t>(side);
  e.price = level_price(m, index);
  e.quantity = lv.total;
  e.count = lv.count;
}


}  // namespace matchcore
