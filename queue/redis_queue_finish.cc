// Finishes: Complete, Fail, Release and Cancel record their writes in this
// turn's batch (acks, locked completions, retries and dead letters,
// results, forwards to other brokers' inboxes), which Flush sends as one
// MULTI and resends after a reconnect when its outcome is unknown.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/redis_queue_impl.h"

namespace yard::redis_queue_internal {

void RedisQueue::Complete(const JobId& id, Bytes result) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    ++c_.stale;  // lease lost: the job was requeued and runs again
    return;
  }
  FinishJob(it, result, Outcome::kCompleted, 0);
}

void RedisQueue::Fail(const JobId& id, int64_t retry_at_ms, Bytes result) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    ++c_.stale;
    return;
  }
  FinishJob(it, result, retry_at_ms > 0 ? Outcome::kRetry : Outcome::kDead,
            retry_at_ms);
}

void RedisQueue::Release(std::span<const JobId> ids) {
  for (const JobId& id : ids) {
    auto it = leases_.find(id);
    if (it == leases_.end() || !it->second.dispatched) continue;
    it->second.dispatched = false;
    Buffer(id, it->second, /*front=*/true);
  }
}

std::optional<std::string_view> RedisQueue::WaitingRoute(
    const JobId& id) const {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.dispatched) return std::nullopt;
  auto e = entries_.find(it->second.entry);
  if (e == entries_.end()) return std::nullopt;
  // A job another broker accepted has its producer there.
  if (!e->second.inbox.empty()) return std::string_view();
  return std::string_view(e->second.route);
}

size_t RedisQueue::Cancel(std::span<const JobId> ids,
                          std::vector<JobId>* removed) {
  size_t n = 0;
  for (const JobId& id : ids) {
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.dispatched) continue;
    FinishJob(it, {}, Outcome::kDropped, 0);
    if (removed) removed->push_back(id);
    ++n;
  }
  return n;
}

bool RedisQueue::CancelWaiting(const JobId& id, Bytes result) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.dispatched) return false;
  FinishJob(it, result, Outcome::kCancelled, 0);
  return true;
}

// Records a job's end in this turn's write batch; its entry is acked
// with the batch once all of the entry's jobs are finished.
void RedisQueue::FinishJob(LeaseMap::iterator it, Bytes result, Outcome outcome,
                           int64_t retry_at_ms) {
  const JobId id = it->first;
  Lease lease = it->second;
  leases_.erase(it);
  if (!progress_.empty()) EndProgress(id, /*write_held=*/true);
  if (lease.buffered) --buffered_;
  auto e = entries_.find(lease.entry);
  if (e == entries_.end()) return;
  Entry& entry = e->second;
  if (outcome == Outcome::kRetry || outcome == Outcome::kDead) {
    AddFail(id, lease, entry, result, outcome, retry_at_ms);
  }
  // A retry keeps its record: the claim of its next attempt finds it.
  if (cancels_recorded_ && outcome != Outcome::kRetry) {
    batch_.uncancel.push_back(id.ToString());
  }
  if (outcome == Outcome::kCompleted) {
    ++batch_.completed;
    ++batch_.finished;
  } else if (outcome == Outcome::kDropped || outcome == Outcome::kCancelled) {
    ++batch_.finished;
  }  // a dead letter leaves `queued` inside yard_fail (bury)
  if (outcome != Outcome::kRetry && outcome != Outcome::kDropped &&
      !result.empty()) {
    if (o_.result_ttl_s > 0) {
      auto& shard = batch_.results[static_cast<size_t>(id.hi >> 60)];
      shard.push_back(id.ToString());
      shard.emplace_back(AsView(result));
    }
    if (!entry.inbox.empty()) {
      auto& fw = batch_.forwards[entry.inbox];
      fw.push_back("r");
      fw.push_back(entry.route);
      fw.push_back("p");
      fw.emplace_back(AsView(result));
    }
  }
  switch (outcome) {
    case Outcome::kCompleted:
      ++c_.completed;
      break;
    case Outcome::kRetry:
      ++c_.retried;
      break;
    case Outcome::kDead:
      ++c_.dead;
      break;
    case Outcome::kDropped:
    case Outcome::kCancelled:
      break;
  }
  if (--entry.open == 0) AckEntry(e);
}

