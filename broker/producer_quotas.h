// ProducerQuotas: what each producer may submit, at one broker. A token
// bucket per producer (rate jobs per second, up to burst saved), and a cap
// on its jobs accepted here and not yet finished. A producer is its CURVE
// public key, or without CURVE the address it connects from; one producer's
// flood then costs the others nothing but the broker's time to refuse it.
//
// Beyond a quota a job is refused Busy with a retry-after (the producer
// library resends it then): nothing accepted is lost, nothing refused is
// dropped silently.
//
//   ProducerQuotas q({.rate = 1000, .burst = 100, .max_queued = 5000});
//   Admission a = q.Admit(key, jobs.size(), MonoMillis());
//   // accept a.admitted jobs, refuse the rest Busy after a.retry_after_ms
//   q.Queued(key, accepted);     // later, per finished job: q.Finished(key)
//
// Memory is bounded: past kMaxProducers tracked, producers with nothing
// queued and a full bucket (indistinguishable from new ones) are forgotten.
//
// Thread-safety: none; the broker's loop owns it.
#ifndef YARD_BROKER_PRODUCER_QUOTAS_H_
#define YARD_BROKER_PRODUCER_QUOTAS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace yard {

struct QuotaOptions {
  double rate = 0;        // jobs per second per producer; 0: no limit
  double burst = 0;       // jobs a producer may save up; 0: one second's
  size_t max_queued = 0;  // jobs accepted and unfinished; 0: no limit
  Status Validate() const;
};

struct Admission {
  size_t admitted = 0;          // the first this many jobs may go in
  uint32_t retry_after_ms = 0;  // for the rest: when to try again
  bool by_rate = false;         // the rate (not max_queued) held them back
};

class ProducerQuotas {
 public:
  static constexpr size_t kMaxProducers = 100000;

  explicit ProducerQuotas(QuotaOptions options);

  bool enabled() const { return options_.rate > 0 || options_.max_queued > 0; }
  // How many of `n` jobs from `producer` may go in now. Takes their tokens.
  Admission Admit(std::string_view producer, size_t n, int64_t now_ms);
  // `n` of its jobs were accepted (queued); `n` of them finished.
  void Queued(std::string_view producer, size_t n);
  void Finished(std::string_view producer, size_t n);
  // Jobs `producer` has queued and unfinished here.
  size_t queued(std::string_view producer) const;
  // Sets every producer's unfinished count to 0 (its owner lost track).
  void ForgetQueued();
  size_t tracked() const { return producers_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t refilled_ms = 0;
    size_t queued = 0;
  };
  Bucket& BucketFor(std::string_view producer, int64_t now_ms);
  void Refill(Bucket& b, int64_t now_ms) const;
  void Forget(int64_t now_ms);

  QuotaOptions options_;
  double burst_;
  std::unordered_map<std::string, Bucket> producers_;
};

}  // namespace yard

#endif  // YARD_BROKER_PRODUCER_QUOTAS_H_
