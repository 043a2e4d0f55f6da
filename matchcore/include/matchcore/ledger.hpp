// matchcore/ledger.hpp — money arithmetic and the table of positions.
//
// The ledger runs inside the engine's single-threaded step (as exchange-core
// runs its risk stage around matching): an order reserves what it needs on
// entry, every trade settles in the same command, and the engine's totals
// conserve cash exactly. All amounts are integers: cash in micro-dollars,
// shares in 0.01-share units, prices in 1e-4 dollars, so a notional is
// price * quantity with no rounding; only fees round, once per side of a
// trade, exact in 64 bits where the bounds allow it and with 128-bit
// intermediates where not (docs/matchcore.md §8).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hash_index.hpp"
#include "types.hpp"

namespace matchcore {

/// Cash units (micro-dollars) per cent, the unit FEE_PQ_CENTS rounds to.
constexpr int64_t CENT = 10'000;

/// Round half to even of n / (10^8 * CENT) for n >= 0: a PQ numerator in cents.
/// A numerator below 2^63 (every fill under 1.8e8 units, §8 of docs/matchcore.md)
/// divides in 64 bits by a constant, which the compiler turns into a multiply;
/// only larger ones pay the 128-bit division (a call to __divti3).
inline int64_t round_cents(__int128 n) noexcept {
  constexpr int64_t d = 100'000'000 * CENT;
  if (n >= 0 && n <= INT64_MAX) {
    const uint64_t u = static_cast<uint64_t>(n);
    int64_t q = static_cast<int64_t>(u / d);
    const uint64_t twice = 2 * (u % d);  // < 2 * 10^12: no wrap
    if (twice > d || (twice == d && (q & 1))) ++q;
    return q;
  }
  int64_t q = static_cast<int64_t>(n / d);
  const __int128 twice = 2 * (n % d);
  if (twice > d || (twice == d && (q & 1))) ++q;
  return q;
}

/// A taker's fees over the fills of one sweep, for the cumulative cap of
/// FEE_PQ_CENTS: the sum of its exact fees (PQ numerators) and the cents charged.
struct TakerFees {
  __int128 exact = 0;
  int64_t charged = 0;
};

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
  int64_t divisor() const noexcept { return base >= FEE_PQ ? 100'000'000 : 10'000; }
  /// What a reservation multiplies the exact fee by to cover a charged one:
  /// a fee rounded to the cent half to even is at most twice the exact fee.
  int bound_factor() const noexcept { return base == FEE_PQ_CENTS ? 2 : 1; }
  /// B per unit of quantity at YES price `price`, so that B = unit * quantity:
  /// at most 10^4 (NOTIONAL, MIN) or 2.5 * 10^7 (PQ) for a price in 1 .. 9,999.
  int64_t unit(uint8_t intent, int32_t price) const noexcept {
    switch (base) {
      case FEE_MIN:
        return std::min(price, PRICE_SCALE - price);
      case FEE_PQ:
      case FEE_PQ_CENTS:
        return int64_t{price} * (PRICE_SCALE - price);
      default:
        return token_price(intent, price);
    }
  }
  /// Fee base B for `quantity` of `intent`'s token at YES price `price`.
  __int128 amount(uint8_t intent, int32_t price, int64_t quantity) const noexcept {
    return __int128{unit(intent, price)} * quantity;
  }
  /// ceil(rate * B / D) (`up`) or floor(rate * B / D), for a rate of at most
  /// 2 * 32,767 (a bound factor times an int16 rate). rate * unit is then below
  /// 2^41 and exact; times the quantity it fits in 63 bits whenever the
  /// product does not wrap (checked, unsigned, so that a negative operand takes
  /// the 128-bit way too): with rates within FEE_BPS_LIMIT and quantities within
  /// MAX_QUANTITY that is always on NOTIONAL and MIN (<= 2 * 10^3 * 10^4 * 10^10
  /// = 2 * 10^17 < 2^63) and on PQ up to a quantity of 1.8 * 10^8 (2 * 10^3 *
  /// 2.5 * 10^7 * q < 2^63). Then the division is by the constant D, a multiply;
  /// the rest takes the 128-bit division of before, with the same result.
  int64_t scaled_fee(int64_t rate, uint8_t intent, int32_t price, int64_t quantity,
                     bool up) const noexcept {
    const uint64_t per_unit = static_cast<uint64_t>(rate * unit(intent, price));
    uint64_t n;
    if (__builtin_expect(
            !__builtin_mul_overflow(per_unit, static_cast<uint64_t>(quantity), &n) && n >> 63 == 0,
            1)) {
      if (base >= FEE_PQ) return static_cast<int64_t>((n + (up ? 99'999'999 : 0)) / 100'000'000);
      return static_cast<int64_t>((n + (up ? 9'999 : 0)) / 10'000);
    }
    return scaled_fee_wide(__int128{rate} * amount(intent, price, quantity), up);
  }
  /// scaled_fee() for a numerator past 64 bits: a division by the runtime divisor.
  [[gnu::cold, gnu::noinline]] int64_t scaled_fee_wide(__int128 scaled, bool up) const noexcept {
    const int64_t d = divisor();
    return static_cast<int64_t>(up ? (scaled + d - 1) / d : scaled / d);
  }
  /// The fee of one fill (before any cap): bps * B / D rounded up when charged,
  /// toward zero for a rebate; on FEE_PQ_CENTS to the cent, half to even, either sign.
  int64_t fee(int32_t bps, uint8_t intent, int32_t price, int64_t quantity) const noexcept {
    if (bps == 0) return 0;
    const int32_t rate = bps < 0 ? -bps : bps;
    if (base == FEE_PQ_CENTS) {
      const int64_t cents = round_cents(__int128{rate} * amount(intent, price, quantity)) * CENT;
      return bps > 0 ? cents : -cents;
    }
    if (bps > 0) return scaled_fee(rate, intent, price, quantity, true);
    return -scaled_fee(rate, intent, price, quantity, false);
  }
  /// The taker fee of the next fill of a sweep. FEE_PQ_CENTS caps the sum of
  /// the sweep's charges at the rounding of its summed exact fees, lowering
  /// this fill's charge only: c = max(0, min(round(e), round(sum e) - sum c)).
  int64_t taker_fee(TakerFees& s, uint8_t intent, int32_t price, int64_t quantity) const noexcept {
    if (base != FEE_PQ_CENTS) return fee(taker_bps, intent, price, quantity);
    if (taker_bps == 0) return 0;
    const __int128 exact = __int128{taker_bps} * amount(intent, price, quantity);
    s.exact += exact;
    const int64_t cents =
        std::max<int64_t>(0, std::min(round_cents(exact), round_cents(s.exact) - s.charged));
    s.charged += cents;
    return cents * CENT;
  }
  /// The fee reserve of a buy by cash with this budget: the taker rate on the
  /// whole budget (twice it on FEE_PQ_CENTS), which bounds its fee on any base
  /// (docs/matchcore.md §8).
  int64_t budget_fee_reserve(int64_t budget) const noexcept {
    return static_cast<int64_t>((__int128{bound_factor() * taker_bps} * budget + 9'999) / 10'000);
  }
  /// What a buy reserves per lot at its limit: the token's price and a bound
  /// of the fee at the highest rate, ceil(factor * f * B_lot / D), so that any
  /// fill of whole lots at the limit or better is covered (docs/matchcore.md §8).
  int64_t lot_reserve(uint8_t intent, int32_t limit, int64_t lot) const noexcept {
    return token_price(intent, limit) * lot +
           scaled_fee(bound_factor() * reserve_bps(), intent, limit, lot, true);
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
    const uint32_t slot = find(account, market);
    return slot != NIL ? slot : create(account, market);
  }
  /// A new empty position for a pair that has none (find() said so); NIL when the table is full.
  uint32_t create(uint32_t account, uint32_t market) noexcept {
    if (free_head_ == NIL) return NIL;
    const uint32_t slot = free_head_;
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
  /// Cache hints: the index entry find() reads first, and a position's slot.
  void prefetch_find(uint32_t account, uint32_t market) const noexcept {
    index_.prefetch(key(account, market));
  }
  void prefetch(uint32_t slot) const noexcept { slots_.prefetch(slot); }
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
  HugeArray<Position> slots_;
  OrderIndex index_;
  uint32_t free_head_ = NIL;
  uint32_t live_ = 0;
};

}  // namespace matchcore
