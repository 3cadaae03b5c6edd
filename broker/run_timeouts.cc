// Run timeouts: every dispatched attempt has a deadline (the job's
// run_timeout_ms, or BrokerOptions.run_timeout_ms). Past it the broker
// takes the attempt back:
//   - the worker is sent Cancel{ids} (its handler may stop early);
//   - the job is retried through the queue as a failed attempt (backoff,
//     RetryPolicy) or, out of attempts, failed with the error "timed out"
//     (a dead letter in durable mode);
//   - the attempt's slot stays counted against the worker (outstanding, no
//     credit back) until the worker answers for it: its late result returns
//     the slot, as every result does, and is otherwise ignored
//     (results_late), so broker and worker keep agreeing on the credit.
// A worker whose attempts time out quarantine_after times in a row gets no
// new jobs until it sends any result again.
//
// The deadlines are a binary min-heap; finishing a job does not touch it.
// The loop looks at its top once per turn (one comparison when nothing is
// due); stale entries are dropped when they come up, and the heap is
// rebuilt from inflight_ when stale entries outnumber the live ones.
// docs/adr/0014-run-timeouts.md says why.
#include <functional>

#include "broker/broker_impl.h"

namespace yard {

using broker_internal::RunDeadline;

namespace {

constexpr char kTimedOut[] = "timed out";
// Taken-back attempts remembered at most (a worker's departure forgets its
// own); beyond it the oldest bookkeeping is dropped wholesale.
constexpr size_t kMaxTakenBack = 1000000;

}  // namespace

void Broker::Impl::ArmRunDeadline(const JobId& id, const wire::Job& job,
                                  InFlight* f) {
  const int64_t timeout =
      job.run_timeout_ms() ? job.run_timeout_ms() : options_.run_timeout_ms;
  if (timeout <= 0) {
    f->deadline_ms = 0;
    return;
  }
  f->deadline_ms = now_mono_ + timeout;
  deadlines_.push_back(RunDeadline{f->deadline_ms, id, f->attempt});
  std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
}

void Broker::Impl::RunTimeouts(int64_t now) {
  // Entries of finished jobs stay until they come up: once they outnumber
  // the live ones twice over, the heap is rebuilt from inflight_ (O(n),
  // amortised O(1) per job), so it stays small and cache-friendly.
  if (deadlines_.size() > 2 * inflight_.size() + 4096) {
    deadlines_.clear();
    for (const auto& [id, f] : inflight_) {
      if (f.deadline_ms) deadlines_.push_back({f.deadline_ms, id, f.attempt});
    }
    std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  }
  if (deadlines_.empty() || deadlines_.front().at > now) return;
  while (!deadlines_.empty() && deadlines_.front().at <= now) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
    const RunDeadline d = deadlines_.back();
    deadlines_.pop_back();
    auto it = inflight_.find(d.id);
    if (it == inflight_.end() || it->second.attempt != d.attempt ||
        it->second.deadline_ms != d.at) {
      continue;  // finished, released, or a later attempt
    }
    const InFlight f = std::move(it->second);
    inflight_.erase(it);
    TakeBack(d.id, f);
  }
  SendCancels();
}

void Broker::Impl::SendCancels() {
  // One Cancel per worker for everything recalled from it this turn.
  std::sort(cancels_.begin(), cancels_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < cancels_.size();) {
    const uint64_t serial = cancels_[i].first;
    ids_.clear();
    for (; i < cancels_.size() && cancels_[i].first == serial &&
           ids_.size() < options_.limits.max_batch;
         ++i) {
      ids_.push_back(cancels_[i].second);
    }
    if (const WorkerInfo* w = workers_.FindSerial(serial)) {
      SendTo(backend_, w->identity, writer_.EncodeCancel(ids_));
    }
  }
  cancels_.clear();
  ids_.clear();
}

WorkerInfo* Broker::Impl::Recall(const JobId& id, const InFlight& f) {
  WorkerInfo* w = workers_.FindSerial(f.worker);
  if (w == nullptr) return nullptr;
  if (taken_back_.size() >= kMaxTakenBack) taken_back_.clear();
  taken_back_[AttemptKey{id, f.attempt}] = f.worker;
  ++w->taken_back;
  cancels_.emplace_back(f.worker, id);
  return w;
}

void Broker::Impl::TakeBack(const JobId& id, const InFlight& f) {
  ++c_.timed_out;
  if (WorkerInfo* w = Recall(id, f)) {
    if (options_.quarantine_after > 0 &&
        ++w->timeouts_in_row >= options_.quarantine_after && !w->quarantined) {
      w->quarantined = true;
      ++roster_;
      ++c_.quarantines;
      spdlog::warn(
          "worker {}: {} jobs in a row timed out; quarantined (no new jobs "
          "until it answers)",
          w->name, w->timeouts_in_row);
    }
  }
  Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Failed, {},
                                      kTimedOut, f.attempt, 0);
  if (auto retry_at = options_.retry.RetryAt(f.attempt, f.max_attempts,
                                             UnixMillis(), rng_())) {
    queue_->Fail(id, *retry_at, result);
    ++c_.retried;
    return;
  }
  if (!f.route.empty()) RouteResult(f.route, result);
  queue_->Fail(id, 0, result);  // durable: a dead letter, "timed out"
  ++c_.failed;
}

bool Broker::Impl::LateResult(WorkerInfo* sender, const JobId& id,
                              uint16_t attempt) {
  if (taken_back_.empty() || sender == nullptr) return false;
  auto it = taken_back_.find(AttemptKey{id, attempt});
  if (it == taken_back_.end() || it->second != sender->serial) return false;
  taken_back_.erase(it);
  ++c_.results_late;
  // The slot the attempt held comes back, as with any result.
  sender->credit = SaturatingAdd(sender->credit, 1);
  ++credit_epoch_;
  if (sender->outstanding) --sender->outstanding;
  if (sender->taken_back) --sender->taken_back;
  Answered(sender);
  return true;
}

void Broker::Impl::Answered(WorkerInfo* w) {
  w->timeouts_in_row = 0;
  if (!w->quarantined) return;
  w->quarantined = false;
  ++roster_;
  ++credit_epoch_;
  spdlog::info("worker {} answers again; out of quarantine", w->name);
}

void Broker::Impl::ForgetTakenBack(uint64_t serial) {
  if (taken_back_.empty()) return;
  std::erase_if(taken_back_,
                [serial](const auto& kv) { return kv.second == serial; });
}

}  // namespace yard
