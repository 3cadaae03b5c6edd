// The in-memory JobQueue: bounded, ordered by priority, not durable.
//
// Layout: one hash map from id to entry (every job held), one FIFO of ids
// per priority level, and a min-heap of (time, id) for jobs that wait for a
// not-before time or a retry. FIFOs are cleaned lazily: an id whose entry is
// gone or leased is skipped when popped, so Cancel and Complete are O(1).
//
// Anti-starvation: queue/priority_levels.h.
#include <algorithm>
#include <array>
#include <deque>
#include <memory_resource>
#include <queue>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/priority_levels.h"

namespace yard {
namespace {

constexpr int kLevels = 3;

class MemoryQueue final : public JobQueue {
 public:
  explicit MemoryQueue(const MemoryQueueOptions& o) : options_(o) {
    // Small on purpose: a bucket array sized for the capacity would make
    // every lookup a cache miss; the map grows with what is really held.
    entries_.reserve(std::min<size_t>(o.capacity, 4096));
  }

  void Push(std::span<const NewJob> jobs, PushCallback done) override {
    outcomes_.clear();
    int64_t now = UnixMillis();
    for (const NewJob& j : jobs) {
      if (entries_.size() >= options_.capacity) {
        outcomes_.push_back(entries_.contains(j.id) ? PushOutcome::kDuplicate
                                                    : PushOutcome::kBusy);
        continue;
      }
      auto [it, inserted] = entries_.try_emplace(j.id);
      if (!inserted) {
        outcomes_.push_back(PushOutcome::kDuplicate);
        continue;
      }
      int level = std::min<int>(j.priority, kLevels - 1);
      Entry& e = it->second;
      e.blob = j.blob;
      e.route.assign(j.route);
      e.level = static_cast<uint8_t>(level);
      if (j.not_before_ms > now) {
        delayed_.push({j.not_before_ms, j.id});
        e.delayed = true;
        ++delayed_live_;
      } else {
        ready_[level].push_back(j.id);
      }
      outcomes_.push_back(PushOutcome::kAccepted);
    }
    done(Status::OK(), outcomes_);
  }

  void Claim(size_t max, ClaimCallback done) override {
    PromoteDue(UnixMillis());
    claimed_.clear();
    while (claimed_.size() < max) {
      Entry* e = nullptr;
      JobId id;
      if (!PopReady(&id, &e)) break;
      e->leased = true;
      ++e->attempt;
      ++leased_;
      claimed_.push_back(
          ClaimedJob{id, e->blob.bytes, e->attempt, e->route, true});
    }
    if (!claimed_.empty()) done(claimed_);
  }

  void Complete(const JobId& id, Bytes /*result*/) override {
    auto it = entries_.find(id);
    if (it != entries_.end()) Erase(it);
  }

  void Fail(const JobId& id, int64_t retry_at_ms, Bytes result) override {
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    if (retry_at_ms <= 0) {
      Complete(id, result);
      return;
    }
    Entry& e = it->second;
    if (e.leased) --leased_;
    e.leased = false;
    e.delayed = true;
    ++delayed_live_;
    delayed_.push({retry_at_ms, id});
  }

  void Release(std::span<const JobId> ids) override {
    for (const JobId& id : ids) {
      auto it = entries_.find(id);
      if (it == entries_.end() || !it->second.leased) continue;
      it->second.leased = false;
      --leased_;
      ready_[it->second.level].push_front(id);
    }
  }

  size_t Cancel(std::span<const JobId> ids,
                std::vector<JobId>* removed) override {
    size_t n = 0;
    for (const JobId& id : ids) {
      auto it = entries_.find(id);
      if (it == entries_.end() || it->second.leased) continue;
      Erase(it);
      if (removed) removed->push_back(id);
      ++n;
    }
    return n;
  }

  std::optional<std::string_view> WaitingRoute(const JobId& id) const override {
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.leased) return std::nullopt;
    return std::string_view(it->second.route);
  }

  bool HasReady(int64_t now_ms) override {
    if (!delayed_.empty() && delayed_.top().first <= now_ms) return true;
    // Ready FIFOs may hold stale ids; entries minus leased minus delayed is
    // exact.
    return entries_.size() > leased_ + DelayedCount();
  }

  void DrainWaiting(const std::function<void(const ClaimedJob&)>& fn) override {
    for (auto& [id, e] : entries_) {
      if (!e.leased) fn(ClaimedJob{id, e.blob.bytes, e.attempt, e.route, true});
    }
  }

  QueueStats Stats() const override {
    QueueStats s;
    s.leased = leased_;
    s.delayed = DelayedCount();
    s.ready = entries_.size() - leased_ - s.delayed;
    s.capacity = options_.capacity;
    return s;
  }

 private:
  struct Entry {
    Blob blob;
    std::string route;
    uint16_t attempt = 0;
    uint8_t level = 1;
    bool leased = false;
    bool delayed = false;
  };
  using Timed = std::pair<int64_t, JobId>;
  struct Later {
    bool operator()(const Timed& a, const Timed& b) const {
      return a.first > b.first;
    }
  };

  // delayed_ may hold stale ids (cancelled or completed); this counts live
  // delayed entries, kept exact by Erase and the delayed flag's setters.
  size_t DelayedCount() const { return delayed_live_; }

  using EntryMap = std::pmr::unordered_map<JobId, Entry, JobIdHash>;

  void Erase(EntryMap::iterator it) {
    if (it->second.leased) --leased_;
    if (it->second.delayed) --delayed_live_;
    entries_.erase(it);
  }

  void PromoteDue(int64_t now) {
    while (!delayed_.empty() && delayed_.top().first <= now) {
      JobId id = delayed_.top().second;
      delayed_.pop();
      auto it = entries_.find(id);
      if (it == entries_.end() || !it->second.delayed) continue;
      it->second.delayed = false;
      --delayed_live_;
      ready_[it->second.level].push_back(id);
    }
  }

  // Pops the next ready id by priority with the anti-starvation rule.
  bool PopReady(JobId* id, Entry** entry) {
    for (;;) {
      int level = PickLevel(ready_, options_.starvation_limit, &streak_);
      if (level < 0) return false;
      JobId candidate = ready_[level].front();
      ready_[level].pop_front();
      auto it = entries_.find(candidate);
      if (it == entries_.end() || it->second.leased || it->second.delayed)
        continue;
      *id = candidate;
      *entry = &it->second;
      return true;
    }
  }

  MemoryQueueOptions options_;
  // Map nodes come from a pool that recycles freed nodes: no malloc per job
  // in steady state.
  std::pmr::unsynchronized_pool_resource pool_;
  EntryMap entries_{&pool_};
  std::array<std::deque<JobId>, kLevels> ready_;
  std::priority_queue<Timed, std::vector<Timed>, Later> delayed_;
  size_t leased_ = 0;
  size_t delayed_live_ = 0;
  int streak_ = 0;
  std::vector<PushOutcome> outcomes_;
  std::vector<ClaimedJob> claimed_;
};

}  // namespace

std::unique_ptr<JobQueue> NewMemoryQueue(const MemoryQueueOptions& options) {
  return std::make_unique<MemoryQueue>(options);
}

}  // namespace yard
