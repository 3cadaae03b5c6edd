// Cancel from a producer or an admin, wherever the job is in this broker:
//   queued   waiting or delayed in the queue: removed from it;
//   held     claimed, waiting here for a worker: dropped, finished in the
//            queue;
//   running  dispatched: its worker is sent Cancel{id} and the attempt is
//            recalled like a timed-out one (its slot stays counted until the
//            worker answers, and that answer is ignored: results_late); the
//            job is finished in the queue, so it never runs again.
// The owner gets exactly one Cancelled result; a canceller on another
// connection (an admin, or the same CURVE key) gets a copy, so it hears the
// outcome too. Ids of jobs this broker does not hold are answered
// Error{NotFound, ids}; jobs of others Error{Forbidden, ids}.
#include "broker/broker_impl.h"

namespace yard {

bool Broker::Impl::Owns(const std::string& route, const std::string& producer,
                        std::string_view owner_route) const {
  if (owner_route == route) return true;
  if (!gate_ || owner_route.empty()) return false;
  auto it = producer_of_route_.find(std::string(owner_route));
  return it != producer_of_route_.end() && it->second == producer;
}

Broker::Impl::Where Broker::Impl::Locate(const JobId& id,
                                         std::string* owner) const {
  if (std::optional<std::string_view> route = queue_->WaitingRoute(id)) {
    owner->assign(*route);
    return Where::kQueued;
  }
  if (auto it = inflight_.find(id); it != inflight_.end()) {
    *owner = it->second.route;
    return Where::kRunning;
  }
  // Held jobs are few (kMaxHeld) and cancels rare: a scan.
  for (const std::deque<Held>* held : {&waiting_, &unplaceable_}) {
    for (const Held& h : *held) {
      if (h.id == id) {
        *owner = h.route;
        return Where::kHeld;
      }
    }
  }
  return Where::kNowhere;
}

void Broker::Impl::OnCancel(const std::string& route,
                            const std::string& producer, bool admin,
                            const wire::Cancel* cancel) {
  // A job is cancelled only by who submitted it (its CURVE key, or without
  // CURVE its connection), or an admin: its id alone proves nothing (ids
  // travel to workers and back).
  std::vector<JobId> refused, unknown;
  std::string owner;
  for (const auto* wid : *cancel->ids()) {
    const JobId id = FromWire(*wid);
    const Where where = Locate(id, &owner);
    if (where == Where::kNowhere) {
      unknown.push_back(id);  // finished, not yet here, or another broker's
      continue;
    }
    if (!Owns(route, producer, owner)) {
      if (!admin) {
        refused.push_back(id);
        continue;
      }
      audit_.Write("admin_cancel", route, {{"job", id.ToString()}},
                   MonoMillis());
    }
    CancelJob(id, where, owner, route);
  }
  SendCancels();
  if (!refused.empty()) {
    c_.cancels_refused += refused.size();
    SendTo(frontend_, route,
           writer_.EncodeError(wire::ErrorCode::Forbidden,
                               "only the producer that submitted a job, or "
                               "an admin, may cancel it",
                               refused));
  }
  if (!unknown.empty()) {
    c_.cancels_unknown += unknown.size();
    SendTo(
        frontend_, route,
        writer_.EncodeError(wire::ErrorCode::NotFound,
                            "not waiting or running at this broker", unknown));
  }
}

void Broker::Impl::CancelJob(const JobId& id, Where where,
                             const std::string& owner,
                             const std::string& canceller) {
  uint16_t attempt = 0;
  const char* why = "cancelled before it started";
  switch (where) {
    case Where::kQueued:
      queue_->Cancel({&id, 1}, nullptr);
      break;
    case Where::kHeld:
      for (std::deque<Held>* held : {&waiting_, &unplaceable_}) {
        auto it = std::find_if(held->begin(), held->end(),
                               [&](const Held& h) { return h.id == id; });
        if (it != held->end()) {
          attempt = it->attempt;
          held->erase(it);
          break;
        }
      }
      break;
    case Where::kRunning: {
      auto it = inflight_.find(id);
      const InFlight f = std::move(it->second);
      inflight_.erase(it);
      attempt = f.attempt;
      why = "cancelled while it ran";
      (void)Recall(id, f);  // a departed worker's answer never comes
      break;
    }
    case Where::kNowhere:
      return;
  }
  ++c_.cancelled;
  if (!deaths_.empty()) deaths_.erase(id);
  Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                                      why, attempt, 0);
  if (!owner.empty()) RouteResult(owner, result);
  if (canceller != owner) SendResult(canceller, result);
  // Finished, not failed: a cancelled job is neither retried nor a dead
  // letter; a durable queue stores the result and forwards it to the
  // accepting broker of another broker's job.
  if (where != Where::kQueued) queue_->Complete(id, result);
}

}  // namespace yard
