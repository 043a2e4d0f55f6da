// matchcore/huge_array.hpp — the engine's large tables, allocated once, on huge pages.
//
// Why: an engine sized for a venue is a gigabyte of tables (order slots, price
// levels, positions, the indexes) that commands reach at random. On 4 KiB pages
// nearly every such access also misses the TLB, and the page walk is itself a
// miss (on a VM, through two levels of page tables). A table of 2 MiB or more
// is allocated 2 MiB-aligned and advised MADV_HUGEPAGE, so that the kernel backs
// it with 2 MiB pages where it can (transparent huge pages in `madvise` or
// `always` mode): the whole gigabyte then fits in the TLB's second level. The
// advice is a hint: where THP is off, or elsewhere than Linux, the table is an
// ordinary allocation of 4 KiB pages and nothing else changes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace matchcore {

/// Asks the cache for the line holding `p` (a hint: never faults, p may be stale).
/// An asm statement, not __builtin_prefetch: GCC finds a function whose only
/// effects are __builtin_prefetch "pure" and deletes calls to it (measured: the
/// prefetches of Engine::process() were gone from the binary).
inline void prefetch_line(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
  asm volatile("" : : "r"(p) : "memory");
#endif
}

/// prefetch_line() for a line about to be written: fetched in the exclusive
/// state (prefetchw), so the store finds it owned.
inline void prefetch_line_write(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
  asm volatile("" : : "r"(p) : "memory");
#endif
}

/// A fixed-size array of trivially copyable records: assign() allocates and
/// fills it, nothing resizes it afterwards.
template <class T>
class HugeArray {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  static constexpr size_t HUGE_PAGE = size_t{2} << 20;
  static constexpr size_t LINE = 64;

  HugeArray() = default;
  HugeArray(const HugeArray&) = delete;
  HugeArray& operator=(const HugeArray&) = delete;
  ~HugeArray() { std::free(data_); }

  /// Replaces the contents with `count` copies of `value` (std::bad_alloc when
  /// the memory is not there).
  void assign(size_t count, const T& value) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    const size_t bytes = std::max<size_t>(count * sizeof(T), 1);
    void* memory;
    if (bytes >= HUGE_PAGE) {
      const size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
      memory = std::aligned_alloc(HUGE_PAGE, rounded);
#if defined(MADV_HUGEPAGE)
      if (memory) madvise(memory, rounded, MADV_HUGEPAGE);  // refused: 4 KiB pages, still correct
#endif
    } else {  // cache-line aligned, so that prefetch() knows which lines an element spans
      memory = std::aligned_alloc(LINE, (bytes + LINE - 1) / LINE * LINE);
    }
    if (!memory) throw std::bad_alloc();
    data_ = static_cast<T*>(memory);
    std::uninitialized_fill_n(data_, count, value);  // first touch: the pages are mapped here
    size_ = count;
  }

  size_t size() const noexcept { return size_; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  T& operator[](size_t i) noexcept { return data_[i]; }
  const T& operator[](size_t i) const noexcept { return data_[i]; }
  /// Asks for the lines of element i (prefetch_line()): one when elements tile
  /// the lines, else its first and last byte's.
  void prefetch(size_t i) const noexcept {
    prefetch_line(data_ + i);
    if constexpr (LINE % sizeof(T) != 0) {
      prefetch_line(reinterpret_cast<const char*>(data_ + i) + sizeof(T) - 1);
    }
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace matchcore
