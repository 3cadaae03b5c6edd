#include "queue/sharded_queue.h"

#include <algorithm>
#include <cassert>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/clock.h"
#include "schemas/codec.h"

namespace yard {

size_t ShardOfKey(std::string_view key, size_t shards) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<size_t>(h % shards);
}

namespace {

// Adds `from` (one shard's DescribeStats) into `into`: numbers add up,
// flags are or-ed, the rest is the first shard's; the lease and the fence
// are not sums (the largest is kept).
void AddUp(nlohmann::json* into, const nlohmann::json& from) {
  for (auto it = from.begin(); it != from.end(); ++it) {
    auto mine = into->find(it.key());
    if (mine == into->end()) {
      (*into)[it.key()] = it.value();
    } else if (it->is_object() && mine->is_object()) {
      AddUp(&*mine, *it);
    } else if (it.key() == "lease_ms" || it.key() == "fence") {
      *mine = std::max(*mine, *it);
    } else if (it->is_number_unsigned() && mine->is_number_unsigned()) {
      *mine = mine->get<uint64_t>() + it->get<uint64_t>();
    } else if (it->is_number_integer() && mine->is_number_integer()) {
      *mine = mine->get<int64_t>() + it->get<int64_t>();
    } else if (it->is_boolean() && mine->is_boolean()) {
      *mine = mine->get<bool>() || it->get<bool>();
    }
  }
}

class ShardedQueue final : public DurableQueue {
 public:
  ShardedQueue(std::vector<std::unique_ptr<DurableQueue>> shards,
               const ShardedQueueOptions& options)
      : shards_(std::move(shards)),
        options_(options),
        polled_(shards_.size()),
        cool_until_(shards_.size(), 0) {
    assert(shards_.size() >= 2);
  }
  // The shards first: ending them answers their pending pushes, whose
  // callbacks use the members below.
  ~ShardedQueue() override { shards_.clear(); }

  void Push(std::span<const NewJob> jobs, PushCallback done) override {
    if (jobs.empty()) {
      done(Status::OK(), {});
      return;
    }
    // Which shard each job goes to; plain jobs share one.
    const size_t plain_shard = NextAvailable();
    // Usually the whole batch goes to one shard: hand it over as it is.
    const size_t first = ShardOf(jobs[0], plain_shard);
    if (std::all_of(jobs.begin() + 1, jobs.end(), [&](const NewJob& j) {
          return ShardOf(j, plain_shard) == first;
        })) {
      shards_[first]->Push(jobs,
                           [this, first, done = std::move(done)](
                               Status st, std::span<const PushOutcome> out) {
                             Refused(first, st);
                             done(st, out);
                           });
      return;
    }
    struct Batch {
      std::vector<PushOutcome> out;
      PushCallback done;
      size_t waiting = 0;
      Status status;
    };
    auto batch = std::make_shared<Batch>();
    batch->out.assign(jobs.size(), PushOutcome::kAccepted);
    batch->done = std::move(done);
    std::vector<std::vector<size_t>> index(shards_.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      index[ShardOf(jobs[i], plain_shard)].push_back(i);
    }
    std::vector<size_t> used;
    for (size_t k = 0; k < shards_.size(); ++k) {
      if (!index[k].empty()) used.push_back(k);
    }
    batch->waiting = used.size();
    for (size_t k : used) {
      std::vector<NewJob> part;
      part.reserve(index[k].size());
      for (size_t i : index[k]) part.push_back(jobs[i]);
      shards_[k]->Push(part, [this, k, batch, positions = std::move(index[k])](
                                 Status st,
                                 std::span<const PushOutcome> outcomes) {
        if (!st.ok() && batch->status.ok()) batch->status = st;
        Refused(k, st);
        for (size_t i = 0; i < positions.size() && i < outcomes.size(); ++i) {
          batch->out[positions[i]] = outcomes[i];
        }
        if (--batch->waiting == 0) batch->done(batch->status, batch->out);
      });
    }
  }

