// Submits: Push (pipelined XADDs, FCALL yard_submit for the jobs Redis has
// to check), the WAIT that confirms them on replicas, and the answers to
// idempotent duplicates.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/redis_queue_impl.h"

namespace yard::redis_queue_internal {

// What Push sends for one batch, gathered job by job.
struct RedisQueue::PushPlan {
  // FCALL yard_submit: jobs with an idempotency key, resends under job-id
  // dedupe, and delayed jobs. special_index: their places in the batch;
  // routes: their producers (for dedupe waiters).
  std::vector<std::string> special;
  std::vector<size_t> special_index;
  std::vector<std::string> routes;
  // Plain jobs become one record per priority: one XADD per batch.
  std::array<std::string, kLevels> packed;
  std::array<size_t, kLevels> count{};
  std::array<JobId, kLevels> first{};
  std::string_view route;     // the producer (the batch's last job's route)
  std::string_view owner;     // and its CURVE key (NewJob::owner)
  size_t plain = 0;           // jobs in XADDs (plain or locked)
  std::vector<JobId> traced;  // dedupe_ids: first sends
};

void RedisQueue::Push(std::span<const NewJob> jobs, PushCallback done) {
  std::vector<PushOutcome> out(jobs.size(), PushOutcome::kAccepted);
  if (Status refused = PushRefusal(); !refused.ok()) {
    done(std::move(refused), out);
    return;
  }
  if (cached_queued_ + pushing_ + jobs.size() > o_.capacity) {
    std::fill(out.begin(), out.end(), PushOutcome::kBusy);
    ++c_.busy_batches;
    done(Status::OK(), out);
    return;
  }
  auto batch = std::make_shared<PushBatch>();
  batch->out = std::move(out);
  batch->done = std::move(done);
  batch->jobs = jobs.size();
  pushing_ += jobs.size();
  const int64_t now = UnixMillis();
  PushPlan plan;
  plan.special = keys_.Fcall("yard_submit");
  plan.special.push_back(std::to_string(o_.dedupe_ttl_s));
  for (size_t i = 0; i < jobs.size(); ++i) {
    PlanJob(jobs[i], i, now, batch, plan);
  }
  for (int p = 0; p < kLevels; ++p) {
    if (plan.count[p]) {
      SendRecord(batch, p, plan.first[p], plan.count[p], "", "", plan.route,
                 plan.owner, std::move(plan.packed[p]));
    }
  }
  SendTracesAndStats(plan);
  if (!plan.special_index.empty()) SendSpecial(jobs, batch, plan);
  ++c_.round_trips;
  c_.submitted += plan.plain;
  if (o_.wait_replicas > 0) {
    // Accepted once a WAIT sent after these writes reports the replicas.
    ++batch->waiting;
    wait_next_.push_back(batch);
    if (!waiting_replicas_) SendWait();
  }
  if (batch->waiting == 0) FinishPush(*batch);
}

// Why a batch cannot be written now (OK: it can).
Status RedisQueue::PushRefusal() const {
  if (!up_) return Status::Unavailable("Redis is unreachable: " + down_reason_);
  if (lost_ || !main_->connected()) {
    // Lost since the last Tick: a command now would be answered at once,
    // once per command, and the batch with it more than once.
    return Status::Unavailable("Redis connection lost: " +
                               (lost_ ? lost_reason_ : main_->error()));
  }
  if (replicas_short_ && waiting_replicas_) {
    // The last WAIT found too few replicas and a probe batch is waiting
    // for the next: refuse without writing (no duplicates to come).
    return Status::Unavailable("Redis: fewer than " +
                               std::to_string(o_.wait_replicas) +
                               " replicas acknowledged the last submits");
  }
  return Status::OK();
}

// Adds job `index` of the batch to the plan: to yard_submit, to its
// priority's record, or (a job with a lock key) as a record of its own,
// sent now.
void RedisQueue::PlanJob(const NewJob& j, size_t index, int64_t now,
                         const std::shared_ptr<PushBatch>& batch,
                         PushPlan& plan) {
  plan.route = j.route;
  plan.owner = j.owner;
  const auto* job = flatbuffers::GetRoot<wire::Job>(j.blob.bytes.data());
  const int pri = std::min<int>(j.priority, kLevels - 1);
  const bool keyed =
      job->idempotency_key() && job->idempotency_key()->size() > 0;
  const bool locked = job->lock_key() && job->lock_key()->size() > 0;
  std::string max = std::to_string(std::max<int>(1, job->max_attempts()));
  // Job-id dedupe: first sends leave a trace next to their XADD; a
  // resend goes through yard_submit, which finds the trace (DUP).
  const bool by_id = o_.dedupe_ids_ttl_s > 0 && !keyed;
  if (keyed || (by_id && j.resend) || j.not_before_ms > now) {
    std::vector<std::string>& special = plan.special;
    plan.special_index.push_back(index);
    plan.routes.emplace_back(j.route);
    special.push_back(std::to_string(pri));
    special.push_back(std::to_string(j.not_before_ms));
    special.push_back(keyed   ? job->idempotency_key()->str()
                      : by_id ? std::string("id:") + j.id.ToString()
                              : std::string());
    special.push_back(j.id.ToString());
    special.push_back(std::move(max));
    special.push_back(locked ? job->lock_key()->str() : "");
    special.push_back(consumer_);
    special.push_back(std::string(j.route));
    std::string p;
    PackJob(AsView(j.blob.bytes), &p);
    special.push_back(std::move(p));
    special.push_back(std::string(j.owner));
    return;
  }
  ++plan.plain;
  if (by_id) plan.traced.push_back(j.id);
  if (locked) {  // a lock is per job: a record of its own
    std::string p;
    PackJob(AsView(j.blob.bytes), &p);
    SendRecord(batch, pri, j.id, 1, std::move(max), job->lock_key()->str(),
               j.route, j.owner, std::move(p));
    return;
  }
  if (plan.count[pri]++ == 0) plan.first[pri] = j.id;
  PackJob(AsView(j.blob.bytes), &plan.packed[pri]);
}

// XADD of a record of `n` jobs whose first is `id`.
void RedisQueue::SendRecord(const std::shared_ptr<PushBatch>& batch, int pri,
                            const JobId& id, size_t n, std::string max,
                            std::string lock, std::string_view route,
                            std::string_view owner, std::string packed) {
  ++batch->waiting;
  ++c_.commands;
  std::vector<std::string> args = {"XADD",
                                   keys_.stream[pri],
                                   "*",
                                   "j",
                                   id.ToString(),
                                   "a",
                                   "0",
                                   "x",
                                   "0",
                                   "m",
                                   std::move(max),
                                   "k",
                                   std::move(lock),
                                   "b",
                                   consumer_,
                                   "r",
                                   std::string(route),
                                   "n",
                                   std::to_string(n),
                                   "p",
                                   std::move(packed)};
  // Without CURVE there is no owner key: the record stays as it was.
  if (!owner.empty()) {
    args.push_back("o");
    args.emplace_back(owner);
  }
  main_->Command(std::move(args), [this, batch](Result<RedisReply> r) {
    if (!r.ok()) batch->Fail(r.status());
    FinishPush(*batch);
  });
}

// The dedupe traces of first sends, and the stats of the XADDed jobs.
void RedisQueue::SendTracesAndStats(const PushPlan& plan) {
  // After the XADDs: a trace is never left for a job that was not queued
  // (a connection lost in between leaves a job without a trace, which a
  // resend queues again: a duplicate run, not a loss).
  for (const JobId& id : plan.traced) {
    Send({"SET", keys_.prefix + "dd:id:" + id.ToString(), id.ToString(), "NX",
          "EX", std::to_string(o_.dedupe_ids_ttl_s)},
         nullptr);
  }
  if (plan.plain) {
    Send({"HINCRBY", keys_.stats, "queued", std::to_string(plan.plain)},
         nullptr);
    Send({"HINCRBY", keys_.stats, "submitted", std::to_string(plan.plain)},
         nullptr);
  }
}

// FCALL yard_submit for the jobs Redis checks (plan.special).
void RedisQueue::SendSpecial(std::span<const NewJob> jobs,
                             const std::shared_ptr<PushBatch>& batch,
                             PushPlan& plan) {
  ++batch->waiting;
  ++c_.commands;
  main_->Command(std::move(plan.special),
                 [this, batch, special_index = std::move(plan.special_index),
                  routes = std::move(plan.routes),
                  ids = IdsOf(jobs)](Result<RedisReply> r) {
                   if (!r.ok()) {
                     batch->Fail(r.status());
                   } else {
                     OnSpecialSubmit(*r, special_index, routes, ids, *batch);
                   }
                   FinishPush(*batch);
                 });
}

std::vector<JobId> RedisQueue::IdsOf(std::span<const NewJob> jobs) {
  std::vector<JobId> ids;
  ids.reserve(jobs.size());
  for (const NewJob& j : jobs) ids.push_back(j.id);
  return ids;
}

void RedisQueue::FinishPush(PushBatch& b) {
  if (b.waiting > 0 && --b.waiting > 0) return;
  pushing_ -= std::min(pushing_, b.jobs);
  if (!b.status.ok()) {
    if (b.status.code() == StatusCode::kUnavailable) Lost(b.status.message());
    b.done(Status::Unavailable("Redis: " + b.status.message()), b.out);
  } else {
    b.done(Status::OK(), b.out);
  }
}

// WAIT for the batches in wait_next_ (every write of theirs went out
// before it). One WAIT at a time: a WAIT holds up the main connection
// until it returns, and stacked WAITs would each wait out their timeout
// in turn while a replica is missing. Batches pushed meanwhile join the
// next WAIT (group commit).
void RedisQueue::SendWait() {
  std::vector<std::shared_ptr<PushBatch>> group = std::move(wait_next_);
  wait_next_.clear();
  if (group.empty()) return;
  if (!up_ || !main_ || !main_->connected()) {
    for (auto& b : group) {
      b->Fail(Status::Unavailable("redis: connection lost before WAIT"));
      FinishPush(*b);
    }
    return;
  }
  waiting_replicas_ = true;
  ++c_.commands;
  main_->Command(
      {"WAIT", std::to_string(o_.wait_replicas),
       std::to_string(o_.wait_timeout_ms)},
      [this, group = std::move(group)](Result<RedisReply> r) {
        waiting_replicas_ = false;
        Status st = r.status();
        if (r.ok() && r->integer < o_.wait_replicas) {
          // Not a lost connection (FinishPush answers it Unavailable
          // without reconnecting): the primary is fine, its replicas
          // are not.
          st = Status::DeadlineExceeded(std::to_string(r->integer) + " of " +
                                        std::to_string(o_.wait_replicas) +
                                        " replicas acknowledged within " +
                                        std::to_string(o_.wait_timeout_ms) +
                                        " ms (WAIT)");
          if (!replicas_short_) {
            spdlog::warn(
                "redis {}:{}: {}; submits get Unavailable until "
                "enough replicas are back",
                address_.host, address_.port, st.message());
          }
          replicas_short_ = true;
        } else if (r.ok() && replicas_short_) {
          spdlog::info("redis {}:{}: {} replica(s) acknowledge submits again",
                       address_.host, address_.port, r->integer);
          replicas_short_ = false;
        }
        for (auto& b : group) {
          if (!st.ok()) b->Fail(st);
          FinishPush(*b);
        }
        SendWait();
      },
      o_.wait_timeout_ms);
}

void RedisQueue::OnSpecialSubmit(const RedisReply& reply,
                                 const std::vector<size_t>& index,
                                 const std::vector<std::string>& routes,
                                 const std::vector<JobId>& ids,
                                 PushBatch& batch) {
  if (reply.elements.size() != index.size()) {
    batch.Fail(Status::Internal("yard_submit: unexpected reply"));
    return;
  }
  const int64_t now = MonoMillis();
  for (size_t k = 0; k < index.size(); ++k) {
    const std::string& s = reply.elements[k].str;
    if (s.rfind("DUP:", 0) != 0) {
      ++c_.submitted;
      continue;
    }
    ++c_.idempotent;
    batch.out[index[k]] = PushOutcome::kDuplicate;
    auto first = JobId::Parse(std::string_view(s).substr(4));
    if (!first) continue;
    // The first job's result answers this submit too, once it exists.
    waiters_.push_back(DedupeWaiter{ids[index[k]], *first, routes[k],
                                    now + o_.dedupe_ttl_s * 1000});
  }
}

void RedisQueue::CheckDedupe(int64_t now) {
  next_dedupe_ms_ = now + kDedupeCheckEveryMs;
  if (dedupe_pending_ || !up_) return;
  const size_t n = std::min<size_t>(waiters_.size(), 256);
  auto batch = std::make_shared<std::vector<DedupeWaiter>>(
      waiters_.begin(), waiters_.begin() + n);
  waiters_.erase(waiters_.begin(), waiters_.begin() + n);
  dedupe_pending_ = true;
  // The first job's result is in a live bucket this waiter has not
  // searched yet, or in the newest one (which may still grow).
  const int64_t newest = UnixMillis() / 1000 / kResultBucketSeconds;
  const int64_t oldest = newest - o_.result_ttl_s / kResultBucketSeconds - 1;
  auto found = std::make_shared<std::vector<std::string>>(n);
  size_t gets = 0;
  for (const DedupeWaiter& w : *batch) {
    gets += static_cast<size_t>(newest - std::max(w.from_bucket, oldest) + 1);
  }
  auto left = std::make_shared<size_t>(gets);
  for (size_t i = 0; i < n; ++i) {
    const DedupeWaiter& w = (*batch)[i];
    for (int64_t b = newest; b >= std::max(w.from_bucket, oldest); --b) {
      Send({"HGET", keys_.ResultKey(b, w.first), w.first.ToString()},
           [this, batch, found, left, i, now, newest](Result<RedisReply> r) {
             if (r.ok() && r->type == RedisReply::Type::kString &&
                 (*found)[i].empty()) {
               (*found)[i] = std::move(r->str);
             }
             if (--*left == 0) DedupeChecked(*batch, *found, now, newest);
           });
    }
  }
}

void RedisQueue::DedupeChecked(std::vector<DedupeWaiter>& batch,
                               const std::vector<std::string>& found,
                               int64_t now, int64_t searched_to) {
  dedupe_pending_ = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    DedupeWaiter& w = batch[i];
    if (!found[i].empty() && VerifiedRoot<wire::JobResult>(found[i])) {
      AnswerDuplicate(w, found[i]);
    } else if (o_.result_ttl_s == 0 || now > w.deadline_ms) {
      AnswerDuplicate(w, {});
    } else {
      w.from_bucket = searched_to;
      waiters_.push_back(std::move(w));
    }
  }
}

void RedisQueue::AnswerDuplicate(const DedupeWaiter& w,
                                 std::string_view first_result) {
  if (!sink_) return;
  Bytes out;
  if (first_result.empty()) {
    out = writer_.EncodeResult(
        w.dup, wire::ResultStatus::Failed, {},
        "idempotent duplicate of " + w.first.ToString() +
            ", whose result is not kept (result TTL 0 or expired)",
        0, 0, w.first);
  } else {
    const auto* r = flatbuffers::GetRoot<wire::JobResult>(first_result.data());
    Bytes output;
    if (r->output()) output = {r->output()->data(), r->output()->size()};
    out = writer_.EncodeResult(w.dup, r->status(), output,
                               r->error() ? r->error()->string_view() : "",
                               r->attempt(), r->duration_us(), w.first);
  }
  sink_(w.route, out);
}

}  // namespace yard::redis_queue_internal
