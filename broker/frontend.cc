#include "broker/broker_impl.h"

namespace yard {

using broker_internal::kReadBudget;
using broker_internal::SelectorOf;

void Broker::Impl::ReadFrontend() {
  RouterMessage msg;
  for (int i = 0; i < kReadBudget && RecvRouter(frontend_, &msg); ++i) {
    ++c_.frontend_in;
    std::string route(msg.identity_view());
    if (msg.framing_error) {
      RefuseFrame(frontend_, route, wire::ErrorCode::BadFrame,
                  msg.framing_error, "frontend");
      continue;
    }
    // The frame moves into a shared owner first: queued jobs point into it,
    // and a moved zmq message may change its data pointer.
    auto frame =
        std::make_shared<MeteredFrame>(std::move(msg.body), &memory_bytes_);
    Decoded d = Decode(frame->bytes(), options_.limits);
    if (!d.ok()) {
      RefuseFrame(frontend_, route, d.error, d.message, "frontend");
      continue;
    }
    if (!Admit(msg, d.kind(), /*frontend=*/true)) continue;  // auth.cc
    switch (d.kind()) {
      case wire::Body::Submit:
        OnSubmit(route, frame, d.envelope->body_as_Submit());
        break;
      case wire::Body::Heartbeat:
        SendTo(frontend_, route, writer_.EncodeHeartbeat(instance_));
        break;
      case wire::Body::Cancel:
        OnCancel(route, /*admin=*/false, d.envelope->body_as_Cancel());
        break;
      case wire::Body::StatsRequest:
        SendTo(frontend_, route, writer_.EncodeStats(StatsJson()));
        break;
      default:
        ++c_.unexpected;
        RefuseFrame(frontend_, route, wire::ErrorCode::Unexpected,
                    std::string("message kind ") +
                        wire::EnumNameBody(d.kind()) +
                        " is not accepted on the frontend",
                    "frontend");
    }
  }
}

void Broker::Impl::RefuseSubmit(const std::string& route,
                                const wire::Submit* submit,
                                std::vector<JobId> Outbox::*list) {
  std::vector<JobId>& ids = OutboxFor(route).*list;
  for (const auto* blob : *submit->jobs()) {
    ids.push_back(FromWire(blob->data_nested_root()->id()));
  }
}

void Broker::Impl::OnSubmit(const std::string& route,
                            std::shared_ptr<MeteredFrame> frame,
                            const wire::Submit* submit) {
  const auto* jobs = submit->jobs();
  c_.submitted += jobs->size();
  if (draining_ || (events_ && !events_->available())) {
    RefuseSubmit(route, submit, &Outbox::unavailable);
    (draining_ ? c_.refused : c_.unavailable) += jobs->size();
    return;
  }
  // This frame is already counted: the jobs it carries must fit too.
  if (memory_bytes_ > options_.max_queue_bytes) {
    RefuseSubmit(route, submit, &Outbox::busy);
    c_.busy += jobs->size();
    c_.busy_bytes += jobs->size();
    return;
  }
  new_jobs_.clear();
  for (const auto* blob : *jobs) {
    const wire::Job* job = blob->data_nested_root();
    std::string why;
    auto code = CheckJob(*job, options_.limits, &why);
    std::vector<std::string_view> tags, tolerations;
    if (code == wire::ErrorCode::None &&
        SelectorOf(*job, &tags, &tolerations)) {
      if (Status st = ValidateSelector(tags, tolerations); !st.ok()) {
        code = wire::ErrorCode::BadBatch;
        why = "invalid selector: " + st.message();
      }
    }
    if (code == wire::ErrorCode::None && events_ && job->queue() &&
        job->queue()->size() &&
        job->queue()->string_view() != options_.redis.queue) {
      code = wire::ErrorCode::NotFound;
      why = "this broker serves queue '" + options_.redis.queue + "', not '" +
            job->queue()->str() + "'";
    }
    if (code != wire::ErrorCode::None) {
      // One bad job is refused alone, by id, so the sender can give up on it.
      JobId bad = FromWire(job->id());
      ++c_.invalid;
      SendTo(frontend_, route, writer_.EncodeError(code, why, {&bad, 1}));
      continue;
    }
    NewJob j;
    j.id = FromWire(job->id());
    j.blob.owner = frame;
    j.blob.bytes = {blob->data()->data(), blob->data()->size()};
    j.priority = job->priority();
    j.not_before_ms = job->not_before_ms();
    j.route = route;
    j.resend = SendsOf(*blob) > 1;
    new_jobs_.push_back(std::move(j));
  }
  if (new_jobs_.empty()) return;
  // The queue may answer later (Redis): the callback owns what it reads.
  std::vector<JobId> ids;
  ids.reserve(new_jobs_.size());
  for (const NewJob& j : new_jobs_) ids.push_back(j.id);
  queue_->Push(new_jobs_, [this, route, ids = std::move(ids)](
                              Status s, std::span<const PushOutcome> outcomes) {
    Outbox& out = OutboxFor(route);
    for (size_t i = 0; i < ids.size(); ++i) {
      const JobId& id = ids[i];
      if (!s.ok()) {
        ++c_.unavailable;
        out.unavailable.push_back(id);
        continue;
      }
      switch (outcomes[i]) {
        case PushOutcome::kAccepted:
          ++c_.accepted;
          out.accepted.push_back(id);
          break;
        case PushOutcome::kDuplicate:
          ++c_.duplicates;
          out.accepted.push_back(id);
          break;
        case PushOutcome::kBusy:
          ++c_.busy;
          out.busy.push_back(id);
          break;
      }
    }
  });
  // The frame stays alive only as long as the queue holds its jobs.
  new_jobs_.clear();
}

void Broker::Impl::OnCancel(const std::string& route, bool admin,
                            const wire::Cancel* cancel) {
  // A job is cancelled only by the connection that submitted it, or an
  // admin: its id alone proves nothing (ids travel to workers and back).
  ids_.clear();
  std::vector<JobId> refused;
  for (const auto* wid : *cancel->ids()) {
    const JobId id = FromWire(*wid);
    std::optional<std::string_view> owner = queue_->WaitingRoute(id);
    if (!owner) continue;  // running, finished or unknown: nothing to do
    if (!admin && *owner != route) {
      refused.push_back(id);
      continue;
    }
    ids_.push_back(id);
  }
  if (!refused.empty()) {
    c_.cancels_refused += refused.size();
    SendTo(frontend_, route,
           writer_.EncodeError(wire::ErrorCode::Forbidden,
                               "only the producer that submitted a job, or "
                               "an admin, may cancel it",
                               refused));
  }
  std::vector<JobId> removed;
  queue_->Cancel(ids_, &removed);
  Outbox& out = OutboxFor(route);
  for (const JobId& id : removed) {
    out.results.AddResult(
        writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                             "cancelled before it started", 0, 0));
  }
}

}  // namespace yard
