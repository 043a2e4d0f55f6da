// matchcore/hash_index.hpp — open-addressing maps from ids to order slots.
//
// Linear probing over a power-of-two table at most half full, so a lookup is
// one or two cache lines. Deletion shifts the following entries back instead
// of leaving tombstones, so the table never degrades under the churn of an
// order book (every order is inserted and erased once). Keys are hashed with a
// multiply-shift (Fibonacci hashing): order ids are sequential, and the
// multiplication spreads them over the table.
#pragma once

#include <cstdint>

#include "huge_array.hpp"
#include "types.hpp"

namespace matchcore {

/// Key of the client order id index: (account, client order id != 0).
struct ClientKey {
  uint64_t client_order_id;
  uint32_t account;
  bool operator==(const ClientKey& o) const noexcept {
    return client_order_id == o.client_order_id && account == o.account;
  }
};

struct OrderIdTraits {
  using Key = uint64_t;
  static constexpr bool empty(Key k) noexcept { return k == 0; }
  static constexpr uint64_t hash(Key k) noexcept { return k * 0x9E3779B97F4A7C15ull; }
};

struct ClientKeyTraits {
  using Key = ClientKey;
  static constexpr bool empty(const Key& k) noexcept { return k.client_order_id == 0; }
  static constexpr uint64_t hash(const Key& k) noexcept {
    uint64_t h = (k.client_order_id ^ (uint64_t{k.account} << 32 | k.account)) *
                 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
  }
};

template <class Traits>
class HashIndex {
 public:
  using Key = typename Traits::Key;

  /// Room for `max_entries` keys with the load factor kept at or below 1/2.
  void init(uint32_t max_entries) {
    uint32_t bits = 4;
    while ((uint64_t{1} << bits) < uint64_t{max_entries} * 2) ++bits;
    shift_ = 64 - bits;
    mask_ = (uint64_t{1} << bits) - 1;
    table_.assign(size_t{1} << bits, Entry{Key{}, NIL});
    size_ = 0;
  }

  /// The slot stored for `key`, or NIL.
  uint32_t find(const Key& key) const noexcept {
    for (uint64_t i = home(key);; i = (i + 1) & mask_) {
      const Entry& e = table_[i];
      if (Traits::empty(e.key)) return NIL;
      if (e.key == key) return e.slot;
    }
  }

  /// Inserts a key that is not present (callers check with find() first).
  void insert(const Key& key, uint32_t slot) noexcept {
    uint64_t i = home(key);
    while (!Traits::empty(table_[i].key)) i = (i + 1) & mask_;
    table_[i] = Entry{key, slot};
    ++size_;
  }

  /// Points a present key at another slot.
  void update(const Key& key, uint32_t slot) noexcept {
    uint64_t i = home(key);
    while (!(table_[i].key == key)) i = (i + 1) & mask_;
    table_[i].slot = slot;
  }

  /// Removes a present key, shifting later entries of its probe run back.
  void erase(const Key& key) noexcept {
    uint64_t i = home(key);
    while (!(table_[i].key == key)) i = (i + 1) & mask_;
    for (uint64_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (Traits::empty(table_[j].key)) break;
      uint64_t want = home(table_[j].key);
      // Move j into the hole at i unless j's home lies cyclically in (i, j].
      bool stays = (i <= j) ? (i < want && want <= j) : (i < want || want <= j);
      if (!stays) {
        table_[i] = table_[j];
        i = j;
      }
    }
    table_[i] = Entry{Key{}, NIL};
    --size_;
  }

  /// Hints the cache about the first entry find(key) reads.
  void prefetch(const Key& key) const noexcept { table_.prefetch(home(key)); }

  uint32_t size() const noexcept { return size_; }
  size_t bytes() const noexcept { return table_.size() * sizeof(Entry); }

  template <class F>
  void for_each(F&& f) const {
    for (const Entry& e : table_)
      if (!Traits::empty(e.key)) f(e.key, e.slot);
  }

 private:
  struct Entry {
    Key key;
    uint32_t slot;
  };
  uint64_t home(const Key& key) const noexcept { return Traits::hash(key) >> shift_; }

  HugeArray<Entry> table_;
  uint64_t mask_ = 0;
  uint32_t shift_ = 60;
  uint32_t size_ = 0;
};

using OrderIndex = HashIndex<OrderIdTraits>;
using ClientIndex = HashIndex<ClientKeyTraits>;

}  // namespace matchcore