// A yard_fail tuple for a job to retry (at retry_at_ms) or dead-letter.
void RedisQueue::AddFail(const JobId& id, const Lease& lease,
                         const Entry& entry, Bytes result, Outcome outcome,
                         int64_t retry_at_ms) {
  const auto* job = VerifiedRoot<wire::Job>(lease.blob);
  const auto* r = VerifiedRoot<wire::JobResult>(AsView(result));
  std::string p;
  PackJob(lease.blob, &p);
  auto& f = batch_.fails;
  f.push_back(std::to_string(entry.pri));
  f.push_back(lease.entry.ToString());
  f.push_back(std::to_string(outcome == Outcome::kRetry ? retry_at_ms : 0));
  f.push_back(r && r->error() ? r->error()->str() : "");
  f.push_back(id.ToString());
  f.push_back(std::to_string(entry.attempt));
  f.push_back(std::to_string(job ? std::max<int>(1, job->max_attempts()) : 1));
  f.push_back(entry.lock_key);
  f.push_back(entry.owner);
  f.push_back(entry.route);
  f.push_back(std::move(p));
  f.push_back(entry.owner_key);
}

void RedisQueue::AckEntry(EntryMap::iterator e) {
  const Entry& entry = e->second;
  if (entry.lock_key.empty()) {
    batch_.acks[entry.pri].push_back(e->first.ToString());
  } else {
    batch_.locked.push_back(std::to_string(entry.pri));
    batch_.locked.push_back(e->first.ToString());
    batch_.locked.push_back(entry.lock_key);
  }
  if (rereading_) reread_skip_.insert(e->first);
  entries_.erase(e);
}

// This turn's writes as one MULTI: one round trip per batch.
void RedisQueue::Flush() {
  if (!up_) return;
  for (auto& cmds : replay_) SendMulti(std::move(cmds));
  replay_.clear();
  if (batch_.empty()) return;
  WriteBatch b = std::move(batch_);
  batch_ = WriteBatch();
  Commands cmds;
  if (target_.kind == RedisTarget::Kind::kCluster) AddGuard(b, cmds);
  // Fails first: yard_fail checks that each failed job's entry is still
  // pending for this consumer, which the acks below end.
  if (!b.fails.empty()) {
    auto args = keys_.Fcall("yard_fail");
    args.push_back(kRedisGroup);
    args.push_back(consumer_);
    args.insert(args.end(), std::make_move_iterator(b.fails.begin()),
                std::make_move_iterator(b.fails.end()));
    cmds.push_back(std::move(args));
  }
  for (int p = 0; p < kLevels; ++p) {
    if (b.acks[p].empty()) continue;
    std::vector<std::string> ack = {"XACK", keys_.stream[p], kRedisGroup};
    std::vector<std::string> del = {"XDEL", keys_.stream[p]};
    ack.insert(ack.end(), b.acks[p].begin(), b.acks[p].end());
    del.insert(del.end(), b.acks[p].begin(), b.acks[p].end());
    cmds.push_back(std::move(ack));
    cmds.push_back(std::move(del));
  }
  if (!b.locked.empty()) {
    auto args = keys_.Fcall("yard_complete_locked");
    args.push_back(kRedisGroup);
    args.insert(args.end(), std::make_move_iterator(b.locked.begin()),
                std::make_move_iterator(b.locked.end()));
    cmds.push_back(std::move(args));
  }
  AddResults(b, cmds);
  for (auto& c : b.progress) cmds.push_back(std::move(c));
  if (!b.uncancel.empty()) {
    std::vector<std::string> hdel = {"HDEL", keys_.cancels};
    hdel.insert(hdel.end(), std::make_move_iterator(b.uncancel.begin()),
                std::make_move_iterator(b.uncancel.end()));
    cmds.push_back(std::move(hdel));
  }
  for (auto& [inbox, fields] : b.forwards) {
    std::vector<std::string> xadd = {"XADD", inbox,        "MAXLEN",
                                     "~",    kInboxMaxLen, "*"};
    xadd.insert(xadd.end(), std::make_move_iterator(fields.begin()),
                std::make_move_iterator(fields.end()));
    cmds.push_back(std::move(xadd));
    cmds.push_back({"PEXPIRE", inbox, std::to_string(kInboxTtlMs)});
  }
  if (b.completed) {
    cmds.push_back(
        {"HINCRBY", keys_.stats, "completed", std::to_string(b.completed)});
  }
  if (b.finished) {
    cmds.push_back(
        {"HINCRBY", keys_.stats, "queued", std::to_string(-b.finished)});
  }
  SendMulti(std::move(cmds));
}

// Cluster: during a slot migration a queued command whose key has moved (or
// is new) aborts the whole MULTI (EXECABORT: replayed), but the keys a
// function does not declare are only checked when it runs, after the acks
// queued with it have run. Naming them in a plain command first makes a
// migration abort the batch instead of half-applying it.
void RedisQueue::AddGuard(const WriteBatch& b, Commands& cmds) const {
  std::vector<std::string> guard = {"EXISTS"};
  if (!b.fails.empty()) guard.push_back(keys_.stats);
  for (size_t i = 2; i < b.locked.size(); i += 3) {
    if (b.locked[i].empty()) continue;
    guard.push_back(keys_.prefix + "mx:" + b.locked[i]);
    guard.push_back(keys_.prefix + "mxz:" + b.locked[i]);
    guard.push_back(keys_.prefix + "mxw:" + b.locked[i]);
    guard.push_back(keys_.control);
  }
  if (guard.size() > 1) cmds.push_back(std::move(guard));
}

