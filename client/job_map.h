// Internal to the client library.
#ifndef YARD_CLIENT_JOB_MAP_H_
#define YARD_CLIENT_JOB_MAP_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/job_id.h"

namespace yard::internal {

// JobMap: the producer's index of in-flight jobs, JobId -> T* (never null).
// Open addressing with linear probing at load <= 1/2 and backward-shift
// deletion (no tombstones), Fibonacci hashing on top of JobIdHash (so
// sequential caller-chosen ids spread too): a lookup is one cache line in
// the common case, and there is no allocation per job. It grows, never
// shrinks.
//
// Thread-safety: none (the producer's I/O thread owns it).
template <typename T>
class JobMap {
 public:
  JobMap() { Rehash(1024); }
  size_t size() const { return size_; }

  T* Find(const JobId& id) const {
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.job == nullptr) return nullptr;
      if (e.id == id) return e.job;
    }
  }
  // False (and no change) when the id is present already.
  bool Insert(const JobId& id, T* job) {
    if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      Entry& e = slots_[i];
      if (e.job == nullptr) {
        e.id = id;
        e.job = job;
        ++size_;
        return true;
      }
      if (e.id == id) return false;
    }
  }
  void Erase(const JobId& id) {
    size_t i = Home(id);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].job == nullptr) return;
      if (slots_[i].id == id) break;
    }
    // Shift later members of the probe run back into the hole.
    for (size_t j = (i + 1) & mask_; slots_[j].job != nullptr;
         j = (j + 1) & mask_) {
      size_t home = Home(slots_[j].id);
      if (((i - home) & mask_) < ((j - home) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i].job = nullptr;
    --size_;
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (const Entry& e : slots_) {
      if (e.job) f(e.job);
    }
  }

 private:
  struct Entry {
    JobId id;
    T* job = nullptr;
  };
  size_t Home(const JobId& id) const {
    return static_cast<size_t>((JobIdHash()(id) * 0x9E3779B97F4A7C15ULL) >>
                               shift_);
  }
  void Rehash(size_t capacity) {
    std::vector<Entry> old = std::move(slots_);
    slots_.assign(capacity, Entry{});
    mask_ = capacity - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(capacity));
    size_ = 0;
    for (const Entry& e : old) {
      if (e.job) Insert(e.id, e.job);
    }
  }

  std::vector<Entry> slots_;
  size_t mask_ = 0;
  unsigned shift_ = 0;
  size_t size_ = 0;
};

}  // namespace yard::internal

#endif  // YARD_CLIENT_JOB_MAP_H_
