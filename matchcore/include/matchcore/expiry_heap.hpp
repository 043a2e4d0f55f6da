// matchcore/expiry_heap.hpp — resting GTD orders ordered by (expiry, order id).
//
// Expiry is driven by command time, never the wall clock, so replays are
// exact. Each command only compares its time with the heap's top.
//
// Lazy deletion: an order that leaves the book before it expires (a cancel, a
// fill) leaves its entry in the heap, and the entry is dropped when it reaches
// the top (its id then names no resting order: OrderPool::find). Removing it
// from the middle instead moves entries, and each move had to write the moved
// order's heap position into its slot, a cold line per level (15% of SCALE's
// time). Nothing outside the heap is written now. The top is always a resting
// order's (when that order leaves, it is popped with the stale entries under
// it), so next_expiry() is exact and expire_due() never meets a stale entry.
//
// A 4-ary heap of 16-byte entries, offset so that the four children of a node
// share one cache line: half the depth of a binary heap, one line per level.
//
// Stale entries take room: the heap holds 2 * max_orders entries, and when it
// is full it drops its stale ones (at most max_orders entries are live), so the
// sweeps are at least max_orders pushes apart.
//
// The expiry of a resting GTD order is also kept by slot, for the queries and
// the snapshot (the order slot is one cache line and has no room for it).
#pragma once

#include <algorithm>
#include <cstdint>

#include "huge_array.hpp"
#include "order_pool.hpp"

namespace matchcore {

class ExpiryHeap {
 public:
  struct Entry {
    int64_t expiry;
    uint64_t order_id;
  };

  void init(uint32_t max_orders) {
    capacity_ = uint64_t{2} * max_orders;
    heap_.assign(capacity_ + OFFSET, Entry{0, 0});
    by_slot_.assign(max_orders, 0);
    size_ = 0;
  }
  bool empty() const noexcept { return size_ == 0; }
  /// Entries, stale ones included.
  uint64_t size() const noexcept { return size_; }
  uint64_t capacity() const noexcept { return capacity_; }
  const Entry& top() const noexcept { return at(0); }
  const Entry& at(uint64_t pos) const noexcept { return heap_[pos + OFFSET]; }
  /// The expiry of the resting GTD order in `slot`.
  int64_t expiry(uint32_t slot) const noexcept { return by_slot_[slot]; }
  size_t bytes() const noexcept {
    return heap_.size() * sizeof(Entry) + by_slot_.size() * sizeof(int64_t);
  }

  /// A GTD order now resting in `slot` (its id is in the pool).
  void push(const OrderPool& pool, uint32_t slot, int64_t expiry) noexcept {
    by_slot_[slot] = expiry;
    if (size_ == capacity_) drop_stale(pool);
    sift_up(size_++, Entry{expiry, pool[slot].order_id});
  }

  /// The GTD order `order_id` leaves the book: if it is the top, it goes, and so
  /// do the stale entries that come up after it.
  void leave(const OrderPool& pool, uint64_t order_id) noexcept {
    if (size_ == 0 || top().order_id != order_id) return;
    do {
      pop();
    } while (size_ != 0 && pool.find(top().order_id) == NIL);
  }

  /// True when entry a must expire before entry b.
  static bool before(const Entry& a, const Entry& b) noexcept {
    return a.expiry < b.expiry || (a.expiry == b.expiry && a.order_id < b.order_id);
  }
  static uint64_t parent(uint64_t pos) noexcept { return (pos - 1) / ARITY; }

 private:
  static constexpr uint64_t ARITY = 4;
  // Children of pos are ARITY * pos + 1 .. + ARITY: stored at index + OFFSET they
  // start at a multiple of 4 entries, 64 bytes, and the array is line-aligned.
  static constexpr uint64_t OFFSET = ARITY - 1;
  static_assert(sizeof(Entry) * ARITY == HugeArray<Entry>::LINE);

  Entry& ref(uint64_t pos) noexcept { return heap_[pos + OFFSET]; }

  void pop() noexcept {
    const Entry last = at(--size_);
    if (size_ != 0) sift_down(0, last);
  }
  // Both take the entry by value: drop_stale() passes one of the heap's own.
  void sift_up(uint64_t pos, const Entry entry) noexcept {
    while (pos > 0 && before(entry, at(parent(pos)))) {
      ref(pos) = at(parent(pos));
      pos = parent(pos);
    }
    ref(pos) = entry;
  }
  void sift_down(uint64_t pos, const Entry entry) noexcept {
    for (;;) {
      const uint64_t first = ARITY * pos + 1;
      if (first >= size_) break;
      const uint64_t end = std::min(first + ARITY, size_);
      uint64_t best = first;
      for (uint64_t c = first + 1; c < end; ++c) {
        if (before(at(c), at(best))) best = c;
      }
      if (!before(at(best), entry)) break;
      ref(pos) = at(best);
      pos = best;
    }
    ref(pos) = entry;
  }
  /// Keeps the entries of resting orders only, and rebuilds the heap (O(size)).
  [[gnu::cold, gnu::noinline]] void drop_stale(const OrderPool& pool) noexcept {
    uint64_t kept = 0;
    for (uint64_t pos = 0; pos < size_; ++pos) {
      if (pool.find(at(pos).order_id) != NIL) ref(kept++) = at(pos);
    }
    size_ = kept;
    for (uint64_t pos = size_ > 1 ? parent(size_ - 1) + 1 : 0; pos-- > 0;) {
      sift_down(pos, at(pos));
    }
  }

  HugeArray<Entry> heap_;
  HugeArray<int64_t> by_slot_;
  uint64_t capacity_ = 0;
  uint64_t size_ = 0;
};

}  // namespace matchcore
