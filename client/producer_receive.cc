// The producer's I/O thread, receiving: reading a broker's socket, decoding
// its messages, and what they mean for our jobs (Accepted, Results, Busy,
// Unavailable and other errors); Finish delivers a job's one outcome.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "client/producer_impl.h"
#include "common/clock.h"
#include "common/trace_context.h"

namespace yard {
namespace {

// Bound on one loop turn so that one chatty socket starves nothing.
constexpr int kMaxRecvPerTurn = 1024;
// After Unavailable, prefer other brokers for this long.
constexpr int64_t kUnavailableCooldownUs = 1'000'000;
constexpr int64_t kUnavailableBaseMs = 20;
constexpr int64_t kUnavailableMaxMs = 1000;
constexpr int64_t kBusyBaseMs = 10;
constexpr int64_t kBusyMaxMs = 5000;

std::string_view CodeName(wire::ErrorCode code) {
  const char* name = wire::EnumNameErrorCode(code);
  return name && *name ? name : "Unknown";
}

}  // namespace

bool Producer::Impl::ReceiveFrom(size_t bi) {
  Broker& b = brokers_[bi];
  for (int n = 0; n < kMaxRecvPerTurn; ++n) {
    if (!b.socket()) return false;
    bool got = false;
    try {
      got = RecvDealer(*b.socket(), &msg_);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) throw;
      if (e.num() != EINTR && LogAllowed(&b.last_log_us, MonoMicros())) {
        spdlog::warn("producer: receiving from {}: {}", b.endpoint(), e.what());
      }
      return false;
    }
    if (!got) return false;
    const int64_t now = MonoMicros();
    const bool was_alive = b.was_alive();
    if (b.Heard(now)) {
      Bump(live_brokers_);
      if (was_alive) {
        spdlog::info("producer: broker {} is back", b.endpoint());
      } else {
        spdlog::debug("producer: broker {} is up", b.endpoint());
      }
    }
    if (msg_.framing_error) {
      Bump(errors_);
      if (LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: bad frame from {}: {}", b.endpoint(),
                     msg_.framing_error);
      }
      continue;
    }
    HandleMessage(bi, msg_.bytes(), now);  // RecvDealer aligned it
  }
  more_work_ = true;
  return true;
}

void Producer::Impl::HandleMessage(size_t bi, Bytes frame, int64_t now) {
  Broker& b = brokers_[bi];
  Decoded d = Decode(frame, options_.limits);
  if (!d.ok()) {
    Bump(errors_);
    if (LogAllowed(&b.last_log_us, now)) {
      spdlog::warn("producer: undecodable message from {}: {}", b.endpoint(),
                   d.message);
    }
    return;
  }
  switch (d.kind()) {
    case wire::Body::Heartbeat: {
      JobId instance = FromWire(d.envelope->body_as_Heartbeat()->instance());
      if (!instance.IsZero()) {
        if (!b.instance.IsZero() && instance != b.instance) {
          // Restarted between two heartbeats: the old process's jobs are gone
          // (memory mode); resend them, the same ids, to whoever is alive.
          spdlog::warn("producer: broker {} restarted; resending its jobs",
                       b.endpoint());
          ResendHeld(bi);
        }
        b.instance = instance;
      }
      break;
    }
    case wire::Body::Accepted:
      for (const wire::Id* id : *d.envelope->body_as_Accepted()->ids()) {
        OnAccepted(bi, FromWire(id));
      }
      break;
    case wire::Body::Results:
      if (const auto* accepted = d.envelope->body_as_Results()->accepted()) {
        for (const wire::Id* id : *accepted) OnAccepted(bi, FromWire(id));
      }
      for (const wire::ResultBlob* blob :
           *d.envelope->body_as_Results()->results()) {
        OnResult(blob->data_nested_root(), now);
      }
      break;
    case wire::Body::Error:
      OnError(bi, d.envelope->body_as_Error(), now);
      break;
    case wire::Body::Progress:
      if (!options_.on_progress) break;
      for (const auto* u : *d.envelope->body_as_Progress()->updates()) {
        ProgressUpdate p;
        p.id = FromWire(u->id());
        if (jobs_.Find(p.id) == nullptr) continue;  // not ours, or finished
        p.attempt = u->attempt();
        p.fraction = u->fraction();
        p.message.assign(AsString(u->message()));
        try {
          options_.on_progress(p);
        } catch (const std::exception& e) {
          spdlog::error("producer: progress callback threw: {}", e.what());
        }
      }
      break;
    case wire::Body::Stats:
      b.stats_asked = false;
      DeliverStats(BrokerStatsReply{
          b.endpoint(),
          std::string(AsString(d.envelope->body_as_Stats()->json())),
          {}});
      break;
    default:
      Bump(errors_);
      if (LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: unexpected {} from {}",
                     wire::EnumNameBody(d.kind()), b.endpoint());
      }
      break;
  }
}

