// matchcore/level_bits.hpp — which price levels of one side are non-empty.
//
// When the best level empties, the next one must be found without walking up
// to 9,999 empty levels. One bit per level plus a summary bit per 64-level
// word turns that into at most a few word scans (count-trailing/leading-zero
// instructions): 157 words and 3 summary words cover tick 1; tick $0.001 needs
// 16 words. The words are inline in the market: no pointer to chase.
#pragma once

#include <cstdint>
#include <cstring>

#include "huge_array.hpp"
#include "types.hpp"

namespace matchcore {

class LevelBits {
 public:
  static constexpr uint32_t WORDS = (MAX_LEVELS_PER_SIDE + 63) / 64;  // 157
  static constexpr uint32_t SUMMARY_WORDS = (WORDS + 63) / 64;        // 3

  void clear_all() noexcept {
    std::memset(words_, 0, sizeof words_);
    std::memset(summary_, 0, sizeof summary_);
  }
  bool test(uint32_t i) const noexcept { return (words_[i >> 6] >> (i & 63)) & 1; }
  /// Hints the cache about the words set() and reset() of bit i touch.
  void prefetch(uint32_t i) const noexcept {
    prefetch_line(&words_[i >> 6]);
    prefetch_line(&summary_[i >> 12]);
  }
  void set(uint32_t i) noexcept {
    words_[i >> 6] |= uint64_t{1} << (i & 63);
    summary_[i >> 12] |= uint64_t{1} << ((i >> 6) & 63);
  }
  void reset(uint32_t i) noexcept {
    uint64_t& w = words_[i >> 6];
    w &= ~(uint64_t{1} << (i & 63));
    if (w == 0) summary_[i >> 12] &= ~(uint64_t{1} << ((i >> 6) & 63));
  }

  /// Lowest set index greater than `i` (i may be -1), or -1.
  int32_t next_above(int32_t i) const noexcept {
    uint32_t j = static_cast<uint32_t>(i + 1);
    if (j >= WORDS * 64) return -1;
    uint32_t w = j >> 6;
    uint64_t bits = words_[w] & (~uint64_t{0} << (j & 63));
    if (bits) return static_cast<int32_t>(w * 64 + __builtin_ctzll(bits));
    for (uint32_t s = w + 1; s < WORDS;) {  // next non-empty word via the summary
      uint64_t sb = summary_[s >> 6] & (~uint64_t{0} << (s & 63));
      if (sb) {
        uint32_t word = (s & ~63u) + __builtin_ctzll(sb);
        return static_cast<int32_t>(word * 64 + __builtin_ctzll(words_[word]));
      }
      s = (s & ~63u) + 64;
    }
    return -1;
  }

  /// Highest set index lower than `i` (i may be one past the end), or -1.
  int32_t next_below(int32_t i) const noexcept {
    if (i <= 0) return -1;
    uint32_t j = static_cast<uint32_t>(i - 1);
    uint32_t w = j >> 6;
    uint64_t bits = words_[w] & ((uint64_t{2} << (j & 63)) - 1);
    if (bits) return static_cast<int32_t>(w * 64 + 63 - __builtin_clzll(bits));
    for (int32_t s = static_cast<int32_t>(w) - 1; s >= 0;) {
      uint32_t su = static_cast<uint32_t>(s);
      uint64_t sb = summary_[su >> 6] & ((uint64_t{2} << (su & 63)) - 1);
      if (sb) {
        uint32_t word = (su & ~63u) + 63 - __builtin_clzll(sb);
        return static_cast<int32_t>(word * 64 + 63 - __builtin_clzll(words_[word]));
      }
      s = static_cast<int32_t>(su & ~63u) - 1;
    }
    return -1;
  }

 private:
  uint64_t words_[WORDS];
  uint64_t summary_[SUMMARY_WORDS];
};

}  // namespace matchcore
