// Exposition: builds one scrape's metric families with prometheus-cpp's
// model (MetricFamily, ClientMetric) and writes them in the Prometheus text
// format (TextSerializer). Samples of one name share a family: call Counter
// or Gauge again with other labels to add one.
//
//   Exposition e;
//   e.Counter("switchyard_jobs_accepted_total", "Jobs accepted.", 42);
//   e.Gauge("switchyard_queue_jobs", "Jobs in the queue.", 7,
//           {{"queue", "default"}, {"state", "ready"}});
//   std::string text = e.Text();
//
// Names must be valid Prometheus names (checked in debug builds). Values come
// from snapshots the caller took; nothing here is shared between threads.
#ifndef YARD_METRICS_EXPOSITION_H_
#define YARD_METRICS_EXPOSITION_H_

#include <prometheus/metric_family.h>

#include <string>
#include <utility>
#include <vector>

#include "common/latency_histogram.h"

namespace yard {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  void Counter(const std::string& name, const std::string& help, double value,
               const MetricLabels& labels = {});
  void Gauge(const std::string& name, const std::string& help, double value,
             const MetricLabels& labels = {});
  // Buckets in seconds (LatencyHistogram's bounds), cumulative, with +Inf.
  void Histogram(const std::string& name, const std::string& help,
                 const LatencyHistogram::Snapshot& h,
                 const MetricLabels& labels = {});

  std::string Text() const;

 private:
  prometheus::ClientMetric& Add(const std::string& name,
                                const std::string& help,
                                prometheus::MetricType type,
                                const MetricLabels& labels);
  std::vector<prometheus::MetricFamily> families_;
};

}  // namespace yard

#endif  // YARD_METRICS_EXPOSITION_H_
