#include "metrics/exposition.h"

#include <prometheus/check_names.h>
#include <prometheus/text_serializer.h>

#include <cassert>
#include <limits>
#include <sstream>

namespace yard {

prometheus::ClientMetric& Exposition::Add(const std::string& name,
                                          const std::string& help,
                                          prometheus::MetricType type,
                                          const MetricLabels& labels) {
  if (families_.empty() || families_.back().name != name) {
    assert(prometheus::CheckMetricName(name));
    for (const auto& f : families_) {
      // One family per name: samples of a name are added together.
      assert(f.name != name);
      (void)f;
    }
    families_.push_back({name, help, type, {}});
  }
  prometheus::ClientMetric& m = families_.back().metric.emplace_back();
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}

void Exposition::Counter(const std::string& name, const std::string& help,
                         double value, const MetricLabels& labels) {
  Add(name, help, prometheus::MetricType::Counter, labels).counter.value =
      value;
}

void Exposition::Gauge(const std::string& name, const std::string& help,
                       double value, const MetricLabels& labels) {
  Add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
}

void Exposition::Histogram(const std::string& name, const std::string& help,
                           const LatencyHistogram::Snapshot& h,
                           const MetricLabels& labels) {
  auto& m = Add(name, help, prometheus::MetricType::Histogram, labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    cumulative += h.buckets[i];
    const double bound = i < LatencyHistogram::kBoundsUs.size()
                             ? LatencyHistogram::kBoundsUs[i] / 1e6
                             : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back({cumulative, bound});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = static_cast<double>(h.sum_us) / 1e6;
}

std::string Exposition::Text() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families_);
  return out.str();
}

}  // namespace yard
