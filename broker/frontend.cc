#include "broker/broker_impl.h"
#include "common/logging.h"

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
        OnSubmit(route, ProducerOf(msg), frame, d.envelope->body_as_Submit());
        break;
      case wire::Body::Heartbeat:
        SendTo(frontend_, route, writer_.EncodeHeartbeat(instance_));
        break;
      case wire::Body::Cancel:
        OnCancel(route, ProducerOf(msg), IsAdmin(msg),
                 d.envelope->body_as_Cancel());
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

wire::ErrorCode Broker::Impl::CheckSubmitted(const wire::Job& job,
                                             std::string* why) const {
  auto code = CheckJob(job, options_.limits, why);
  std::vector<std::string_view> tags, tolerations;
  if (code == wire::ErrorCode::None && SelectorOf(job, &tags, &tolerations)) {
    if (Status st = ValidateSelector(tags, tolerations); !st.ok()) {
      code = wire::ErrorCode::BadBatch;
      *why = "invalid selector: " + st.message();
    }
  }
  if (code == wire::ErrorCode::None && options_.max_delay_s > 0 &&
      job.not_before_ms() > 0 &&
      job.not_before_ms() - UnixMillis() > options_.max_delay_s * 1000) {
    code = wire::ErrorCode::BadBatch;
    *why = "not_before_ms is more than --max-delay (" +
           std::to_string(options_.max_delay_s) + " s) ahead";
  }
  if (code == wire::ErrorCode::None && events_ && job.queue() &&
      job.queue()->size() &&
      job.queue()->string_view() != options_.redis.queue) {
    code = wire::ErrorCode::NotFound;
    *why = "this broker serves queue '" + options_.redis.queue + "', not '" +
           job.queue()->str() + "'";
  }
  return code;
}

size_t Broker::Impl::AdmitByQuota(const std::string& route,
                                  const std::string& producer,
                                  const wire::Submit* submit) {
  const auto* jobs = submit->jobs();
  if (!quotas_.enabled()) return jobs->size();
  const Admission a = quotas_.Admit(producer, jobs->size(), MonoMillis());
  if (a.admitted == jobs->size()) return a.admitted;
  std::vector<JobId> refused;
  for (size_t i = a.admitted; i < jobs->size(); ++i) {
    refused.push_back(FromWire(jobs->Get(i)->data_nested_root()->id()));
  }
  c_.busy += refused.size();
  c_.busy_quota += refused.size();
  SendTo(
      frontend_, route,
      writer_.EncodeError(
          wire::ErrorCode::Busy,
          a.by_rate ? "over this producer's rate limit"
                    : "this producer has its maximum of jobs queued",
          refused,
          a.retry_after_ms ? a.retry_after_ms : options_.busy_retry_after_ms));
  // Counted exactly above; the audit line is at most one a second per
  // producer, with how many were held back.
  audit_.Write("rate_limited", producer,
               {{"jobs", refused.size()}, {"by_rate", a.by_rate}},
               MonoMillis());
  return a.admitted;
}

void Broker::Impl::OnSubmit(const std::string& route,
                            const std::string& producer,
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
  // With CURVE the key owns the job, whichever connection it came on.
  if (quotas_.enabled() || gate_) NoteProducer(route, producer);
  const size_t admitted = AdmitByQuota(route, producer, submit);
  new_jobs_.clear();
  for (size_t i = 0; i < admitted; ++i) {
    const auto* blob = jobs->Get(i);
    const wire::Job* job = blob->data_nested_root();
    std::string why;
    const wire::ErrorCode code = CheckSubmitted(*job, &why);
    if (code != wire::ErrorCode::None) {
      // One bad job is refused alone, by id, so the sender can give up on it.
      JobId bad = FromWire(job->id());
      ++c_.invalid;
      LogJob(spdlog::level::debug, bad, AsString(job->traceparent()),
             "refused: {}", why);
      SendTo(frontend_, route, writer_.EncodeError(code, why, {&bad, 1}));
      continue;
    }
    NewJob j;
    j.id = FromWire(job->id());
    LogJob(spdlog::level::debug, j.id, AsString(job->traceparent()),
           "received: task {}, priority {}", AsString(job->task()),
           job->priority());
    j.blob.owner = frame;
    j.blob.bytes = {blob->data()->data(), blob->data()->size()};
    j.priority = job->priority();
    j.not_before_ms = job->not_before_ms();
    j.route = route;
    if (gate_) j.owner = producer;
    j.resend = SendsOf(*blob) > 1;
    new_jobs_.push_back(std::move(j));
  }
  if (new_jobs_.empty()) return;
  // The queue may answer later (Redis): the callback owns what it reads.
  std::vector<JobId> ids;
  ids.reserve(new_jobs_.size());
  for (const NewJob& j : new_jobs_) ids.push_back(j.id);
  queue_->Push(new_jobs_, [this, route, producer, ids = std::move(ids)](
                              Status s, std::span<const PushOutcome> outcomes) {
    Outbox& out = OutboxFor(route);
    size_t queued = 0;
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
          ++queued;
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
    quotas_.Queued(producer, queued);
  });
  // The frame stays alive only as long as the queue holds its jobs.
  new_jobs_.clear();
}

std::string Broker::Impl::ProducerOf(const RouterMessage& msg) const {
  // With CURVE a producer is its key; without, the address it connects
  // from (a peer can make new connections at will, not new addresses).
  if (gate_) return std::string(msg.principal());
  std::string_view address = msg.peer_address();
  return address.empty() ? std::string(msg.identity_view())
                         : std::string(address);
}

bool Broker::Impl::IsAdmin(const RouterMessage& msg) const {
  return gate_ && ParseUserId(msg.user_id()).role == Role::kAdmin;
}

void Broker::Impl::NoteProducer(const std::string& route,
                                const std::string& producer) {
  if (producer_of_route_.size() >= ProducerQuotas::kMaxProducers &&
      !producer_of_route_.count(route)) {
    // Too many connections to follow: forget them all, and with them the
    // unfinished counts (quotas err towards admitting, never towards
    // refusing a producer for ever).
    producer_of_route_.clear();
    quotas_.ForgetQueued();
  }
  producer_of_route_[route] = producer;
}

void Broker::Impl::ProducerFinished(const std::string& route, size_t n) {
  if (!quotas_.enabled() || n == 0) return;
  auto it = producer_of_route_.find(route);
  if (it != producer_of_route_.end()) quotas_.Finished(it->second, n);
}

}  // namespace yard
