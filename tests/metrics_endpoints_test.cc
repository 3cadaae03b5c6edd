// The metrics and health endpoints of real `yard broker` and `yard worker`
// processes (`--metrics 127.0.0.1:0`): /healthz, /readyz (200, and 503 with
// a reason), counters that match the jobs pushed, `promtool check metrics`
// on real scrapes, `promtool check rules` on contrib/prometheus/alerts.yml,
// and the Grafana dashboard's and alert rules' queries naming only metrics
// the scrapes have.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/job_id.h"
#include "testing/process.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

using std::chrono::milliseconds;

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string body;
};

HttpAnswer Get(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  httplib::Client client(address.substr(0, colon),
                         std::stoi(address.substr(colon + 1)));
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get(path.c_str());
  if (!res) return {};
  return {res->status, res->body};
}

// The address from a "yard <what> metrics=HOST:PORT" line.
std::string MetricsAddress(Process* p) {
  auto line = p->ReadLine(milliseconds(10000));
  const std::string key = " metrics=";
  if (!line || line->find(key) == std::string::npos) {
    ADD_FAILURE() << "no metrics line: " << line.value_or("(none)");
    return "";
  }
  return line->substr(line->find(key) + key.size());
}

// A sample's value (the first line that starts with `sample` and a space);
// -1 when absent.
double Sample(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(sample + " ", 0) == 0) {
      return std::stod(line.substr(sample.size() + 1));
    }
  }
  return -1;
}

