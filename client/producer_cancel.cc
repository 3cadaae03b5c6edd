// The producer's I/O thread, asking brokers: cancels and stats.
// Producer::Cancel hands ids over
// like Submit hands jobs; each turn they are sent, one Cancel message per
// broker, to the broker that holds the job (or to every live broker for a
// job this producer does not know). A job not yet sent ends here.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <map>

#include "client/producer_impl.h"
#include "common/clock.h"

namespace yard {
namespace {

// Ids awaiting an answer that are remembered at most; a broker that never
// answers costs no more than this.
constexpr size_t kMaxCancelsAsked = 100000;

}  // namespace

void Producer::Impl::Cancel(std::span<const JobId> ids) {
  if (ids.empty() || closed_.load()) return;
  {
    std::lock_guard<std::mutex> lock(intake_mu_);
    if (io_done_) return;
    cancel_intake_.insert(cancel_intake_.end(), ids.begin(), ids.end());
  }
  Wake();
}

void Producer::Impl::DrainCancels(int64_t now) {
  {
    std::lock_guard<std::mutex> lock(intake_mu_);
    if (cancel_intake_.empty()) return;
    cancel_local_.swap(cancel_intake_);
    cancel_intake_.clear();
  }
  std::map<size_t, std::vector<JobId>> by_broker;
  for (const JobId& id : cancel_local_) {
    PendingJob* job = jobs_.Find(id);
    if (job != nullptr && job->broker < 0) {
      // Not at any broker (waiting to be sent, or for a retry after Busy):
      // it ends here, and nothing is sent.
      Bytes r = writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                                     "cancelled before it was sent", 0, 0);
      Finish(job, JobOutcome::Kind::kFailed,
             flatbuffers::GetRoot<wire::JobResult>(r.data()), {}, now);
      if (options_.on_cancel) {
        options_.on_cancel(CancelReply{id, CancelReply::Kind::kCancelled, {}});
      }
      continue;
    }
    if (cancel_asked_.size() >= kMaxCancelsAsked) cancel_asked_.clear();
    cancel_asked_.insert(id);
    if (job != nullptr) {
      by_broker[static_cast<size_t>(job->broker)].push_back(id);
      continue;
    }
    for (size_t b = 0; b < brokers_.size(); ++b) {
      if (brokers_[b].alive()) by_broker[b].push_back(id);
    }
  }
  cancel_local_.clear();
  for (auto& [b, ids] : by_broker) {
    for (size_t i = 0; i < ids.size(); i += options_.limits.max_batch) {
      const size_t n = std::min(options_.limits.max_batch, ids.size() - i);
      Status s = brokers_[b].Send(
          writer_.EncodeCancel(std::span<const JobId>(ids.data() + i, n)));
      if (!s.ok() && LogAllowed(&brokers_[b].last_log_us, now)) {
        spdlog::warn("producer: cancel to {} not sent: {}",
                     brokers_[b].endpoint(), s.ToString());
      }
    }
  }
}

void Producer::Impl::RequestStats() {
  if (closed_.load()) return;
  stats_wanted_.store(true);
  Wake();
}

void Producer::Impl::SendStatsRequests(int64_t now) {
  if (!stats_wanted_.exchange(false)) return;
  for (Broker& b : brokers_) {
    if (!b.alive()) continue;
    Status s = b.Send(writer_.EncodeStatsRequest());
    if (s.ok()) {
      b.stats_asked = true;
    } else if (LogAllowed(&b.last_log_us, now)) {
      spdlog::warn("producer: stats request to {} not sent: {}", b.endpoint(),
                   s.ToString());
    }
  }
}

void Producer::Impl::DeliverStats(BrokerStatsReply reply) {
  if (!options_.on_stats) return;
  try {
    options_.on_stats(reply);
  } catch (const std::exception& e) {
    spdlog::error("producer: stats callback threw: {}", e.what());
  }
}

bool Producer::Impl::CancelAnswered(const JobId& id, CancelReply::Kind kind,
                                    std::string_view message) {
  if (cancel_asked_.empty()) return false;
  auto it = cancel_asked_.find(id);
  if (it == cancel_asked_.end()) return false;
  // NotFound from one broker says nothing of the others (an id sent to
  // every live broker), and Requested promises a Cancelled result later:
  // the id stays asked until one cancels or refuses.
  if (kind != CancelReply::Kind::kNotFound &&
      kind != CancelReply::Kind::kRequested) {
    cancel_asked_.erase(it);
  }
  if (kind == CancelReply::Kind::kRefused) Bump(cancels_refused_);
  if (options_.on_cancel) {
    options_.on_cancel(CancelReply{id, kind, std::string(message)});
  }
  return true;
}

}  // namespace yard