// The batch's results, one hash per result shard in the current bucket.
void RedisQueue::AddResults(WriteBatch& b, Commands& cmds) {
  const int64_t bucket = UnixMillis() / 1000 / kResultBucketSeconds;
  if (bucket != last_bucket_) {
    last_bucket_ = bucket;
    expiring_ = 0;
  }
  for (size_t h = 0; h < b.results.size(); ++h) {
    if (b.results[h].empty()) continue;
    JobId any;
    any.hi = static_cast<uint64_t>(h) << 60;
    std::string key = keys_.ResultKey(bucket, any);
    std::vector<std::string> hset = {"HSET", key};
    hset.insert(hset.end(), std::make_move_iterator(b.results[h].begin()),
                std::make_move_iterator(b.results[h].end()));
    cmds.push_back(std::move(hset));
    if (!(expiring_ & (1u << h))) {
      // Once per key: its expiry, and the bucket in the list of buckets
      // (which the leader trims).
      expiring_ |= 1u << h;
      cmds.push_back({"EXPIRE", key,
                      std::to_string(o_.result_ttl_s + kResultBucketSeconds)});
      cmds.push_back({"ZADD", keys_.result_buckets, std::to_string(bucket),
                      std::to_string(bucket)});
    }
  }
}

void RedisQueue::StoreProgress(const JobId& id, float fraction,
                               std::string_view message) {
  if (o_.result_ttl_s <= 0 || !leases_.contains(id)) return;
  ProgressNote& note = progress_[id];  // erased when the lease ends
  note.fraction = fraction;
  note.message.assign(message);
  const int64_t now = MonoMillis();
  if (note.written_ms != 0 && now - note.written_ms < kProgressStoreEveryMs) {
    note.held = true;
    return;
  }
  note.written_ms = now;
  AddProgress(id, note);
}

void RedisQueue::AddProgress(const JobId& id, const ProgressNote& note) {
  const std::string key = keys_.ProgressKey(id);
  batch_.progress.push_back(
      {"HSET", key, "f", std::to_string(std::clamp(note.fraction, 0.f, 1.f)),
       "m", note.message, "t", std::to_string(UnixMillis())});
  batch_.progress.push_back({"EXPIRE", key, std::to_string(o_.result_ttl_s)});
}

// The job's lease ended: its held report is written (when it finished
// here), and it is forgotten.
void RedisQueue::EndProgress(const JobId& id, bool write_held) {
  auto p = progress_.find(id);
  if (p == progress_.end()) return;
  if (write_held && p->second.held) AddProgress(id, p->second);
  progress_.erase(p);
}

// Sends commands wrapped in MULTI/EXEC; if the connection drops before
// EXEC answers, the outcome is unknown and the batch is sent again after
// the reconnect (acks, results and retries are idempotent).
void RedisQueue::SendMulti(Commands cmds) {
  if (cmds.empty()) return;
  auto keep = std::make_shared<Commands>(cmds);
  // Whether a queued command was refused for a passing reason (in a
  // Redis Cluster, a MOVED or ASK while its slot moves).
  auto refused = std::make_shared<bool>(false);
  Send({"MULTI"}, nullptr);
  for (auto& c : cmds) {
    Send(std::move(c), [refused](Result<RedisReply> r) {
      if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
        *refused = true;
      }
    });
  }
  ++writes_;
  ++c_.round_trips;
  Send({"EXEC"}, [this, keep, refused](Result<RedisReply> r) {
    --writes_;
    if (!r.ok()) {
      // Lost, or EXECABORT after a passing refusal: nothing ran, send it
      // again after the reconnect. (An EXECABORT for a command Redis
      // will never take is logged and dropped, not replayed forever.)
      if (r.status().code() == StatusCode::kUnavailable ||
          (*refused &&
           r.status().message().find("EXECABORT") != std::string::npos)) {
        replay_.push_back(std::move(*keep));
        Lost(r.status().message());
      } else {
        spdlog::error("redis: a write batch failed: {}", r.status().ToString());
      }
      return;
    }
    for (const RedisReply& e : r->elements) {
      if (e.type == RedisReply::Type::kError) {
        spdlog::error("redis: a write failed: {}", e.str);
      }
    }
  });
}

}  // namespace yard::redis_queue_internal
