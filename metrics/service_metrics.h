// What a broker's and a worker's metrics endpoints serve: their metrics in
// the Prometheus text format, and whether they are ready. The metric names
// and what each measures are listed in docs/adr/0017-metrics-and-health.md.
//
// Thread-safety: any thread; these read only what the broker and worker
// publish for other threads (Broker::Observe, Worker::Observe, atomics).
#ifndef YARD_METRICS_SERVICE_METRICS_H_
#define YARD_METRICS_SERVICE_METRICS_H_

#include <string>

#include "broker/broker.h"
#include "metrics/metrics_server.h"
#include "worker/worker.h"

namespace yard {

// How long a scrape waits for the broker's loop to publish fresh stats.
inline constexpr int64_t kScrapeWaitMs = 500;

std::string BrokerMetricsText(const BrokerObservation& o,
                              const BrokerHistograms& h);
// Empty when ready; otherwise why not.
std::string BrokerNotReady(const BrokerObservation& o);
MetricsEndpoints BrokerEndpoints(const Broker& broker);

std::string WorkerMetricsText(const WorkerObservation& o);
std::string WorkerNotReady(const WorkerObservation& o);
MetricsEndpoints WorkerEndpoints(const Worker& worker);

}  // namespace yard

#endif  // YARD_METRICS_SERVICE_METRICS_H_
