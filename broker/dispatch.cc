#include <limits>
#include <unordered_set>

#include "broker/broker_impl.h"
#include "common/logging.h"

namespace yard {

using broker_internal::kBadInputLogsPerSecond;
using broker_internal::SelectorOf;

// Dispatch: claims up to the free credit, then routes each job on its own.
// The candidates for a job are the live workers its selector admits
// (placement; cached per distinct selector and rebuilt when the roster
// changes); the balancer picks among them, or says the job must wait (no
// candidate has credit, or its affinity key's worker has none). Once a live
// worker lists the tasks it runs (Ready.tasks), a job's candidates are also
// only the workers that run its task (or list none). Jobs go out
// in one Dispatch message per worker per claim. Jobs that must wait are held
// here (still leased in the queue) and tried again: those no live worker
// may take when the roster changes, the others whenever credit comes back.
// Jobs whose task no live worker runs fail after unroutable_timeout_ms
// (FailUnroutable); they have their own bound, so they do not stop the
// claims of jobs that have a worker.
void Broker::Impl::Dispatch() {
  now_mono_ = MonoMillis();
  now_unix_ = UnixMillis();
  size_t free_credit = 0;
  for (const WorkerInfo& w : workers_.workers()) {
    if (Eligible(w)) free_credit += w.credit;  // others get nothing
  }
  if (events_) events_->Want(draining_ ? 0 : free_credit);
  if (free_credit == 0) return;
  ++turn_;
  if ((!waiting_.empty() && credit_epoch_ != waiting_tried_) ||
      (!unplaceable_.empty() && roster_ != tried_)) {
    waiting_tried_ = credit_epoch_;
    RetryWaiting(&free_credit);
  }
  while (free_credit > 0 && waiting_.size() < kMaxHeld &&
         unplaceable_.size() < kMaxUnplaceable && queue_->HasReady(now_unix_)) {
    const size_t n = std::min(free_credit, options_.max_dispatch_batch);
    size_t got = 0, sent = 0, parked = 0;
    queue_->Claim(n, [&](std::span<const ClaimedJob> jobs) {
      got = jobs.size();
      for (const ClaimedJob& j : jobs) {
        const std::string_view route = j.local ? j.route : "";
        const Placed placed = Place(j.id, j.blob, j.attempt, route);
        if (placed == Placed::kSent) {
          ++sent;
        } else if (placed != Placed::kFailed) {
          parked += placed == Placed::kNoWorker;
          Hold(placed, Held{j.id, MeteredBlob(j.blob, &memory_bytes_),
                            j.attempt, std::string(route)});
        }
      }
    });
    SendOutgoing();
    free_credit -= std::min(free_credit, sent);
    // Jobs no worker may take use no credit: claim past them.
    if (got == 0 || sent + parked == 0) break;
  }
}

void Broker::Impl::Hold(Placed placed, Held h) {
  if (placed == Placed::kNoWorker) {
    if (h.since_ms == 0) {
      h.since_ms = std::max<int64_t>(1, now_mono_);
      unroutable_due_ = std::min(unroutable_due_,
                                 h.since_ms + options_.unroutable_timeout_ms);
    }
    unplaceable_.push_back(std::move(h));
  } else {
    h.since_ms = 0;
    waiting_.push_back(std::move(h));
  }
}

void Broker::Impl::FailForGood(const JobId& id, std::string_view route,
                               uint16_t attempt, wire::ResultStatus status,
                               const std::string& why) {
  Bytes result = writer_.EncodeResult(id, status, {}, why, attempt, 0);
  if (!route.empty()) RouteResult(std::string(route), result);
  queue_->Fail(id, 0, result);
  ++c_.failed;
}

bool Broker::Impl::Runs(const WorkerInfo& w, std::string_view task) {
  return w.tasks.empty() ||
         std::find(w.tasks.begin(), w.tasks.end(), task) != w.tasks.end();
}

void Broker::Impl::FailUnroutable(int64_t now) {
  // No worker at all is an outage, not a routing mistake: jobs wait.
  if (unplaceable_.empty() || draining_ || workers_.size() == 0) return;
  // Nothing came due, and no worker came or went that changes who runs
  // what: nothing to look at.
  if (now < unroutable_due_ && roster_ == unroutable_roster_) return;
  unroutable_roster_ = roster_;
  unroutable_due_ = std::numeric_limits<int64_t>::max();
  // The tasks live workers run, quarantined ones too (their jobs wait).
  std::unordered_set<std::string_view> run;
  for (const WorkerInfo& w : workers_.workers()) {
    if (w.tasks.empty()) return;  // it runs every task
    run.insert(w.tasks.begin(), w.tasks.end());
  }
  size_t failed = 0;
  std::string example;
  std::deque<Held> keep;
  for (Held& h : unplaceable_) {
    const auto* job = flatbuffers::GetRoot<wire::Job>(h.blob.bytes().data());
    const std::string_view task = job->task()->string_view();
    // Not yet due, or a worker runs its task and only its selector keeps
    // it from them: it waits for one that admits it.
    const int64_t due = h.since_ms + options_.unroutable_timeout_ms;
    if (now < due || run.contains(task)) {
      if (now < due) unroutable_due_ = std::min(unroutable_due_, due);
      keep.push_back(std::move(h));
      continue;
    }
    if (failed++ == 0) example.assign(task);
    FailForGood(h.id, h.route, h.attempt, wire::ResultStatus::UnknownTask,
                "no worker runs task " + std::string(task));
  }
  unplaceable_.swap(keep);
  if (failed == 0) return;
  c_.failed_no_worker += failed;
  spdlog::warn("{} jobs failed: no worker runs their task (task {}, {} ms)",
               failed, example, options_.unroutable_timeout_ms);
}

Broker::Impl::Placed Broker::Impl::Place(const JobId& id, Bytes blob,
                                         uint16_t attempt,
                                         std::string_view route) {
  const auto* job = flatbuffers::GetRoot<wire::Job>(blob.data());
  Candidates* c = CandidatesFor(*job);
  if (c == nullptr) {
    // Submits are checked (OnSubmit); this job was queued by a broker that
    // did not check selectors. No worker can ever take it: fail it.
    const std::string why = "invalid placement selector (tags/tolerations)";
    LogJob(spdlog::level::warn, id, AsString(job->traceparent()), "{}; failed",
           why);
    FailForGood(id, route, attempt, wire::ResultStatus::Failed, why);
    return Placed::kFailed;
  }
  const uint64_t affinity =
      job->affinity_key() ? AffinityHash(job->affinity_key()->string_view())
                          : 0;
  if (c->workers.empty()) return Placed::kNoWorker;
  size_t pick = Balancer::kWait;
  {
    for (int attempt_pick = 0; attempt_pick < 2; ++attempt_pick) {
      pick = balancer_->Pick(c->slots, affinity);
      if (pick == Balancer::kWait || c->workers[pick]->credit > 0) break;
      // Another selector's dispatch used this worker's credit this turn.
      RefreshSlots(c);
      pick = Balancer::kWait;
    }
  }
  if (pick == Balancer::kWait) return Placed::kWait;
  WorkerInfo* w = c->workers[pick];
  WorkerSlot& slot = c->slots[pick];
  --slot.credit;
  ++slot.outstanding;
  --w->credit;
  ++w->outstanding;
  BlobBatch& batch = OutgoingFor(w);
  batch.AddJob(blob, attempt);
  InFlight& f = inflight_[id];
  f.worker = w->serial;
  f.route.assign(route);
  f.attempt = attempt;
  f.max_attempts = std::max<uint16_t>(1, job->max_attempts());
  f.created_ms = job->created_ms();
  if (attempt == 1 && f.created_ms > 0) {
    hist_.queue_wait.RecordOwned(
        broker_internal::ElapsedMicros(f.created_ms, now_unix_));
  }
  ArmRunDeadline(id, *job, &f);
  ++c_.dispatched;
  LogJob(spdlog::level::debug, id, AsString(job->traceparent()),
         "dispatched to worker {}, attempt {}", w->name, attempt);
  if (batch.size() >= options_.max_dispatch_batch) SendOutgoing();
  return Placed::kSent;
}

Broker::Impl::Candidates* Broker::Impl::CandidatesFor(const wire::Job& job) {
  if (task_roster_ != roster_) {
    task_roster_ = roster_;
    task_routing_ =
        std::any_of(workers_.workers().begin(), workers_.workers().end(),
                    [](const WorkerInfo& w) { return !w.tasks.empty(); });
  }
  std::vector<std::string_view> tags, tolerations;
  const bool selected = SelectorOf(job, &tags, &tolerations);
  const std::string_view task =
      task_routing_ ? job.task()->string_view() : std::string_view();
  Candidates* found = &unlabeled_;  // no task routing, no selector: no lookup
  if (!selected && task_routing_ && last_task_candidates_ &&
      task == last_task_) {
    found = last_task_candidates_;
  } else if (selected || task_routing_) {
    // Selector keys hold no NUL; the task follows one.
    std::string key = selected ? SelectorKey(tags, tolerations) : "";
    if (task_routing_) key.append(1, '\0').append(task);
    auto it = candidates_.find(key);
    if (it == candidates_.end()) {
      Selector selector;
      if (selected) {
        auto made = MakeSelector(tags, tolerations);
        if (!made.ok()) return nullptr;  // see Place
        selector = std::move(made).value();
      }
      if (candidates_.size() >= kMaxSelectors) {
        candidates_.clear();
        last_task_candidates_ = nullptr;
      }
      it = candidates_.emplace(std::move(key), Candidates()).first;
      it->second.selector = std::move(selector);
      it->second.by_task = task_routing_;
      it->second.task.assign(task);
    }
    found = &it->second;
    if (!selected && task_routing_) {
      last_task_.assign(task);
      last_task_candidates_ = found;
    }
  }
  Candidates& c = *found;
  if (c.roster != roster_) {
    c.roster = roster_;
    c.workers.clear();
    for (WorkerInfo& w : workers_.workers()) {
      if (Eligible(w) && (!c.by_task || Runs(w, c.task)) &&
          Admits(w.labels, c.selector)) {
        c.workers.push_back(&w);
      }
    }
    c.turn = 0;
  }
  if (c.turn != turn_) RefreshSlots(&c);
  return &c;
}

void Broker::Impl::RefreshSlots(Candidates* c) {
  c->turn = turn_;
  c->slots.resize(c->workers.size());
  for (size_t i = 0; i < c->workers.size(); ++i) {
    const WorkerInfo& w = *c->workers[i];
    c->slots[i] = WorkerSlot{w.credit, w.outstanding, w.capacity, w.key};
  }
}

BlobBatch& Broker::Impl::OutgoingFor(WorkerInfo* w) {
  if (w->out_epoch == out_epoch_) return *outgoing_[w->out_index].batch;
  if (outgoing_used_ == outgoing_.size()) {
    outgoing_.push_back({nullptr, std::make_unique<BlobBatch>()});
  }
  w->out_epoch = out_epoch_;
  w->out_index = outgoing_used_;
  Outgoing& o = outgoing_[outgoing_used_++];
  o.worker = w;
  o.batch->Clear();
  return *o.batch;
}

void Broker::Impl::SendOutgoing() {
  for (size_t i = 0; i < outgoing_used_; ++i) {
    Outgoing& o = outgoing_[i];
    if (o.batch->empty()) continue;
    ++c_.dispatch_out;
    // A failed send means the worker is gone; expiry releases its jobs.
    SendTo(backend_, o.worker->identity, o.batch->FinishDispatch());
    o.batch->Clear();
  }
  outgoing_used_ = 0;
  ++out_epoch_;
}

void Broker::Impl::RetryWaiting(size_t* free_credit) {
  // Each held job is placed again and lands where it now belongs.
  auto retry = [&](std::deque<Held>& held) {
    for (size_t n = held.size(); n > 0 && *free_credit > 0; --n) {
      Held h = std::move(held.front());
      held.pop_front();
      const Placed placed = Place(h.id, h.blob.bytes(), h.attempt, h.route);
      if (placed == Placed::kSent) {
        --*free_credit;
      } else if (placed != Placed::kFailed) {
        Hold(placed, std::move(h));
      }
    }
  };
  if (roster_ != tried_) {
    tried_ = roster_;
    retry(unplaceable_);  // some may have a worker now
  }
  retry(waiting_);
  SendOutgoing();
}

broker_internal::Outbox& Broker::Impl::OutboxFor(const std::string& route) {
  Outbox& out = outboxes_[route];
  if (!out.dirty) {
    out.dirty = true;
    dirty_.push_back(route);
  }
  return out;
}

void Broker::Impl::FlushOutboxes() {
  for (const std::string& route : dirty_) {
    Outbox& out = outboxes_[route];
    out.dirty = false;
    if (!out.progress.empty()) {
      // Before the results of this turn: a job's reports never follow its
      // result.
      for (size_t i = 0; i < out.progress.size();
           i += options_.limits.max_batch) {
        size_t n = std::min(options_.limits.max_batch, out.progress.size() - i);
        SendTo(frontend_, route,
               writer_.EncodeProgress({out.progress.data() + i, n}));
      }
      out.progress.clear();
    }
    auto send_ids = [&](std::vector<JobId>& ids, auto encode) {
      for (size_t i = 0; i < ids.size(); i += options_.limits.max_batch) {
        size_t n = std::min(options_.limits.max_batch, ids.size() - i);
        SendTo(frontend_, route,
               encode(std::span<const JobId>(ids.data() + i, n)));
      }
      ids.clear();
    };
    if (!out.results.empty() && !out.accepted.empty() &&
        out.accepted.size() <= options_.limits.max_batch) {
      // Acks ride with the results: one message instead of two.
      SendTo(frontend_, route, out.results.FinishResults(out.accepted));
      out.results.Clear();
      out.accepted.clear();
    }
    send_ids(out.accepted, [&](std::span<const JobId> s) {
      return writer_.EncodeAccepted(s);
    });
    send_ids(out.busy, [&](std::span<const JobId> s) {
      return writer_.EncodeError(wire::ErrorCode::Busy,
                                 "queue is full; retry later", s,
                                 options_.busy_retry_after_ms);
    });
    send_ids(out.unavailable, [&](std::span<const JobId> s) {
      return writer_.EncodeError(
          wire::ErrorCode::Unavailable,
          "broker is draining or its durable store is unavailable; resubmit", s,
          0);
    });
    if (!out.results.empty()) {
      SendTo(frontend_, route, out.results.FinishResults());
      out.results.Clear();
    }
  }
  dirty_.clear();
  if (outboxes_.size() > 1024) outboxes_.clear();  // forget idle producers
}

void Broker::Impl::SendTo(zmq::socket_t& socket, std::string_view identity,
                          Bytes body) {
  if (&socket == &frontend_) ++c_.frontend_out;
  Status s = SendRouter(socket, identity, body);
  if (!s.ok()) {
    ++c_.sends_failed;
    spdlog::debug("send failed: {}", s.ToString());
  }
}

void Broker::Impl::RefuseFrame(zmq::socket_t& socket, std::string_view identity,
                               wire::ErrorCode code, const std::string& why,
                               const char* side) {
  ++c_.bad_frames;
  int64_t now = MonoMillis();
  if (now - log_window_ms_ >= 1000) {
    log_window_ms_ = now;
    logs_in_window_ = 0;
  }
  if (++logs_in_window_ <= kBadInputLogsPerSecond) {
    spdlog::warn("refused a message on the {}: {} ({})", side, why,
                 wire::EnumNameErrorCode(code));
  }
  SendTo(socket, identity, writer_.EncodeError(code, why));
}

}  // namespace yard
