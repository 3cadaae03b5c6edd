#include "broker/broker_impl.h"
#include "common/logging.h"

namespace yard {

using broker_internal::kReadBudget;

void Broker::Impl::ReadBackend() {
  RouterMessage msg;
  int64_t now = MonoMillis();
  for (int i = 0; i < kReadBudget && RecvRouter(backend_, &msg); ++i) {
    ++c_.backend_in;
    std::string_view identity = msg.identity_view();
    WorkerInfo* w = workers_.Find(identity);
    if (w) workers_.Touch(w, now);  // any message counts as a heartbeat
    if (msg.framing_error) {
      RefuseFrame(backend_, identity, wire::ErrorCode::BadFrame,
                  msg.framing_error, "backend");
      continue;
    }
    Decoded d = Decode(msg.bytes(), options_.limits);
    if (!d.ok()) {
      RefuseFrame(backend_, identity, d.error, d.message, "backend");
      continue;
    }
    if (!Admit(msg, d.kind(), /*frontend=*/false)) continue;  // auth.cc
    switch (d.kind()) {
      case wire::Body::Ready:
        OnReady(identity, d.envelope->body_as_Ready());
        break;
      case wire::Body::Results:
        // From a worker we do not know, no result is taken (its jobs were
        // released when it expired); it hears that it must register again.
        OnResults(w, d.envelope->body_as_Results());
        if (!w)
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        break;
      case wire::Body::Progress:
        OnProgress(w, identity, d.envelope->body_as_Progress());
        break;
      case wire::Body::Credit:
        if (w) {
          const auto* credit = d.envelope->body_as_Credit();
          w->credit = SaturatingAdd(w->credit, credit->credit());
          if (credit->credit()) ++credit_epoch_;
          w->credit -= std::min(w->credit, credit->withdraw());
        } else {
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        }
        break;
      case wire::Body::Heartbeat:
        if (!w)
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        break;
      case wire::Body::Disconnect:
        if (w) {
          spdlog::info("worker {} left: {}", w->name,
                       AsString(d.envelope->body_as_Disconnect()->reason()));
          uint64_t serial = w->serial;
          workers_.Remove(identity);
          ++roster_;
          ReleaseWorkerJobs(serial, /*died=*/false);
        }
        break;
      default:
        ++c_.unexpected;
        RefuseFrame(backend_, identity, wire::ErrorCode::Unexpected,
                    std::string("message kind ") +
                        wire::EnumNameBody(d.kind()) +
                        " is not accepted on the backend",
                    "backend");
    }
  }
}

void Broker::Impl::OnReady(std::string_view identity,
                           const wire::Ready* ready) {
  if (workers_.size() >= options_.max_workers && !workers_.Find(identity)) {
    ++c_.workers_refused;
    SendTo(backend_, identity,
           writer_.EncodeError(
               wire::ErrorCode::Busy,
               "this broker has its maximum of " +
                   std::to_string(options_.max_workers) + " workers",
               {}, static_cast<uint32_t>(options_.heartbeat_ms)));
    return;
  }
  WorkerInfo* w = workers_.Upsert(identity, MonoMillis());
  bool fresh = w->name.empty();
  w->credit = SaturatingAdd(0, ready->credit());
  ++credit_epoch_;
  w->capacity = std::max<uint32_t>(1, ready->capacity());
  // The name goes into stats and the registry record: bounded.
  w->name = ready->name() && ready->name()->size()
                ? ready->name()->str().substr(0, kMaxKeyBytes)
                : std::string("worker");
  // At most `limit` + 1 entries: one too many is enough for MakeLabels to
  // refuse the list.
  auto copy = [](const auto* from, std::vector<std::string>* to, size_t limit) {
    to->clear();
    if (!from) return;
    for (const auto* t : *from) {
      if (to->size() > limit) break;
      to->push_back(t->str());
    }
  };
  copy(ready->tasks(), &w->tasks, options_.limits.max_list_entries);
  copy(ready->tags(), &w->tags, kMaxPlacementEntries);
  copy(ready->taints(), &w->taints, kMaxPlacementEntries);
  w->key = WorkerKey(w->name);
  ++roster_;
  std::vector<std::string_view> tags(w->tags.begin(), w->tags.end()),
      taints(w->taints.begin(), w->taints.end());
  auto labels = MakeLabels(tags, taints);
  w->labels_ok = labels.ok();
  if (labels.ok()) {
    w->labels = std::move(labels).value();
  } else {
    // Taints it cannot state must not be ignored: give it nothing (and
    // claim nothing for its credit: Dispatch).
    spdlog::warn("worker {}: {}; it gets no jobs", w->name,
                 labels.status().message());
    w->tags.clear();
    w->taints.clear();
  }
  if (fresh) {
    spdlog::info("worker {} ready: capacity {}, credit {}", w->name,
                 w->capacity, w->credit);
  }
}

void Broker::Impl::OnResults(WorkerInfo* sender, const wire::Results* results) {
  int64_t now_unix = 0;
  for (const auto* blob : *results->results()) {
    const wire::JobResult* r = blob->data_nested_root();
    JobId id = FromWire(r->id());
    // An attempt taken back past its run timeout: its slot comes back, the
    // result is neither stored nor forwarded (run_timeouts.cc).
    if (LateResult(sender, id, r->attempt())) continue;
    auto it = inflight_.find(id);
    if (it == inflight_.end()) {
      // Finished already (a redelivered job's second result) or unknown.
      ++c_.results_unroutable;
      continue;
    }
    InFlight& f = it->second;
    // Only the worker the job was dispatched to may answer for it: anyone
    // else (another worker, a stranger) would be choosing its result.
    if (sender == nullptr || sender->serial != f.worker) {
      ++c_.results_foreign;
      continue;
    }
    // The attempt is the fencing token: a result for another attempt of
    // this job is not this attempt's result.
    if (r->attempt() != f.attempt) {
      ++c_.results_late;
      continue;
    }
    LogJob(spdlog::level::debug, id, AsString(r->traceparent()),
           "result from worker {}: {}, attempt {}", sender->name,
           wire::EnumNameResultStatus(r->status()), r->attempt());
    if (sender->timeouts_in_row) Answered(sender);
    if (!deaths_.empty()) deaths_.erase(id);
    sender->credit = SaturatingAdd(sender->credit, 1);
    ++credit_epoch_;
    if (sender->outstanding) --sender->outstanding;
    Bytes result{blob->data()->data(), blob->data()->size()};
    if (!now_unix) now_unix = UnixMillis();
    hist_.run_time.RecordOwned(r->duration_us());
    std::optional<int64_t> retry_at;
    if (r->status() == wire::ResultStatus::Failed) {
      retry_at =
          options_.retry.RetryAt(f.attempt, f.max_attempts, now_unix, rng_());
    }
    if (retry_at) {
      queue_->Fail(id, *retry_at, result);
      ++c_.retried;
      inflight_.erase(it);
      continue;
    }
    // The producer hears the result now; a job accepted by another broker
    // has an empty route here and the queue forwards its result there.
    if (!f.route.empty()) RouteResult(f.route, result);
    if (f.created_ms > 0) {
      hist_.end_to_end.RecordOwned(
          broker_internal::ElapsedMicros(f.created_ms, now_unix));
    }
    if (r->status() == wire::ResultStatus::Ok) {
      ++c_.completed;
      queue_->Complete(id, result);
    } else {
      ++c_.failed;
      c_.cancelled += r->status() == wire::ResultStatus::Cancelled;
      c_.expired += r->status() == wire::ResultStatus::Expired;
      // Out of attempts (or not runnable): a durable queue keeps it as a
      // dead letter; an expired or cancelled job simply ends.
      const bool dead = r->status() == wire::ResultStatus::Failed ||
                        r->status() == wire::ResultStatus::UnknownTask;
      if (dead) {
        queue_->Fail(id, 0, result);
      } else {
        queue_->Complete(id, result);
      }
    }
    inflight_.erase(it);
  }
  // Slots the worker moves to another broker: not credit here any more.
  if (sender && results->withheld()) {
    sender->credit -= std::min(sender->credit, results->withheld());
  }
}

void Broker::Impl::RouteResult(const std::string& route, Bytes result) {
  ProducerFinished(route, 1);
  SendResult(route, result);
}

void Broker::Impl::SendResult(const std::string& route, Bytes result) {
  Outbox& out = OutboxFor(route);
  if (out.results.size() >= options_.limits.max_batch ||
      out.results.bytes() + result.size() >
          options_.limits.max_frame_bytes / 2) {
    SendTo(frontend_, route, out.results.FinishResults());
    out.results.Clear();
  }
  out.results.AddResult(result);
}

void Broker::Impl::ReleaseWorkerJobs(uint64_t serial, bool died) {
  ForgetTakenBack(serial);
  ids_.clear();
  std::vector<std::pair<JobId, InFlight>> poisoned;
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    if (it->second.worker != serial) {
      ++it;
      continue;
    }
    if (died && options_.retry.max_worker_deaths > 0 &&
        options_.retry.OutOfWorkerDeaths(++deaths_[it->first])) {
      poisoned.emplace_back(it->first, std::move(it->second));
    } else {
      ids_.push_back(it->first);
    }
    it = inflight_.erase(it);
  }
  if (!ids_.empty()) {
    queue_->Release(ids_);
    c_.redispatched += ids_.size();
    spdlog::warn("{} in-flight jobs of a departed worker go back to the queue",
                 ids_.size());
  }
  for (auto& [id, f] : poisoned) {
    const std::string why = options_.retry.WorkerDeathsReason();
    LogJob(spdlog::level::warn, id, {}, "{}", why);
    Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Failed, {}, why,
                                        f.attempt, 0);
    if (!f.route.empty()) RouteResult(f.route, result);
    queue_->Fail(id, 0, result);  // durable: a dead letter with the reason
    deaths_.erase(id);
    ++c_.failed;
    ++c_.poisoned;
  }
  // Bounded: entries of jobs finished at another broker are never erased.
  if (deaths_.size() > 100000) deaths_.clear();
}

}  // namespace yard