  void Claim(size_t max, ClaimCallback done) override {
    claimed_.clear();
    const size_t n = shards_.size();
    const size_t start = next_claim_;
    next_claim_ = (next_claim_ + 1) % n;
    // An equal share from each shard first, then whatever is left from any.
    for (int pass = 0; pass < 2 && claimed_.size() < max; ++pass) {
      for (size_t i = 0; i < n && claimed_.size() < max; ++i) {
        const size_t k = (start + i) % n;
        size_t take = max - claimed_.size();
        if (pass == 0) take = std::min(take, (max + n - 1) / n);
        shards_[k]->Claim(take, [&](std::span<const ClaimedJob> jobs) {
          for (const ClaimedJob& j : jobs) {
            auto [it, fresh] =
                owner_.try_emplace(j.id, static_cast<uint32_t>(k));
            if (!fresh && it->second != k) {
              // A second copy of a job this broker runs already (a resend
              // that went to another shard): drop it, as one shard drops a
              // duplicate it holds. The first copy runs (or is retried).
              duplicates_.push_back({k, j.id});
              continue;
            }
            claimed_.push_back(j);
          }
        });
        // Every JobQueue answers Claim before it returns (job_queue.h).
      }
    }
    for (const auto& [k, id] : duplicates_) {
      const JobId one[] = {id};
      shards_[k]->Release(one);
      shards_[k]->Cancel(one, nullptr);
      ++dup_dropped_;
    }
    duplicates_.clear();
    // The views stay valid: they point into the shards' leases, which live
    // until the job is finished or released.
    if (!claimed_.empty()) done(claimed_);
  }

  void Complete(const JobId& id, Bytes result) override {
    if (DurableQueue* q = TakeOwner(id)) {
      q->Complete(id, result);
    } else {
      ++stale_;  // not handed out here (or already finished)
    }
  }

  void Fail(const JobId& id, int64_t retry_at_ms, Bytes result) override {
    if (DurableQueue* q = TakeOwner(id)) {
      q->Fail(id, retry_at_ms, result);
    } else {
      ++stale_;
    }
  }

  void Release(std::span<const JobId> ids) override {
    std::vector<std::vector<JobId>> by_shard(shards_.size());
    for (const JobId& id : ids) {
      auto it = owner_.find(id);
      if (it == owner_.end()) continue;
      by_shard[it->second].push_back(id);
      owner_.erase(it);  // claimed again, it is mapped again
    }
    for (size_t k = 0; k < shards_.size(); ++k) {
      if (!by_shard[k].empty()) shards_[k]->Release(by_shard[k]);
    }
  }

  std::optional<std::string_view> WaitingRoute(const JobId& id) const override {
    for (const auto& q : shards_) {
      if (auto route = q->WaitingRoute(id)) return route;
    }
    return std::nullopt;
  }

  size_t Cancel(std::span<const JobId> ids,
                std::vector<JobId>* removed) override {
    // A job may wait in two shards (a resend): each copy is removed, and
    // the id reported once.
    std::vector<JobId> all;
    for (auto& q : shards_) q->Cancel(ids, &all);
    std::unordered_map<JobId, bool, JobIdHash> seen;
    size_t n = 0;
    for (const JobId& id : all) {
      if (!seen.emplace(id, true).second) continue;
      ++n;
      if (removed) removed->push_back(id);
    }
    return n;
  }

  bool CancelWaiting(const JobId& id, Bytes result) override {
    // One result, from the first shard that holds it; a resend's second
    // copy is only removed.
    bool done = false;
    for (auto& q : shards_) {
      if (!done) {
        done = q->CancelWaiting(id, result);
      } else {
        q->Cancel({&id, 1}, nullptr);
      }
    }
    return done;
  }

  bool HasReady(int64_t now_ms) override {
    for (auto& q : shards_) {
      if (q->HasReady(now_ms)) return true;
    }
    return false;
  }