void Producer::Impl::OnAccepted(size_t bi, const JobId& id) {
  PendingJob* job = jobs_.Find(id);
  if (job == nullptr) return;
  if (!job->accepted) {
    job->accepted = true;
    Bump(accepted_);
  }
  switch (job->state) {
    case JobState::kSent:
    case JobState::kQueued:
    case JobState::kRetryWait:
      // The acceptor holds it now (a queued entry in ready_ goes stale).
      Detach(job);
      retries_.Remove(job);
      job->state = JobState::kAccepted;
      Attach(job, bi);
      break;
    default:
      break;
  }
}

void Producer::Impl::OnResult(const wire::JobResult* result, int64_t now) {
  const JobId id = FromWire(result->id());
  const bool answer = result->status() == wire::ResultStatus::Cancelled &&
                      CancelAnswered(id, CancelReply::Kind::kCancelled, {});
  PendingJob* job = jobs_.Find(id);
  if (job == nullptr) {
    // Not ours, or finished: a duplicate, unless it answers our Cancel of
    // another producer's job.
    if (!answer) Bump(duplicates_);
    return;
  }
  JobOutcome::Kind kind = result->status() == wire::ResultStatus::Ok
                              ? JobOutcome::Kind::kCompleted
                              : JobOutcome::Kind::kFailed;
  Finish(job, kind, result, {}, now);
}

void Producer::Impl::OnError(size_t bi, const wire::Error* error, int64_t now) {
  Broker& b = brokers_[bi];
  const wire::ErrorCode code = error->code();
  const auto* ids = error->ids();
  if (code == wire::ErrorCode::Busy) Bump(busy_);
  if (code == wire::ErrorCode::Unavailable ||
      code == wire::ErrorCode::Internal) {
    b.unavailable_until_us = now + kUnavailableCooldownUs;
  }
  if (ids == nullptr || ids->size() == 0) {
    if (b.stats_asked && code == wire::ErrorCode::Forbidden) {
      // The answer to our StatsRequest: not an admin key.
      b.stats_asked = false;
      DeliverStats(
          BrokerStatsReply{b.endpoint(),
                           {},
                           std::string(CodeName(code)) + ": " +
                               std::string(AsString(error->message()))});
      return;
    }
    // A frame-level refusal: we cannot tell which jobs it means; ack timeouts
    // resend them.
    Bump(errors_);
    if (LogAllowed(&b.last_log_us, now)) {
      spdlog::warn("producer: {} from {}: {}", CodeName(code), b.endpoint(),
                   AsString(error->message()));
    }
    return;
  }
  for (const wire::Id* wid : *ids) {
    const JobId id = FromWire(wid);
    // Answers to a Cancel: a refusal, or a broker that does not hold the
    // job. Neither ends the job (its result comes, or it runs on).
    if (code == wire::ErrorCode::Forbidden) {
      if (!CancelAnswered(id, CancelReply::Kind::kRefused,
                          AsString(error->message()))) {
        Bump(cancels_refused_);
      }
      continue;
    }
    if (code == wire::ErrorCode::NotFound &&
        CancelAnswered(id, CancelReply::Kind::kNotFound,
                       AsString(error->message()))) {
      continue;
    }
    if (code == wire::ErrorCode::Pending) {
      CancelAnswered(id, CancelReply::Kind::kRequested,
                     AsString(error->message()));
      continue;
    }
    PendingJob* job = jobs_.Find(id);
    if (job == nullptr) continue;
    const bool held_here =
        job->broker == static_cast<int>(bi) &&
        (job->state == JobState::kSent || job->state == JobState::kAccepted);
    switch (code) {
      case wire::ErrorCode::Busy: {
        if (!held_here) break;
        int64_t after = std::max<int64_t>(error->retry_after_ms(), kBusyBaseMs);
        int shift = std::min<int>(job->busy++, 10);
        int64_t delay = std::min(after << shift, std::max(kBusyMaxMs, after));
        ScheduleRetry(job, delay + Jitter(0, delay / 2), now);
        break;
      }
      case wire::ErrorCode::Unavailable:
      case wire::ErrorCode::Internal: {
        if (!held_here) break;
        if (code == wire::ErrorCode::Unavailable) Bump(unavailable_);
        int shift = std::min<int>(job->unavailable++, 10);
        int64_t delay =
            std::min(kUnavailableBaseMs << shift, kUnavailableMaxMs);
        ScheduleRetry(job, Jitter(delay / 2, delay), now);
        break;
      }
      default: {
        std::string message = std::string(CodeName(code));
        if (error->message() && error->message()->size()) {
          message += ": " + std::string(AsString(error->message()));
        }
        Finish(job, JobOutcome::Kind::kRejected, nullptr, message, now);
        break;
      }
    }
  }
}

