// matchcore/ledger.hpp — money arithmetic and the table of positions.
//
// The ledger runs inside the engine's single-threaded step (as exchange-core
// runs its risk stage around matching): an order reserves what it needs on
// entry, every trade settles in the same command, and the engine's totals
// conserve cash exactly. All amounts are integers: cash in micro-dollars,
// shares in 0.01-share units, prices in 1e-4 dollars, so a notional is
// price * quantity with no rounding; only fees round, once per side of a
// trade, with 128-bit intermediates (docs/matchcore.md §8).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hash_index.hpp"
#include "types.hpp"

namespace matchcore {

/// A market's fee schedule, fixed at creation.
struct FeeSchedule {
  int16_t taker_bps;
  int16_t maker_bps;
  uint8_t base;  ///< FeeBase
  /// Rate a buy reserves for: the highest it could pay, max(taker, maker, 0).
  int16_t reserve_bps() const noexcept {
    return static_cast<int16_t>(std::max<int>({taker_bps, maker_bps, 0}));
  }
  /// Denominator D of the fee formula.
  int64_t divisor() const noexcept { return base == FEE_PQ ? 100'000'000 : 10'000; }
  /// Fee base B for `quantity` of `intent`'s token at YES price `price`.
  __int128 amount(uint8_t intent, int32_t price, int64_t quantity) const noexcept {
    switch (base) {
      case FEE_MIN:
        return __int128{std::min(price, PRICE_SCALE - price)} * quantity;
      case FEE_PQ:
        return __int128{price} * (PRICE_SCALE - price) * quantity;
      default:
        return __int128{token_price(intent, price)} * quantity;
    }
  }
  /// bps * B / D: rounded up when charged, toward zero for a rebate.
  int64_t fee(int32_t bps, uint8_t intent, int32_t price, int64_t quantity) const noexcept {
    if (bps == 0) return 0;
    const __int128 scaled = __int128{bps < 0 ? -bps : bps} * amount(intent, price, quantity);
    const int64_t d = divisor();
    if (bps > 0) return static_cast<int64_t>((scaled + d - 1) / d);
    return -static_cast<int64_t>(scaled / d);
  }
  /// The fee reserve of a buy by cash with this budget: the taker rate on the
  /// whole budget, which bounds its fee on any base (docs/matchcore.md §8).
  int64_t budget_fee_reserve(int64_t budget) const noexcept {
    return static_cast<int64_t>((__int128{taker_bps} * budget + 9'999) / 10'000);
  }
  /// What a buy reserves per lot at its limit: the token's price and the
  /// fee at the highest rate, rounded per lot so that any fill of whole lots
  /// at the limit or better is covered (docs/matchcore.md §8).
  int64_t lot_reserve(uint8_t intent, int32_t limit, int64_t lot) const noexcept {
    return token_price(intent, limit) * lot + fee(reserve_bps(), intent, limit, lot);
  }
};

/// An account's shares in one market, and how many of its orders rest there.
struct Position {
  uint32_t account;
  uint32_t market;
  int64_t yes_free;
  int64_t yes_reserved;
  int64_t no_free;
  int64_t no_reserved;
  uint32_t orders;  ///< resting orders of the account in the market
  uint32_t next;    ///< free list link
  bool empty() const noexcept {
    return orders == 0 && yes_free == 0 && yes_reserved == 0 && no_free == 0 && no_reserved == 0;
  }
};

/// Positions in a preallocated pool, found through an open-addressing index
/// keyed by (account, market). A position lives while it holds anything or
/// has resting orders, so the table only holds what the book needs.
class PositionTable {
 public:
  void init(uint32_t capacity) {
    slots_.assign(capacity, Position{});
    free_head_ = NIL;
    for (uint32_t i = capacity; i-- > 0;) {
      slots_[i].next = free_head_;
      free_head_ = i;
    }
    index_.init(capacity);
    live_ = 0;
  }
  uint32_t find(uint32_t account, uint32_t market) const noexcept {
    return index_.find(key(account, market));
  }
  /// The position, created empty if missing; NIL when a new one is needed and the table is full.
  uint32_t find_or_create(uint32_t account, uint32_t market) noexcept {
    uint32_t slot = find(account, market);
    if (slot != NIL || free_head_ == NIL) return slot;
    slot = free_head_;
    free_head_ = slots_[slot].next;
    slots_[slot] = Position{account, market, 0, 0, 0, 0, 0, NIL};
    index_.insert(key(account, market), slot);
    ++live_;
    return slot;
  }
  /// Frees the position if it holds nothing and has no resting order.
  void release_if_empty(uint32_t slot) noexcept {
    Position& p = slots_[slot];
    if (!p.empty()) return;
    index_.erase(key(p.account, p.market));
    p.next = free_head_;
    free_head_ = slot;
    --live_;
  }
  bool full() const noexcept { return free_head_ == NIL; }
  uint32_t live() const noexcept { return live_; }
  uint32_t capacity() const noexcept { return static_cast<uint32_t>(slots_.size()); }
  size_t bytes() const noexcept { return slots_.size() * sizeof(Position) + index_.bytes(); }
  Position& operator[](uint32_t slot) noexcept { return slots_[slot]; }
  const Position& operator[](uint32_t slot) const noexcept { return slots_[slot]; }
  /// Slots of the live positions, in no particular order.
  std::vector<uint32_t> live_slots() const {
    std::vector<uint32_t> out;
    index_.for_each([&](uint64_t, uint32_t slot) { out.push_back(slot); });
    return out;
  }

 private:
  // Never 0 (the index's empty key): account < 2^24, market < 2^17.
  static uint64_t key(uint32_t account, uint32_t market) noexcept {
    return (uint64_t{account} << 32 | market) + 1;
  }
  std::vector<Position> slots_;
  OrderIndex index_;
  uint32_t free_head_ = NIL;
  uint32_t live_ = 0;
};

}  // namespace matchcore