// Metric names of a scrape (what precedes '{' or ' ' on sample lines).
std::set<std::string> SampleNames(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

// Every switchyard_* name in a query.
std::set<std::string> NamesIn(const std::string& expr) {
  static const std::regex name("switchyard_[a-z_]+");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name);
       it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `sh -c command` (bounded); its exit and stdout.
std::pair<int, std::string> Shell(const std::string& command,
                                  const std::string& stderr_path) {
  auto p = Process::Spawn({"/bin/sh", "-c", command + " 2>&1"}, stderr_path);
  if (!p.ok()) return {-1, p.status().ToString()};
  std::string out = (*p)->ReadAll(milliseconds(30000)).value_or("");
  auto exit = (*p)->Wait(milliseconds(5000));
  return {exit && exit->exited ? exit->code : -1, out};
}

class MetricsEndpointsTest : public ::testing::Test {
 protected:
  // Polls `path` until it answers `status` (bounded); the last answer.
  HttpAnswer WaitFor(const std::string& address, const std::string& path,
                     int status) {
    HttpAnswer a;
    PollUntil(
        [&] {
          a = Get(address, path);
          return a.status == status;
        },
        milliseconds(15000));
    return a;
  }

  Cluster cluster_;
};

TEST_F(MetricsEndpointsTest, DurableBrokerAndWorkerExposeWhatHappened) {
  auto redis = RedisServer::Create();
  ASSERT_TRUE(redis.ok()) << redis.status().ToString();
  auto broker =
      cluster_.StartBroker({"--redis", (*redis)->url(), "--heartbeat-ms", "200",
                            "--metrics", "127.0.0.1:0"});
  ASSERT_TRUE(broker);
  const std::string broker_metrics = MetricsAddress(broker->process);
  ASSERT_FALSE(broker_metrics.empty());
  Process* worker = cluster_.StartWorker(
      broker->backend, 2,
      {"--heartbeat-ms", "200", "--metrics", "127.0.0.1:0"});
  ASSERT_NE(worker, nullptr);
  const std::string worker_metrics = MetricsAddress(worker);
  ASSERT_FALSE(worker_metrics.empty());

  EXPECT_EQ(Get(broker_metrics, "/healthz").status, 200);
  EXPECT_EQ(Get(worker_metrics, "/healthz").status, 200);
  HttpAnswer ready = WaitFor(broker_metrics, "/readyz", 200);
  EXPECT_EQ(ready.status, 200) << ready.body;
  ready = WaitFor(worker_metrics, "/readyz", 200);
  EXPECT_EQ(ready.status, 200) << ready.body;

  constexpr int kJobs = 300;
  PushRun run =
      cluster_.RunPush({"--connect", broker->frontend, "--task", "echo",
                        "--count", std::to_string(kJobs), "--size", "64"},
                       milliseconds(60000));
  ExpectPushSucceeded(run, kJobs);
  PushRun failed = cluster_.RunPush(
      {"--connect", broker->frontend, "--task", "fail", "--count", "5"},
      milliseconds(60000));
  ASSERT_TRUE(failed.exit) << failed.Describe();

  std::string b, w;
  EXPECT_TRUE(PollUntil(
      [&] {
        b = Get(broker_metrics, "/metrics").body;
        w = Get(worker_metrics, "/metrics").body;
        return Sample(b, "switchyard_jobs_completed_total") == kJobs &&
               Sample(b, "switchyard_jobs_dead_total") == 5;
      },
      milliseconds(15000)))
      << b;
  EXPECT_EQ(Sample(b, "switchyard_jobs_accepted_total"), kJobs + 5);
  EXPECT_EQ(Sample(b, "switchyard_jobs_failed_total"), 5);
  EXPECT_EQ(Sample(b, "switchyard_job_latency_seconds_count"), kJobs + 5);
  EXPECT_EQ(Sample(b, "switchyard_job_queue_wait_seconds_count"), kJobs + 5);
  EXPECT_EQ(Sample(b, "switchyard_workers"), 1);
  EXPECT_EQ(Sample(b, "switchyard_redis_up"), 1);
  EXPECT_GT(Sample(b, "switchyard_redis_round_trip_seconds_count"), 0);
  EXPECT_EQ(
      Sample(w, "switchyard_worker_jobs_total{task=\"echo\",outcome=\"ok\"}"),
      kJobs)
      << w;
  EXPECT_EQ(
      Sample(w,
             "switchyard_worker_jobs_total{task=\"fail\",outcome=\"failed\"}"),
      5);
  EXPECT_EQ(Sample(w, "switchyard_worker_job_run_seconds_count{task=\"echo\"}"),
            kJobs);
  EXPECT_EQ(Sample(w, "switchyard_worker_brokers_connected"), 1);

  // An admin's cancel of an id no broker holds stays recorded: the broker
  // shows that every claim now looks the records up.
  EXPECT_EQ(Sample(b, "switchyard_cancel_records_present{queue=\"default\"}"),
            0);
  auto [cancel_rc, cancel_out] =
      Shell(std::string(YardBinary()) + " cancel --redis " + (*redis)->url() +
                " --timeout 0.2 " + JobId::Random().ToString(),
            cluster_.dir() + "/cancel.stderr");
  EXPECT_EQ(cancel_rc, 1) << cancel_out;  // requested, not finished
  EXPECT_NE(cancel_out.find("cancel requested"), std::string::npos)
      << cancel_out;
  EXPECT_TRUE(PollUntil(
      [&] {
        b = Get(broker_metrics, "/metrics").body;
        return Sample(b,
                      "switchyard_cancel_records_present{queue=\"default\"}") ==
               1;
      },
      milliseconds(15000)))
      << b;
  EXPECT_EQ(Sample(b, "switchyard_recorded_cancels_total{outcome=\"done\"}"),
            0);
  EXPECT_EQ(Sample(b, "switchyard_cancels_recorded_total"), 0);

  // promtool lints both scrapes.
  const std::string dir = cluster_.dir();
  std::ofstream(dir + "/broker.prom") << b;
  std::ofstream(dir + "/worker.prom") << w;
  for (const char* f : {"/broker.prom", "/worker.prom"}) {
    auto [code, out] =
        Shell("promtool check metrics < " + dir + f, dir + "/promtool.stderr");
    EXPECT_EQ(code, 0) << f << ": " << out;
  }

  // Every metric the dashboard and the alert rules query is in a scrape.
  std::set<std::string> scraped = SampleNames(b);
  scraped.merge(SampleNames(w));
  auto dashboard =
      nlohmann::json::parse(ReadFile(std::string(YARD_SOURCE_DIR) +
                                     "/contrib/grafana/switchyard.json"),
                            nullptr, false);
  ASSERT_TRUE(dashboard.is_object()) << "switchyard.json does not parse";
  int exprs = 0;
  for (const auto& panel : dashboard["panels"]) {
    if (!panel.contains("targets")) continue;
    for (const auto& target : panel["targets"]) {
      const std::string expr = target.value("expr", "");
      ++exprs;
      for (const std::string& name : NamesIn(expr)) {
        EXPECT_TRUE(scraped.count(name))
            << "dashboard panel '" << panel.value("title", "") << "': " << name
            << " is not in the scrape";
      }
    }
  }
  EXPECT_GE(exprs, 8);
  const std::string rules =
      std::string(YARD_SOURCE_DIR) + "/contrib/prometheus/alerts.yml";
  // Brokers with CURVE only (this one runs without).
  const std::set<std::string> curve_only = {
      "switchyard_handshakes_refused_total",
      "switchyard_role_violations_total"};
  for (const std::string& name : NamesIn(ReadFile(rules))) {
    EXPECT_TRUE(scraped.count(name) || curve_only.count(name))
        << "alerts.yml: " << name << " is not in the scrape";
  }
  auto [code, out] =
      Shell("promtool check rules " + rules, dir + "/promtool.stderr");
  EXPECT_EQ(code, 0) << out;

  // Redis gone: the broker is alive but not ready, and says why.
  (*redis)->Kill();
  ready = WaitFor(broker_metrics, "/readyz", 503);
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "redis down\n");
  EXPECT_EQ(Get(broker_metrics, "/healthz").status, 200);
  EXPECT_EQ(Sample(Get(broker_metrics, "/metrics").body, "switchyard_redis_up"),
            0);
}

