#include "broker/producer_quotas.h"

#include <algorithm>
#include <cmath>

namespace yard {

Status QuotaOptions::Validate() const {
  if (!(rate >= 0) || !(burst >= 0) || std::isinf(rate) || std::isinf(burst)) {
    return Status::InvalidArgument(
        "producer rate and burst must be finite and not negative");
  }
  if (burst > 0 && burst < 1) {
    return Status::InvalidArgument("producer burst must be at least 1 job");
  }
  return Status::OK();
}

ProducerQuotas::ProducerQuotas(QuotaOptions options)
    : options_(options),
      burst_(options.burst > 0 ? options.burst : std::max(1.0, options.rate)) {}

void ProducerQuotas::Refill(Bucket& b, int64_t now_ms) const {
  if (now_ms <= b.refilled_ms) return;
  b.tokens = std::min(
      burst_, b.tokens + options_.rate *
                             static_cast<double>(now_ms - b.refilled_ms) /
                             1000.0);
  b.refilled_ms = now_ms;
}

void ProducerQuotas::Forget(int64_t now_ms) {
  for (auto it = producers_.begin(); it != producers_.end();) {
    Refill(it->second, now_ms);
    const bool idle = it->second.queued == 0 &&
                      (options_.rate <= 0 || it->second.tokens >= burst_);
    it = idle ? producers_.erase(it) : std::next(it);
  }
}

ProducerQuotas::Bucket& ProducerQuotas::BucketFor(std::string_view producer,
                                                  int64_t now_ms) {
  auto it = producers_.find(std::string(producer));
  if (it != producers_.end()) return it->second;
  if (producers_.size() >= kMaxProducers) Forget(now_ms);
  // A new producer starts with a full bucket.
  return producers_.emplace(std::string(producer), Bucket{burst_, now_ms, 0})
      .first->second;
}

Admission ProducerQuotas::Admit(std::string_view producer, size_t n,
                                int64_t now_ms) {
  Admission a;
  if (!enabled() || n == 0) {
    a.admitted = n;
    return a;
  }
  Bucket& b = BucketFor(producer, now_ms);
  a.admitted = n;
  if (options_.max_queued > 0) {
    const size_t room =
        options_.max_queued - std::min(options_.max_queued, b.queued);
    a.admitted = std::min(a.admitted, room);
  }
  if (options_.rate > 0) {
    Refill(b, now_ms);
    const auto whole = static_cast<size_t>(std::floor(b.tokens));
    if (whole < a.admitted) {
      a.admitted = whole;
      a.by_rate = true;
    }
    b.tokens -= static_cast<double>(a.admitted);
    if (a.by_rate) {
      // Until one more job's token is there.
      const double wait_ms = (1.0 - b.tokens) * 1000.0 / options_.rate;
      a.retry_after_ms =
          static_cast<uint32_t>(std::clamp(std::ceil(wait_ms), 1.0, 60000.0));
    }
  }
  return a;
}

void ProducerQuotas::Queued(std::string_view producer, size_t n) {
  if (options_.max_queued == 0 || n == 0) return;
  auto it = producers_.find(std::string(producer));
  if (it != producers_.end()) it->second.queued += n;
}

void ProducerQuotas::Finished(std::string_view producer, size_t n) {
  if (options_.max_queued == 0) return;
  auto it = producers_.find(std::string(producer));
  if (it != producers_.end()) {
    it->second.queued -= std::min(it->second.queued, n);
  }
}

void ProducerQuotas::ForgetQueued() {
  for (auto& [producer, bucket] : producers_) bucket.queued = 0;
}

size_t ProducerQuotas::queued(std::string_view producer) const {
  auto it = producers_.find(std::string(producer));
  return it == producers_.end() ? 0 : it->second.queued;
}

}  // namespace yard
