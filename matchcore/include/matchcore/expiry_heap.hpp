// matchcore/expiry_heap.hpp — resting GTD orders ordered by (expiry, order id).
//
// Expiry is driven by command time, never the wall clock, so replays are
// exact. Each command only compares its time with the heap's top. The expiry
// time lives here rather than in the order slot (which keeps the slot at one
// cache line, and sifting touches only this array); the slot holds its heap
// position, so an order that leaves the book early is removed from the middle
// of the heap and the heap never holds stale entries.
#pragma once

#include <cstdint>

#include "huge_array.hpp"
#include "order_pool.hpp"

namespace matchcore {

class ExpiryHeap {
 public:
  struct Entry {
    int64_t expiry;
    uint64_t order_id;
    uint32_t slot;
  };

  void init(uint32_t capacity) {
    heap_.assign(capacity, Entry{0, 0, NIL});
    size_ = 0;
  }
  bool empty() const noexcept { return size_ == 0; }
  uint32_t size() const noexcept { return size_; }
  const Entry& top() const noexcept { return heap_[0]; }
  const Entry& at(uint32_t pos) const noexcept { return heap_[pos]; }
  void prefetch(uint32_t pos) const noexcept { heap_.prefetch(pos); }
  /// The last entry and the children of pos: what remove() reads first.
  void prefetch_below(uint32_t pos) const noexcept {
    if (size_ == 0) return;
    heap_.prefetch(size_ - 1);
    const uint64_t child = uint64_t{2} * pos + 1;
    if (child < size_) heap_.prefetch(child);
  }
  size_t bytes() const noexcept { return heap_.size() * sizeof(Entry); }

  void push(OrderPool& pool, uint32_t slot, int64_t expiry) noexcept {
    uint32_t pos = size_++;
    place(pool, pos, Entry{expiry, pool[slot].order_id, slot});
    sift_up(pool, pos);
  }

  void remove(OrderPool& pool, uint32_t slot) noexcept {
    uint32_t pos = pool[slot].heap_pos;
    pool[slot].heap_pos = NIL;
    Entry last = heap_[--size_];
    if (pos == size_) return;
    place(pool, pos, last);
    if (!sift_up(pool, pos)) sift_down(pool, pos);
  }

  /// True when entry a must expire before entry b.
  static bool before(const Entry& a, const Entry& b) noexcept {
    return a.expiry < b.expiry || (a.expiry == b.expiry && a.order_id < b.order_id);
  }

 private:
  void place(OrderPool& pool, uint32_t pos, const Entry& entry) noexcept {
    heap_[pos] = entry;
    pool[entry.slot].heap_pos = pos;
  }
  bool sift_up(OrderPool& pool, uint32_t pos) noexcept {
    const Entry entry = heap_[pos];
    const uint32_t start = pos;
    while (pos > 0) {
      uint32_t parent = (pos - 1) / 2;
      if (!before(entry, heap_[parent])) break;
      place(pool, pos, heap_[parent]);
      pos = parent;
    }
    place(pool, pos, entry);
    return pos != start;
  }
  void sift_down(OrderPool& pool, uint32_t pos) noexcept {
    const Entry entry = heap_[pos];
    for (;;) {
      uint32_t child = 2 * pos + 1;
      if (child >= size_) break;
      if (child + 1 < size_ && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], entry)) break;
      place(pool, pos, heap_[child]);
      pos = child;
    }
    place(pool, pos, entry);
  }

  HugeArray<Entry> heap_;
  uint32_t size_ = 0;
};

}  // namespace matchcore
