// matchcore/event_buffer.hpp — where the engine writes its events.
//
// A flat array of fixed-size records that callers copy out in bulk. Its
// capacity is reserved up front and only grows (doubling) when one batch
// produces more events than ever before, so the steady state allocates
// nothing. A fresh event is zeroed: fields an event type does not use are 0.
//
// A batch may instead write its events into a caller's region (attach()), so
// that they need no copy out: the events the buffer holds stay where they
// are, and if the region fills up, what the batch wrote there moves to the
// buffer, after them, and the batch goes on in the buffer (attached() false).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "types.hpp"

namespace matchcore {

/// What attach() needs of a region: the alignment of an Event.
inline constexpr size_t EVENT_ALIGNMENT = alignof(Event);

class EventBuffer {
 public:
  EventBuffer() = default;
  EventBuffer(const EventBuffer&) = delete;
  EventBuffer& operator=(const EventBuffer&) = delete;
  ~EventBuffer() { std::free(attached_ ? own_data_ : data_); }

  void reserve(size_t capacity) {
    if (capacity <= capacity_) return;
    void* grown = std::realloc(data_, capacity * sizeof(Event));
    if (!grown) throw std::bad_alloc();
    data_ = static_cast<Event*>(grown);
    capacity_ = capacity;
  }

  /// Appends a zeroed event and returns it.
  Event& emit() {
    if (size_ == capacity_) grow();
    Event& e = data_[size_++];
#if defined(__SSE2__)
    // Six 16-byte stores, written out: GCC turns a 96-byte memset, and even a
    // loop of stores, into `rep stos`, whose start-up costs more than the
    // stores themselves (measured: about 15% of a replace).
    static_assert(sizeof(Event) == 6 * sizeof(__m128i));
    const __m128i zero = _mm_setzero_si128();
    __m128i* words = reinterpret_cast<__m128i*>(&e);
    _mm_storeu_si128(words + 0, zero);
    _mm_storeu_si128(words + 1, zero);
    _mm_storeu_si128(words + 2, zero);
    _mm_storeu_si128(words + 3, zero);
    _mm_storeu_si128(words + 4, zero);
    _mm_storeu_si128(words + 5, zero);
#else
    std::memset(&e, 0, sizeof e);
#endif
    return e;
  }

  /// The next events go to `region` (room for `room` events, aligned to
  /// EVENT_ALIGNMENT, not overlapping the buffer) until detach(). data(),
  /// size(), truncate() and erase_front() are the region's meanwhile; no
  /// reserve() until then.
  void attach(Event* region, size_t room) noexcept {
    own_data_ = data_;
    own_size_ = size_;
    own_capacity_ = capacity_;
    data_ = region;
    size_ = 0;
    capacity_ = room;
    attached_ = true;
  }
  /// Whether the events go to the region: false once it filled up and the
  /// events written since attach() moved to the buffer, after those it held.
  bool attached() const noexcept { return attached_; }
  /// Back to the buffer, the events written to the region left there; a no-op
  /// once the region spilled.
  void detach() noexcept {
    if (!attached_) return;
    data_ = own_data_;
    size_ = own_size_;
    capacity_ = own_capacity_;
    attached_ = false;
  }

  const Event* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  void truncate(size_t size) noexcept { size_ = size; }
  /// Drops the first `count` events (count <= size()), moving the rest to the front.
  void erase_front(size_t count) noexcept {
    std::memmove(data_, data_ + count, (size_ - count) * sizeof(Event));
    size_ -= count;
  }

 private:
  /// Full: the buffer doubles, or an attached region spills into the buffer. Out
  /// of line, so that emit() stays one compare.
  [[gnu::noinline, gnu::cold]] void grow() {
    if (!attached_) {
      reserve(capacity_ ? capacity_ * 2 : 1024);
      return;
    }
    size_t capacity = own_capacity_ ? own_capacity_ : 1024;
    while (capacity < own_size_ + size_ + 1) capacity *= 2;
    if (capacity > own_capacity_) {  // before anything moves: bad_alloc leaves it attached
      void* grown = std::realloc(own_data_, capacity * sizeof(Event));
      if (!grown) throw std::bad_alloc();
      own_data_ = static_cast<Event*>(grown);
      own_capacity_ = capacity;
    }
    if (size_) std::memcpy(own_data_ + own_size_, data_, size_ * sizeof(Event));
    own_size_ += size_;
    detach();
  }

  Event* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  // The buffer's own array while a region is attached.
  Event* own_data_ = nullptr;
  size_t own_size_ = 0;
  size_t own_capacity_ = 0;
  bool attached_ = false;
};

}  // namespace matchcore
