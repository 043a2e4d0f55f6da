// matchcore/order_pool.hpp — resting orders in a preallocated pool of slots.
//
// Why a pool: an order book churns through orders (most are canceled or
// replaced within milliseconds), so orders live in one array allocated once,
// addressed by 32-bit slot indices (half the size of pointers, stable across a
// snapshot/restore, and cheap to store in intrusive lists). Free slots form a
// LIFO free list threaded through `next`, so the slot just freed, still in
// cache, is the next one used. A slot is exactly one cache line.
#pragma once

#include <cstdint>
#include <vector>

#include "types.hpp"

namespace matchcore {

/// One resting order. `prev`/`next` link the FIFO of its price level,
/// `acct_prev`/`acct_next` the list of its account's orders (in acceptance
/// order, hence ascending order id), `heap_pos` its entry in the expiry heap,
/// which holds a GTD order's expiry time.
struct Order {
  uint64_t order_id;
  uint64_t client_order_id;
  int64_t leaves_qty;
  uint32_t account;
  uint32_t market;
  uint32_t prev;
  uint32_t next;
  uint32_t acct_prev;
  uint32_t acct_next;
  uint32_t heap_pos;  ///< NIL unless GTD
  int32_t price;
  uint8_t intent;
  uint8_t tif;
  uint8_t stp;
  uint8_t flags;
};
static_assert(sizeof(Order) == 64, "an order slot should be one cache line");

class OrderPool {
 public:
  void init(uint32_t capacity) {
    slots_.assign(capacity, Order{});
    free_head_ = NIL;
    for (uint32_t i = capacity; i-- > 0;) {
      slots_[i].next = free_head_;
      free_head_ = i;
    }
    live_ = 0;
  }
  /// A free slot, or NIL when the pool is full.
  uint32_t allocate() noexcept {
    uint32_t slot = free_head_;
    if (slot != NIL) {
      free_head_ = slots_[slot].next;
      ++live_;
    }
    return slot;
  }
  void release(uint32_t slot) noexcept {
    slots_[slot].order_id = 0;  // marks the slot free for validate()
    slots_[slot].next = free_head_;
    free_head_ = slot;
    --live_;
  }
  bool full() const noexcept { return free_head_ == NIL; }
  uint32_t live() const noexcept { return live_; }
  uint32_t capacity() const noexcept { return static_cast<uint32_t>(slots_.size()); }
  Order& operator[](uint32_t slot) noexcept { return slots_[slot]; }
  const Order& operator[](uint32_t slot) const noexcept { return slots_[slot]; }

 private:
  std::vector<Order> slots_;
  uint32_t free_head_ = NIL;
  uint32_t live_ = 0;
};

}  // namespace matchcore
