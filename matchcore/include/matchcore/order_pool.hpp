// matchcore/order_pool.hpp — resting orders in a preallocated pool of slots,
// addressed by their order ids.
//
// Why a pool: an order book churns through orders (most are canceled or
// replaced within milliseconds), so orders live in one array allocated once,
// addressed by 32-bit slot indices (half the size of pointers, cheap to store
// in intrusive lists).
//
// Why ids name their slot: an order id `id` lives in slot `id % capacity`, so
// finding an order is one division (a mask when the capacity is a power of
// two) and one compare with the id stored in that slot: no index to probe,
// whatever the capacity. The engine gives a resting order the next id, counting
// from its id counter, whose slot is free (docs/matchcore.md §1): ids stay
// unique and ascending in acceptance order, and dense (they skip only the slots
// of orders still resting from a lap before). A stale id (its order left and
// another took the slot) or a forged one finds a slot holding another id or
// none, so it is unknown. Which slots are free is a bitmap with a summary
// level per 64 words, so the next free slot is found in a few word scans even
// in a pool that is nearly full; the ids to come follow from the set of resting
// ids and the counter alone, so a restored engine assigns the same ids.
#pragma once

#include <cstdint>
#include <vector>

#include "huge_array.hpp"
#include "types.hpp"

namespace matchcore {

/// One resting order. `prev`/`next` link the FIFO of its price level,
/// `acct_prev`/`acct_next` the list of its account's orders (in acceptance
/// order, hence ascending order id), `position` its slot in the position table
/// (ledger). A GTD order's expiry is in the expiry heap (expiry_heap.hpp).
struct Order {
  uint64_t order_id;  ///< 0 in a free slot
  uint64_t client_order_id;
  int64_t leaves_qty;
  uint32_t account;
  uint32_t market;
  uint32_t prev;
  uint32_t next;
  uint32_t acct_prev;
  uint32_t acct_next;
  uint32_t position;  ///< NIL without the ledger
  int32_t price;
  uint8_t intent;
  uint8_t tif;
  uint8_t stp;
  uint8_t flags;
};
static_assert(sizeof(Order) == 64, "an order slot should be one cache line");

/// A set of slot indices with "lowest member at or after i" in a few word scans:
/// one bit per slot, and above it levels of one bit per non-empty word below.
class SlotBits {
 public:
  static constexpr uint64_t NONE = ~uint64_t{0};

  void init(uint64_t size, bool all_set) {
    size_ = size;
    levels_.clear();
    uint64_t bits = size;
    do {
      const uint64_t words = (bits + 63) / 64;
      levels_.emplace_back(words, 0);
      bits = words;
    } while (bits > 1);
    if (!all_set) return;
    uint64_t members = size;  // level k has one member per word of level k - 1
    for (auto& words : levels_) {
      for (uint64_t w = 0; w < words.size(); ++w) {
        const uint64_t left = members - w * 64;
        words[w] = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
      }
      members = words.size();
    }
  }
  bool test(uint64_t i) const noexcept { return (levels_[0][i >> 6] >> (i & 63)) & 1; }
  void set(uint64_t i) noexcept {
    for (auto& words : levels_) {
      uint64_t& w = words[i >> 6];
      const bool was_empty = w == 0;
      w |= uint64_t{1} << (i & 63);
      if (!was_empty) return;
      i >>= 6;
    }
  }
  void reset(uint64_t i) noexcept {
    for (auto& words : levels_) {
      uint64_t& w = words[i >> 6];
      w &= ~(uint64_t{1} << (i & 63));
      if (w != 0) return;
      i >>= 6;
    }
  }
  /// The lowest member >= i, or NONE.
  uint64_t next(uint64_t i) const noexcept {
    if (i >= size_) return NONE;
    size_t level = 0;
    for (;;) {  // up until a word holds a member at or after i
      const std::vector<uint64_t>& words = levels_[level];
      const uint64_t w = i >> 6;
      if (w >= words.size()) return NONE;
      const uint64_t bits = words[w] & (~uint64_t{0} << (i & 63));
      if (bits) {
        i = (w << 6) + static_cast<uint64_t>(__builtin_ctzll(bits));
        break;
      }
      if (++level == levels_.size()) return NONE;
      i = w + 1;
    }
    while (level-- > 0) {  // down to the lowest member under that bit
      i = (i << 6) + static_cast<uint64_t>(__builtin_ctzll(levels_[level][i]));
    }
    return i;
  }
  size_t bytes() const noexcept {
    size_t n = 0;
    for (const auto& words : levels_) n += words.size() * sizeof(uint64_t);
    return n;
  }

 private:
  std::vector<std::vector<uint64_t>> levels_;
  uint64_t size_ = 0;
};

class OrderPool {
 public:
  void init(uint32_t capacity) {
    slots_.assign(capacity, Order{});
    free_.init(capacity, true);
    capacity_ = capacity;
    pow2_ = (capacity & (capacity - 1)) == 0;
    mask_ = capacity - 1;
    live_ = 0;
  }
  /// The slot an order id lives in while it rests.
  uint32_t slot_of(uint64_t order_id) const noexcept {
    return static_cast<uint32_t>(pow2_ ? order_id & mask_ : order_id % capacity_);
  }
  /// The slot of the resting order with this id, or NIL.
  uint32_t find(uint64_t order_id) const noexcept {
    if (order_id == 0) return NIL;  // a free slot holds id 0
    const uint32_t slot = slot_of(order_id);
    return slots_[slot].order_id == order_id ? slot : NIL;
  }
  /// The smallest id >= `from` whose slot is free; the pool must not be full.
  uint64_t next_free_id(uint64_t from) const noexcept {
    const uint64_t start = slot_of(from);
    uint64_t slot = free_.next(start);
    if (slot != SlotBits::NONE) return from + (slot - start);
    return from + (capacity_ - start) + free_.next(0);  // round the ring
  }
  /// Takes the slot of `order_id` (free: next_free_id() chose it) and returns it.
  uint32_t occupy(uint64_t order_id) noexcept {
    const uint32_t slot = slot_of(order_id);
    free_.reset(slot);
    slots_[slot].order_id = order_id;
    ++live_;
    return slot;
  }
  void release(uint32_t slot) noexcept {
    slots_[slot].order_id = 0;
    free_.set(slot);
    --live_;
  }
  bool full() const noexcept { return live_ == capacity_; }
  bool is_free(uint32_t slot) const noexcept { return free_.test(slot); }
  uint32_t live() const noexcept { return live_; }
  uint32_t capacity() const noexcept { return capacity_; }
  size_t map_bytes() const noexcept { return free_.bytes(); }
  /// Hints the cache about the slot of an id about to be used.
  void prefetch(uint64_t order_id) const noexcept { slots_.prefetch(slot_of(order_id)); }
  void prefetch_slot(uint32_t slot) const noexcept { slots_.prefetch(slot); }
  /// Asks for the line of an id's slot for writing: the slot a new order will take.
  void prefetch_write(uint64_t order_id) const noexcept {
    prefetch_line_write(&slots_[slot_of(order_id)]);
  }
  Order& operator[](uint32_t slot) noexcept { return slots_[slot]; }
  const Order& operator[](uint32_t slot) const noexcept { return slots_[slot]; }

 private:
  HugeArray<Order> slots_;
  SlotBits free_;  ///< set: the slot is free
  uint32_t capacity_ = 0;
  uint32_t mask_ = 0;
  bool pow2_ = true;  ///< a power-of-two capacity: slot_of() masks instead of dividing
  uint32_t live_ = 0;
};

}  // namespace matchcore
