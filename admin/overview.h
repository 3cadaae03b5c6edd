// Overview: one JSON picture of a running Switchyard, for the monitors
// (`yard top`, `yard dashboard`): every broker's stats (asked over ZeroMQ,
// Producer::RequestStats), their workers, the durable queue's stats when
// there is one (QueueStats), rates and latency percentiles over the time
// since the previous picture, and totals.
//
//   admin::OverviewOptions o;
//   o.brokers = {"tcp://127.0.0.1:5555"};   // or o.redis_url = "redis://..."
//   auto ov = admin::Overview::Create(std::move(o));
//   Json first = (*ov)->Snapshot();        // rates 0, latency null
//   Json next = (*ov)->Snapshot();         // rates over the interval
//
// Snapshot shape (keys are stable; numbers are integers unless said):
//   {time_ms, interval_s (double; 0 on the first),
//    brokers: [{endpoint, up, error (string|null), queue, draining, ready,
//               delayed, running, in_flight, workers (count), counters: {...
//               the broker's own}, rates: {submitted, completed, failed}
//               (jobs/s, double), latency_ms: {p50, p90, p99} | null}],
//    workers: [{name, broker (endpoint), capacity, credit, outstanding,
//               quarantined}],
//    queue: null in memory mode, else QueueStats (yard queue stats --json),
//    totals: {brokers_up, brokers, workers, capacity, ready, delayed, running,
//             in_flight, dead (durable only, else null), rates: {...},
//             latency_ms: {...} | null}}
// Latency is end to end (the broker's histogram, from the job's creation to
// its result), read from bucket counts: a percentile is the upper bound of
// the bucket it falls in, interpolated linearly inside the bucket.
//
// With redis_url and no brokers, the brokers are the registry's live ones
// for `queue` (re-read at each Snapshot). Under CURVE the brokers answer
// stats only to an admin key; others show up with error "Forbidden: ...".
//
// Thread-safety: one thread at a time calls Snapshot (a server polls it
// from one thread and serves the copy).
#ifndef YARD_ADMIN_OVERVIEW_H_
#define YARD_ADMIN_OVERVIEW_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "security/curve_keys.h"

namespace yard::admin {

struct OverviewOptions {
  std::vector<std::string> brokers;  // broker frontends to ask
  // A durable queue: its stats, and the brokers of its registry when
  // `brokers` is empty.
  std::string redis_url;
  std::string queue = "default";
  CurveClientOptions curve;  // an admin key under CURVE
  int64_t timeout_ms = 2000;
};

class Overview {
 public:
  // InvalidArgument when there is nothing to watch (no brokers, no Redis) or
  // a bad URL; Unavailable when Redis does not answer.
  static Result<std::unique_ptr<Overview>> Create(OverviewOptions options);
  ~Overview();
  Overview(const Overview&) = delete;
  Overview& operator=(const Overview&) = delete;

  // Blocks up to about timeout_ms (brokers that do not answer by then are
  // "up": false with an error).
  nlohmann::ordered_json Snapshot();

  class Impl;

 private:
  explicit Overview(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The latency percentiles of bucket counts laid out as LatencyHistogram's
// (common/latency_histogram.h; non-cumulative, overflow last), in ms:
// {p50, p90, p99}, or null when the counts are all 0. Exposed for tests.
nlohmann::ordered_json LatencyPercentiles(const std::vector<uint64_t>& buckets);

}  // namespace yard::admin

#endif  // YARD_ADMIN_OVERVIEW_H_
