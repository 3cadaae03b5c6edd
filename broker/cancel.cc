// Cancel from a producer or an admin, wherever the job is in this broker:
//   queued   waiting or delayed in the queue: removed from it (a durable
//            queue stores its Cancelled result and forwards it to the
//            broker that accepted it, whose producer is not here);
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
                        std::string_view owner_route, const JobId& id) const {
  if (owner_route == route) return true;
  if (!gate_) return false;
  if (owner_route.empty()) {
    // Another broker accepted it: its record names the submitter's key.
    return events_ && !producer.empty() && events_->OwnerKey(id) == producer;
  }
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
    if (!Owns(route, producer, owner, id)) {
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
  if (!unknown.empty() && events_) {
    RequestCancel(route, producer, admin, std::move(unknown));
  } else if (!unknown.empty()) {
    c_.cancels_unknown += unknown.size();
    SendTo(
        frontend_, route,
        writer_.EncodeError(wire::ErrorCode::NotFound,
                            "not waiting or running at this broker", unknown));
  }
}

void Broker::Impl::RequestCancel(const std::string& route,
                                 const std::string& producer, bool admin,
                                 std::vector<JobId> ids) {
  QueueEvents::Canceller who;
  who.admin = admin;
  who.key = gate_ ? producer : std::string();
  who.route = route;
  events_->RequestCancel(
      ids, who,
      [this, route, ids](std::span<const QueueEvents::CancelAnswer> answers) {
        using Answer = QueueEvents::CancelAnswer;
        struct Reply {
          Answer answer;
          wire::ErrorCode code;
          const char* why;
          std::vector<JobId> ids;
        };
        Reply replies[] = {
            {Answer::kRequested,
             wire::ErrorCode::Pending,
             "not held by this broker: the cancel is recorded for the broker "
             "that holds or claims the job",
             {}},
            {Answer::kForbidden,
             wire::ErrorCode::Forbidden,
             "only the producer that submitted a job, or an admin, may cancel "
             "it",
             {}},
            // Not done, as before: NotFound (Busy or Unavailable with ids
            // would make a producer resend its own job).
            {Answer::kFull,
             wire::ErrorCode::NotFound,
             "not held by this broker, and too many cancels are recorded",
             {}},
            {Answer::kUnavailable,
             wire::ErrorCode::NotFound,
             "not held by this broker, and the durable queue is down",
             {}},
        };
        for (size_t i = 0; i < answers.size() && i < ids.size(); ++i) {
          for (Reply& r : replies) {
            if (r.answer == answers[i]) r.ids.push_back(ids[i]);
          }
        }
        c_.cancels_recorded += replies[0].ids.size();
        c_.cancels_refused += replies[1].ids.size();
        for (const Reply& r : replies) {
          if (r.ids.empty()) continue;
          SendTo(frontend_, route, writer_.EncodeError(r.code, r.why, r.ids));
        }
      });
}

bool Broker::Impl::CancelRecorded(const JobId& id) {
  std::string owner;
  const Where where = Locate(id, &owner);
  // Queued jobs the queue finishes itself; this is for dispatched ones.
  if (where != Where::kHeld && where != Where::kRunning) return false;
  CancelJob(id, where, owner, owner);
  SendCancels();
  return true;
}

void Broker::Impl::CancelJob(const JobId& id, Where where,
                             const std::string& owner,
                             const std::string& canceller) {
  uint16_t attempt = 0;
  const char* why = "cancelled before it started";
  switch (where) {
    case Where::kQueued:
      break;  // finished in the queue below, with its result
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
  // accepting broker of another broker's job (whose owner is not here).
  if (where == Where::kQueued) {
    queue_->CancelWaiting(id, result);
  } else {
    queue_->Complete(id, result);
  }
}

}  // namespace yard
