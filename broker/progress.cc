// Progress: a worker reports how far its running jobs are; the broker
// forwards each report to the job's producer, in that producer's outbox
// (sent at the end of the loop turn, before its results). Only the worker a
// job was dispatched to may report on it, and only for the attempt it runs
// (as with results); anything else is dropped and answered NotFound, except
// reports of an attempt this broker took back from that worker (cancelled
// or timed out), which are dropped quietly: the worker had not heard yet.
// The worker bounds the rate (one report per job per kProgressIntervalMs)
// and Decode the size (kMaxProgressMessageBytes a message).
#include "broker/broker_impl.h"

namespace yard {

void Broker::Impl::OnProgress(WorkerInfo* sender, std::string_view identity,
                              const wire::Progress* progress) {
  std::vector<JobId> refused;
  for (const auto* u : *progress->updates()) {
    const JobId id = FromWire(u->id());
    auto it = inflight_.find(id);
    if (sender == nullptr || it == inflight_.end() ||
        it->second.worker != sender->serial ||
        it->second.attempt != u->attempt()) {
      ++c_.progress_refused;
      if (sender == nullptr ||
          !taken_back_.count(AttemptKey{id, u->attempt()})) {
        refused.push_back(id);
      }
      continue;
    }
    ++c_.progress;
    // Durable mode: the last report is kept in Redis for `yard result`.
    if (events_) {
      events_->StoreProgress(id, u->fraction(), AsString(u->message()));
    }
    // A job another broker accepted: its producer is not connected here.
    if (it->second.route.empty()) continue;
    ProgressUpdate p;
    p.id = id;
    p.attempt = u->attempt();
    p.fraction = u->fraction();  // clamped when encoded
    p.message.assign(AsString(u->message()));
    OutboxFor(it->second.route).progress.push_back(std::move(p));
  }
  if (!refused.empty()) {
    SendTo(backend_, identity,
           writer_.EncodeError(wire::ErrorCode::NotFound,
                               "progress for a job not running at this worker",
                               refused));
  }
}

}  // namespace yard
