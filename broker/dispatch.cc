#include "broker/broker_impl.h"

namespace yard {

using broker_internal::kBadInputLogsPerSecond;
using broker_internal::SelectorOf;

// Dispatch: claims up to the free credit, then routes each job on its own.
// The candidates for a job are the live workers its selector admits
// (placement; cached per distinct selector and rebuilt when the roster
// changes); the balancer picks among them, or says the job must wait (no
// candidate has credit, or its affinity key's worker has none). Jobs go out
// in one Dispatch message per worker per claim. Jobs that must wait are held
// here (still leased in the queue) and tried again: those no live worker
// may take when the roster changes, the others whenever credit comes back.
void Broker::Impl::Dispatch() {
  int64_t now_unix = UnixMillis();
  now_mono_ = MonoMillis();
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
  while (free_credit > 0 && waiting_.size() + unplaceable_.size() < kMaxHeld &&
         queue_->HasReady(now_unix)) {
    const size_t n = std::min(free_credit, options_.max_dispatch_batch);
    size_t got = 0, sent = 0;
    queue_->Claim(n, [&](std::span<const ClaimedJob> jobs) {
      got = jobs.size();
      for (const ClaimedJob& j : jobs) {
        const std::string_view route = j.local ? j.route : "";
        const Placed placed = Place(j.id, j.blob, j.attempt, route);
        if (placed == Placed::kSent) {
          ++sent;
        } else if (placed != Placed::kFailed) {
          Hold(placed, Held{j.id, MeteredBlob(j.blob, &memory_bytes_),
                            j.attempt, std::string(route)});
        }
      }
    });
    SendOutgoing();
    free_credit -= std::min(free_credit, sent);
    if (got == 0 || sent == 0) break;
  }
}

void Broker::Impl::Hold(Placed placed, Held h) {
  (placed == Placed::kNoWorker ? unplaceable_ : waiting_)
      .push_back(std::move(h));
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
    spdlog::warn("job {}: {}; failed", id.ToString(), why);
    Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Failed, {}, why,
                                        attempt, 0);
    if (!route.empty()) RouteResult(std::string(route), result);
    queue_->Fail(id, 0, result);
    ++c_.failed;
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
  ArmRunDeadline(id, *job, &f);
  ++c_.dispatched;
  if (batch.size() >= options_.max_dispatch_batch) SendOutgoing();
  return Placed::kSent;
}

Broker::Impl::Candidates* Broker::Impl::CandidatesFor(const wire::Job& job) {
  std::vector<std::string_view> tags, tolerations;
  Candidates* found = &unlabeled_;  // the common case: no lookup
  if (SelectorOf(job, &tags, &tolerations)) {
    const std::string key = SelectorKey(tags, tolerations);
    auto it = candidates_.find(key);
    if (it == candidates_.end()) {
      auto selector = MakeSelector(tags, tolerations);
      if (!selector.ok()) return nullptr;  // see Place
      if (candidates_.size() >= kMaxSelectors) candidates_.clear();
      it = candidates_.emplace(key, Candidates()).first;
      it->second.selector = std::move(selector).value();
    }
    found = &it->second;
  }
  Candidates& c = *found;
  if (c.roster != roster_) {
    c.roster = roster_;
    c.workers.clear();
    for (WorkerInfo& w : workers_.workers()) {
      if (Eligible(w) && Admits(w.labels, c.selector)) {
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
