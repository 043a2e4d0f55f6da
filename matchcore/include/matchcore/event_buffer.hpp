// matchcore/event_buffer.hpp — where the engine writes its events.
//
// A flat array of fixed-size records that callers copy out in bulk. Its
// capacity is reserved up front and only grows (doubling) when one batch
// produces more events than ever before, so the steady state allocates
// nothing. A fresh event is zeroed: fields an event type does not use are 0.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "types.hpp"

namespace matchcore {

class EventBuffer {
 public:
  EventBuffer() = default;
  EventBuffer(const EventBuffer&) = delete;
  EventBuffer& operator=(const EventBuffer&) = delete;
  ~EventBuffer() { std::free(data_); }

  void reserve(size_t capacity) {
    if (capacity <= capacity_) return;
    void* grown = std::realloc(data_, capacity * sizeof(Event));
    if (!grown) throw std::bad_alloc();
    data_ = static_cast<Event*>(grown);
    capacity_ = capacity;
  }

  /// Appends a zeroed event and returns it.
  Event& emit() {
    if (size_ == capacity_) reserve(capacity_ ? capacity_ * 2 : 1024);
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

  const Event* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  void truncate(size_t size) noexcept { size_ = size; }
  /// Drops the first `count` events (count <= size()), moving the rest to the front.
  void erase_front(size_t count) noexcept {
    std::memmove(data_, data_ + count, (size_ - count) * sizeof(Event));
    size_ -= count;
  }

 private:
  Event* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace matchcore