TEST_F(MetricsEndpointsTest, WorkerWithoutBrokerIsAliveButNotReady) {
  // A port nothing listens on: the broker of a memory-mode broker that is
  // started, read and stopped.
  auto broker = cluster_.StartBroker({"--metrics", "127.0.0.1:0"});
  ASSERT_TRUE(broker);
  const std::string broker_metrics = MetricsAddress(broker->process);
  EXPECT_EQ(WaitFor(broker_metrics, "/readyz", 200).status, 200);
  const std::string backend = broker->backend;
  broker->process->Signal(SIGTERM);
  ASSERT_TRUE(broker->process->Wait(milliseconds(15000)));

  Process* worker =
      cluster_.StartWorker(backend, 1, {"--metrics", "127.0.0.1:0"});
  ASSERT_NE(worker, nullptr);
  const std::string address = MetricsAddress(worker);
  ASSERT_FALSE(address.empty());
  EXPECT_EQ(Get(address, "/healthz").status, 200);
  // Until its loop runs, the reason is that it does not run yet.
  HttpAnswer ready;
  PollUntil(
      [&] {
        ready = Get(address, "/readyz");
        return ready.body.find("not running") == std::string::npos;
      },
      milliseconds(10000));
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "no broker connected (0 of 1)\n");
  EXPECT_NE(Get(address, "/metrics")
                .body.find("switchyard_worker_brokers_connected 0"),
            std::string::npos);
}

TEST_F(MetricsEndpointsTest, ListenerRefusesWhatIsNotAPlainGet) {
  auto broker = cluster_.StartBroker({"--metrics", "127.0.0.1:0"});
  ASSERT_TRUE(broker);
  const std::string address = MetricsAddress(broker->process);
  const size_t colon = address.rfind(':');
  httplib::Client client(address.substr(0, colon),
                         std::stoi(address.substr(colon + 1)));
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto post = client.Post("/metrics", std::string(1 << 20, 'x'), "text/plain");
  EXPECT_TRUE(!post || post->status >= 400);
  auto missing = client.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto huge = client.Get(("/metrics?" + std::string(100000, 'a')).c_str());
  EXPECT_TRUE(!huge || huge->status >= 400);
  // Still serving.
  EXPECT_EQ(Get(address, "/healthz").status, 200);
}

}  // namespace
}  // namespace yard