void Producer::Impl::Deliver(const OutcomeCallback& done,
                             const JobOutcome& out) {
  try {
    done(out);
  } catch (const std::exception& e) {
    spdlog::error("producer: outcome callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("producer: outcome callback threw");
  }
}

void Producer::Impl::Finish(PendingJob* job, JobOutcome::Kind kind,
                            const wire::JobResult* result,
                            std::string_view error, int64_t now) {
  Detach(job);
  retries_.Remove(job);
  deadlines_.Remove(job);
  if (job->in_map) {
    jobs_.Erase(job->id);
    job->in_map = false;
  }
  job->state = JobState::kDone;
  // Counted before the caller hears of it, so a caller that reads the
  // counters after its callback or future sees this outcome.
  switch (kind) {
    case JobOutcome::Kind::kCompleted:
      Bump(completed_);
      break;
    case JobOutcome::Kind::kFailed:
      Bump(failed_);
      break;
    case JobOutcome::Kind::kTimedOut:
      Bump(timed_out_);
      break;
    case JobOutcome::Kind::kRejected:
      Bump(rejected_);
      break;
  }
  if (job->done) {
    JobOutcome out;
    out.id = job->id;
    out.kind = kind;
    out.latency_us = now - job->submit_us;
    if (result) {
      out.status = result->status();
      out.output = AsString(result->output());
      out.error = AsString(result->error());
      out.attempt = result->attempt();
      if (result->duplicate_of())
        out.duplicate_of = FromWire(result->duplicate_of());
      // A worker's value is only as good as the worker: kept if it parses.
      const std::string_view tp = AsString(result->traceparent());
      if (!tp.empty() && ValidTraceParent(tp)) out.traceparent = tp;
      if (kind == JobOutcome::Kind::kFailed && out.error.empty()) {
        out.error = wire::EnumNameResultStatus(out.status);
      }
    } else {
      out.error = error;
    }
    if (out.traceparent.empty()) {
      // Most jobs carry none: no string to assign.
      const std::string_view mine = job->traceparent();
      if (!mine.empty()) out.traceparent = mine;
    }
    Deliver(job->done, out);
  }
  finished_.fetch_add(1, std::memory_order_seq_cst);
  if (!job->in_ready) PendingJob::Delete(job);  // else when it leaves ready_
}

}  // namespace yard