  void DrainWaiting(const std::function<void(const ClaimedJob&)>& fn) override {
    for (auto& q : shards_) q->DrainWaiting(fn);
  }

  QueueStats Stats() const override {
    QueueStats s;
    for (const auto& q : shards_) {
      QueueStats t = q->Stats();
      s.ready += t.ready;
      s.delayed += t.delayed;
      s.leased += t.leased;
      s.capacity += t.capacity;
    }
    return s;
  }

  bool available() const override {
    for (const auto& q : shards_) {
      if (q->available()) return true;
    }
    return false;
  }

  void SetResultSink(ResultSink sink) override {
    for (auto& q : shards_) q->SetResultSink(sink);
  }

  void SetCancelSink(CancelSink sink) override {
    for (auto& q : shards_) q->SetCancelSink(sink);
  }

  // A job's shard is not known from its id: every shard records the cancel
  // (the ones that never see the job forget it with the hash's expiry). A
  // shard that holds the job delayed and refuses decides the answer.
  void RequestCancel(std::span<const JobId> ids, const Canceller& who,
                     CancelCallback done) override {
    struct Merge {
      std::vector<CancelAnswer> out;
      size_t left = 0;
      CancelCallback done;
    };
    auto m = std::make_shared<Merge>();
    m->out.assign(ids.size(), CancelAnswer::kUnavailable);
    m->left = shards_.size();
    m->done = std::move(done);
    for (auto& q : shards_) {
      q->RequestCancel(ids, who, [m](std::span<const CancelAnswer> got) {
        for (size_t i = 0; i < got.size() && i < m->out.size(); ++i) {
          // Forbidden, then Requested, then Full, then Unavailable.
          m->out[i] = std::min(m->out[i], got[i], [](auto a, auto b) {
            auto rank = [](CancelAnswer x) {
              return x == CancelAnswer::kForbidden   ? 0
                     : x == CancelAnswer::kRequested ? 1
                     : x == CancelAnswer::kFull      ? 2
                                                     : 3;
            };
            return rank(a) < rank(b);
          });
        }
        if (--m->left == 0) m->done(m->out);
      });
    }
  }

  void StoreProgress(const JobId& id, float fraction,
                     std::string_view message) override {
    auto it = owner_.find(id);
    if (it != owner_.end()) {
      shards_[it->second]->StoreProgress(id, fraction, message);
    }
  }

  std::string_view OwnerKey(const JobId& id) const override {
    for (const auto& q : shards_) {
      std::string_view key = q->OwnerKey(id);
      if (!key.empty()) return key;
    }
    return {};
  }

  void Want(size_t n) override {
    const size_t share = (n + shards_.size() - 1) / shards_.size();
    for (auto& q : shards_) q->Want(share);
  }

  int PollItems(zmq_pollitem_t* items, int max) override {
    int total = 0;
    for (size_t k = 0; k < shards_.size(); ++k) {
      polled_[k] = shards_[k]->PollItems(items + total, max - total);
      total += polled_[k];
    }
    return total;
  }

  void OnPollEvents(const zmq_pollitem_t* items, int n) override {
    int at = 0;
    for (size_t k = 0; k < shards_.size() && at < n; ++k) {
      const int mine = std::min(polled_[k], n - at);
      shards_[k]->OnPollEvents(items + at, mine);
      at += mine;
    }
  }

  void Tick(int64_t now_mono_ms) override {
    for (auto& q : shards_) q->Tick(now_mono_ms);
  }

  void BeginDrain() override {
    for (auto& q : shards_) q->BeginDrain();
  }

  bool Drained() const override {
    for (const auto& q : shards_) {
      if (!q->Drained()) return false;
    }
    return true;
  }

