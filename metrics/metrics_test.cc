#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "metrics/exposition.h"
#include "metrics/metrics_server.h"
#include "metrics/service_metrics.h"

namespace yard {
namespace {

TEST(ExpositionTest, WritesFamiliesOncePerName) {
  Exposition e;
  e.Counter("switchyard_x_total", "X.", 3, {{"reason", "a"}});
  e.Counter("switchyard_x_total", "X.", 4, {{"reason", "b"}});
  e.Gauge("switchyard_y", "Y.", 1.5);
  const std::string text = e.Text();
  EXPECT_NE(text.find("# TYPE switchyard_x_total counter"), std::string::npos);
  EXPECT_EQ(text.find("# TYPE switchyard_x_total"),
            text.rfind("# TYPE switchyard_x_total"));
  EXPECT_NE(text.find("switchyard_x_total{reason=\"b\"} 4"), std::string::npos);
  EXPECT_NE(text.find("switchyard_y 1.5"), std::string::npos);
}

TEST(ExpositionTest, HistogramBucketsAreCumulativeSeconds) {
  LatencyHistogram h;
  h.RecordOwned(50);         // <= 100 us
  h.RecordOwned(1000);       // <= 1 ms, on the bound
  h.RecordOwned(400000000);  // above every bound
  Exposition e;
  e.Histogram("switchyard_h_seconds", "H.", h.Read());
  const std::string text = e.Text();
  EXPECT_NE(text.find("switchyard_h_seconds_bucket{le=\"0.0001\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("switchyard_h_seconds_bucket{le=\"0.001\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("switchyard_h_seconds_bucket{le=\"+Inf\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("switchyard_h_seconds_count 3"), std::string::npos);
}

// Index (a table by the highest set bit) puts every value where a search of
// the bounds would: on and around each bound, and across the whole range.
TEST(LatencyHistogramTest, IndexAgreesWithASearchOfTheBounds) {
  const auto& bounds = LatencyHistogram::kBoundsUs;
  auto searched = [&](uint64_t us) {
    return static_cast<size_t>(
        std::lower_bound(bounds.begin(), bounds.end(), us) - bounds.begin());
  };
  std::vector<uint64_t> values = {0, 1, 2, 3, UINT64_MAX, UINT64_MAX / 2 + 1};
  for (uint64_t b : bounds) {
    for (uint64_t d = 0; d < 3; ++d) {
      values.push_back(b - d);
      values.push_back(b + d);
    }
  }
  for (uint64_t v = 1; v != 0 && v < (uint64_t{1} << 40); v = v * 3 / 2 + 1) {
    values.push_back(v);
  }
  for (uint64_t v : values) {
    EXPECT_EQ(LatencyHistogram::Index(v), searched(v)) << v;
  }
}

TEST(MetricsServerTest, ParsesHostPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:9100", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9100);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(ParseHostPort("9100", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("h:70000", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("h:x", &host, &port).ok());
}

TEST(ReadinessTest, BrokerReasons) {
  BrokerObservation o;
  EXPECT_EQ(BrokerNotReady(o), "broker loop not running");
  o.serving = true;
  o.stats_json = R"({"draining": false, "durable": {"redis": "up"}})";
  EXPECT_EQ(BrokerNotReady(o), "");
  o.stats_json = R"({"draining": false, "durable": {"redis": "down"}})";
  EXPECT_EQ(BrokerNotReady(o), "redis down");
  o.stats_json = R"({"draining": true})";
  EXPECT_EQ(BrokerNotReady(o), "draining");
  o.stats_json = "{}";
  o.age_ms = 6000;
  EXPECT_NE(BrokerNotReady(o).find("has not answered"), std::string::npos);
}

TEST(ReadinessTest, WorkerReasons) {
  WorkerObservation o;
  EXPECT_EQ(WorkerNotReady(o), "worker loop not running");
  o.running = true;
  o.brokers = 2;
  EXPECT_EQ(WorkerNotReady(o), "no broker connected (0 of 2)");
  o.brokers_connected = 1;
  EXPECT_EQ(WorkerNotReady(o), "");
}

}  // namespace
}  // namespace yard
