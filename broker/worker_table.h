// WorkerTable: the broker's soft state about workers, ordered by expiry.
//
// Every worker shares one liveness window, so moving a worker to the back
// of a list whenever it is heard from keeps the list sorted by expiry, and
// expiring is popping from the front. (The Majordomo ports that kept workers
// in arrival order instead missed the second of two workers dying while the
// first kept beating; the tests cover that case.)
//
// Invariants:
//  1. order_ is sorted by expiry_ms, oldest first.
//  2. by_identity_ maps exactly the identities in order_.
//  3. serials are never reused, so a stale serial never names a new worker.
//
// Thread-safety: not thread-safe; owned by the broker loop.
#ifndef YARD_BROKER_WORKER_TABLE_H_
#define YARD_BROKER_WORKER_TABLE_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "balancer/placement.h"

namespace yard {

// A worker's credit never exceeds this: a peer that grants itself 2^32
// slots, or wraps its count with repeated grants, gets at most this many.
inline constexpr uint32_t kMaxWorkerCredit = 1u << 20;

// credit + more, saturating at kMaxWorkerCredit instead of wrapping.
inline uint32_t SaturatingAdd(uint32_t credit, uint32_t more) {
  return more >= kMaxWorkerCredit - std::min(credit, kMaxWorkerCredit)
             ? kMaxWorkerCredit
             : credit + more;
}

struct WorkerInfo {
  std::string identity;
  std::string name;
  uint64_t serial = 0;
  uint32_t credit = 0;       // jobs it may still be sent
  uint32_t outstanding = 0;  // jobs dispatched to it and not finished
  uint32_t capacity = 1;
  int64_t expiry_ms = 0;
  std::vector<std::string> tasks;
  std::vector<std::string> tags;
  std::vector<std::string> taints;
  Labels labels;          // tags and taints, compiled for placement
  bool labels_ok = true;  // false: labels it cannot state; it gets no jobs
  uint64_t key = 0;  // WorkerKey(name): the same at every broker (affinity)
  // Run timeouts (broker/run_timeouts.cc): its attempts timed out since it
  // last sent a result, and whether that put it in quarantine (no new jobs;
  // its credit is not counted).
  uint32_t timeouts_in_row = 0;
  bool quarantined = false;
  uint32_t taken_back = 0;  // timed-out attempts it has not answered yet
  // Its Dispatch being built (broker Dispatch): valid while out_epoch is
  // the broker's current one.
  uint64_t out_epoch = 0;
  size_t out_index = 0;
};

class WorkerTable {
 public:
  explicit WorkerTable(int64_t expiry_window_ms)
      : window_ms_(expiry_window_ms) {}

  WorkerInfo* Find(std::string_view identity);
  WorkerInfo* FindSerial(uint64_t serial);
  // Registers (or re-registers) a worker, fresh expiry.
  WorkerInfo* Upsert(std::string_view identity, int64_t now_ms);
  // Heard from: extend its expiry and move it to the back.
  void Touch(WorkerInfo* w, int64_t now_ms);
  // Removes every worker whose expiry passed, calling fn on each first.
  void Expire(int64_t now_ms, const std::function<void(const WorkerInfo&)>& fn);
  void Remove(std::string_view identity);

  size_t size() const { return order_.size(); }
  // Oldest expiry first.
  std::list<WorkerInfo>& workers() { return order_; }
  const std::list<WorkerInfo>& workers() const { return order_; }

 private:
  int64_t window_ms_;
  uint64_t next_serial_ = 1;
  std::list<WorkerInfo> order_;
  std::unordered_map<std::string, std::list<WorkerInfo>::iterator> by_identity_;
  std::unordered_map<uint64_t, std::list<WorkerInfo>::iterator> by_serial_;
};

}  // namespace yard

#endif  // YARD_BROKER_WORKER_TABLE_H_