  void DescribeStats(nlohmann::json* j) const override {
    nlohmann::json sum = nlohmann::json::object();
    nlohmann::json each = nlohmann::json::array();
    int up = 0;
    for (const auto& q : shards_) {
      nlohmann::json one = nlohmann::json::object();
      q->DescribeStats(&one);
      up += q->available() ? 1 : 0;
      AddUp(&sum, one);
      each.push_back(one.value("durable", nlohmann::json::object()));
    }
    for (auto it = sum.begin(); it != sum.end(); ++it) (*j)[it.key()] = *it;
    if (j->contains("durable")) {
      auto& d = (*j)["durable"];
      // "up": every shard's primary; "partial": some (submits go to the
      // others); "down": none.
      d["redis"] = up == static_cast<int>(shards_.size()) ? "up"
                   : up > 0                               ? "partial"
                                                          : "down";
      d["shards_up"] = up;
      d["shards"] = std::move(each);
      auto& c = d["counters"];
      c["stale"] = c.value("stale", uint64_t{0}) + stale_;
      c["duplicates_dropped"] =
          c.value("duplicates_dropped", uint64_t{0}) + dup_dropped_;
    }
  }

  void Advertise(const nlohmann::json& record) override {
    // Each shard keeps the record alive from its own connections (one
    // primary down does not take the broker out of the registry).
    for (auto& q : shards_) q->Advertise(record);
  }

 private:
  // A shard that refused a push (its primary down, its slot migrating) gets
  // no plain batches for a while.
  void Refused(size_t k, const Status& st) {
    if (!st.ok()) cool_until_[k] = MonoMillis() + kCoolMs;
  }

  // The next shard in turn whose store is up and that has not refused a
  // push lately; else the next that is up; else the next in turn.
  size_t NextAvailable() {
    const size_t n = shards_.size();
    const int64_t now = MonoMillis();
    for (bool fussy : {true, false}) {
      for (size_t i = 0; i < n; ++i) {
        const size_t k = (next_push_ + i) % n;
        if (shards_[k]->available() && (!fussy || cool_until_[k] <= now)) {
          next_push_ = (k + 1) % n;
          return k;
        }
      }
    }
    const size_t k = next_push_;
    next_push_ = (next_push_ + 1) % n;
    return k;
  }

  size_t ShardOf(const NewJob& j, size_t plain_shard) const {
    const auto* job = flatbuffers::GetRoot<wire::Job>(j.blob.bytes.data());
    auto key = [](const flatbuffers::String* s) {
      return s && s->size() > 0 ? std::string_view(s->data(), s->size())
                                : std::string_view();
    };
    if (auto k = key(job->lock_key()); !k.empty()) {
      return ShardOfKey(k, shards_.size());
    }
    if (auto k = key(job->idempotency_key()); !k.empty()) {
      return ShardOfKey(k, shards_.size());
    }
    if (options_.route_by_id) {
      return ShardOfKey(j.id.ToString(), shards_.size());
    }
    return plain_shard;
  }

  DurableQueue* TakeOwner(const JobId& id) {
    auto it = owner_.find(id);
    if (it == owner_.end()) return nullptr;
    DurableQueue* q = shards_[it->second].get();
    owner_.erase(it);
    return q;
  }

  std::vector<std::unique_ptr<DurableQueue>> shards_;
  const ShardedQueueOptions options_;
  std::vector<int> polled_;  // poll items per shard, last PollItems
  // Until when (MonoMillis) each shard gets no plain batches.
  static constexpr int64_t kCoolMs = 1000;
  std::vector<int64_t> cool_until_;
  std::unordered_map<JobId, uint32_t, JobIdHash> owner_;
  std::vector<ClaimedJob> claimed_;
  std::vector<std::pair<size_t, JobId>> duplicates_;  // during a Claim
  size_t next_push_ = 0;
  size_t next_claim_ = 0;
  uint64_t stale_ = 0;
  uint64_t dup_dropped_ = 0;
};

}  // namespace

std::unique_ptr<DurableQueue> NewShardedQueue(
    std::vector<std::unique_ptr<DurableQueue>> shards,
    const ShardedQueueOptions& options) {
  return std::make_unique<ShardedQueue>(std::move(shards), options);
}

}  // namespace yard
