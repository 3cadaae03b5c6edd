// DoneCounter: a count of finished jobs that one thread can wait on.
//
// Add() is called once per outcome (on a producer's I/O thread) and costs an
// atomic increment; it makes a syscall only when a waiter sleeps and its
// target has been reached, so a submitting thread that waits for a free
// window slot is woken once per chunk of outcomes, not once per job.
//
//   DoneCounter done;
//   done.Add();                                  // any thread
//   done.WaitFor(submitted - window + 1, deadline_us);  // one waiter
//
// Thread-safety: Add and value from any thread; WaitFor from one thread at a
// time.
#ifndef YARD_COMMON_DONE_COUNTER_H_
#define YARD_COMMON_DONE_COUNTER_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "common/clock.h"

namespace yard {

class DoneCounter {
 public:
  void Add(uint64_t n = 1) {
    const uint64_t done = done_.fetch_add(n, std::memory_order_seq_cst) + n;
    if (waiting_.load(std::memory_order_seq_cst) &&
        done >= target_.load(std::memory_order_relaxed) &&
        waiting_.exchange(false, std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
  }

  uint64_t value() const { return done_.load(std::memory_order_seq_cst); }

  // Blocks until value() >= target or MonoMicros() >= deadline_us.
  void WaitFor(uint64_t target, int64_t deadline_us) {
    std::unique_lock<std::mutex> lock(mu_);
    target_.store(target, std::memory_order_relaxed);
    while (value() < target) {
      const int64_t left = deadline_us - MonoMicros();
      if (left <= 0) break;
      waiting_.store(true, std::memory_order_seq_cst);
      if (value() >= target) break;
      cv_.wait_for(lock, std::chrono::microseconds(left));
    }
    waiting_.store(false, std::memory_order_seq_cst);
  }

 private:
  std::atomic<uint64_t> done_{0};
  std::atomic<bool> waiting_{false};
  std::atomic<uint64_t> target_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace yard

#endif  // YARD_COMMON_DONE_COUNTER_H_
