// Overview: brokers' stats asked through a Producer that submits nothing,
// the durable queue's through QueueStats; rates and percentiles from the
// difference between two snapshots.
#include "admin/overview.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "admin/queue_admin.h"
#include "client/producer.h"
#include "common/clock.h"
#include "common/latency_histogram.h"

namespace yard::admin {
namespace {

using Buckets = std::vector<uint64_t>;

uint64_t Counter(const nlohmann::json& counters, const char* name) {
  if (!counters.is_object()) return 0;
  auto it = counters.find(name);
  if (it == counters.end() || !it->is_number_unsigned()) return 0;
  return it->get<uint64_t>();
}

int64_t Number(const nlohmann::json& j, const char* name) {
  if (!j.is_object()) return 0;
  auto it = j.find(name);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

// The end-to-end bucket counts of a broker's stats; empty when absent or not
// laid out as ours (a broker of another version).
Buckets EndToEnd(const nlohmann::json& stats) {
  Buckets out;
  auto lb = stats.find("latency_buckets");
  if (lb == stats.end() || !lb->is_object()) return out;
  auto e = lb->find("end_to_end");
  if (e == lb->end() || !e->is_array() ||
      e->size() != LatencyHistogram::kBuckets) {
    return out;
  }
  for (const auto& v : *e) {
    out.push_back(v.is_number_unsigned() ? v.get<uint64_t>() : 0);
  }
  return out;
}

// now - before, bucket by bucket; a counter that went back (a restarted
// broker) counts from 0.
Buckets Delta(const Buckets& now, const Buckets& before) {
  if (before.size() != now.size()) return now;
  Buckets d(now.size());
  for (size_t i = 0; i < now.size(); ++i) {
    d[i] = now[i] >= before[i] ? now[i] - before[i] : now[i];
  }
  return d;
}

constexpr const char* kRated[] = {"submitted", "completed", "failed"};

}  // namespace

nlohmann::ordered_json LatencyPercentiles(const Buckets& buckets) {
  const auto& bounds = LatencyHistogram::kBoundsUs;
  if (buckets.size() != bounds.size() + 1) return nullptr;
  uint64_t total = 0;
  for (uint64_t n : buckets) total += n;
  if (total == 0) return nullptr;
  auto at = [&](double q) {
    const double rank = q * static_cast<double>(total);
    uint64_t below = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      if (buckets[i] == 0) continue;
      if (static_cast<double>(below + buckets[i]) >= rank) {
        if (i == bounds.size()) return static_cast<double>(bounds.back());
        const double lo = i == 0 ? 0.0 : static_cast<double>(bounds[i - 1]);
        const double hi = static_cast<double>(bounds[i]);
        const double f = (rank - static_cast<double>(below)) /
                         static_cast<double>(buckets[i]);
        return lo + (hi - lo) * std::clamp(f, 0.0, 1.0);
      }
      below += buckets[i];
    }
    return static_cast<double>(bounds.back());
  };
  nlohmann::ordered_json out;
  for (auto [name, q] :
       {std::pair{"p50", 0.5}, std::pair{"p90", 0.9}, std::pair{"p99", 0.99}}) {
    out[name] = at(q) / 1000.0;
  }
  return out;
}

class Overview::Impl {
 public:
  explicit Impl(OverviewOptions options) : options_(std::move(options)) {}

  Status Start() {
    if (options_.brokers.empty() && options_.redis_url.empty()) {
      return Status::InvalidArgument(
          "nothing to watch: give broker endpoints or a Redis URL");
    }
    if (!options_.redis_url.empty()) {
      Result<QueueConnection> q =
          ConnectQueue(options_.redis_url, options_.queue);
      if (!q.ok()) return q.status();
      queue_ = std::make_unique<QueueConnection>(std::move(q).value());
    }
    if (options_.brokers.empty()) return Status::OK();  // the registry's
    return UseBrokers(options_.brokers);
  }

  ~Impl() {
    if (producer_) producer_->Close();
  }

  nlohmann::ordered_json Snapshot() {
    const int64_t deadline_us = MonoMicros() + options_.timeout_ms * 1000;
    nlohmann::ordered_json out;
    out["time_ms"] = UnixMillis();
    const int64_t now_us = MonoMicros();
    const double interval_s =
        last_us_ == 0 ? 0.0 : static_cast<double>(now_us - last_us_) / 1e6;
    out["interval_s"] = interval_s;

    nlohmann::ordered_json queue = nullptr;
    std::string queue_error;
    if (queue_) {
      Result<Json> q = QueueStats(*queue_);
      if (q.ok()) {
        queue = std::move(q).value();
        if (options_.brokers.empty()) FollowRegistry(queue);
      } else {
        queue_error = q.status().message();
      }
    }
    std::map<std::string, BrokerStatsReply> replies = Ask(deadline_us);

    out["brokers"] = nlohmann::ordered_json::array();
    out["workers"] = nlohmann::ordered_json::array();
    nlohmann::ordered_json totals;
    int64_t up = 0, workers = 0, capacity = 0, ready = 0, delayed = 0,
            running = 0, in_flight = 0;
    std::map<std::string, double> total_rates;
    Buckets total_latency(LatencyHistogram::kBuckets, 0);
    std::map<std::string, Sample> samples;
    for (const std::string& endpoint : endpoints_) {
      nlohmann::ordered_json b;
      b["endpoint"] = endpoint;
      auto it = replies.find(endpoint);
      nlohmann::json stats;
      if (it != replies.end() && it->second.error.empty()) {
        stats = nlohmann::json::parse(it->second.json, nullptr,
                                      /*allow_exceptions=*/false);
      }
      const bool ok = stats.is_object();
      b["up"] = ok;
      if (ok) {
        b["error"] = nullptr;
      } else if (it == replies.end()) {
        b["error"] =
            "no answer within " + std::to_string(options_.timeout_ms) + " ms";
      } else if (!it->second.error.empty()) {
        b["error"] = it->second.error;
      } else {
        b["error"] = "stats are not JSON";
      }
      const nlohmann::json& q = ok ? stats["queue"] : nlohmann::json();
      const nlohmann::json& counters =
          ok ? stats["counters"] : nlohmann::json();
      b["queue"] = options_.queue;
      b["draining"] = ok && stats.value("draining", false);
      b["ready"] = Number(q, "ready");
      b["delayed"] = Number(q, "delayed");
      b["running"] = Number(q, "running");
      b["in_flight"] = ok ? Number(stats, "in_flight") : 0;
      const nlohmann::json& ws = ok && stats["workers"].is_array()
                                     ? stats["workers"]
                                     : nlohmann::json::array();
      b["workers"] = ws.size();
      b["counters"] =
          counters.is_object() ? counters : nlohmann::json::object();
      Sample now{counters, ok ? EndToEnd(stats) : Buckets()};
      auto prev = samples_.find(endpoint);
      const bool have_prev = ok && interval_s > 0 && prev != samples_.end();
      nlohmann::ordered_json rates;
      for (const char* name : kRated) {
        double r = 0;
        if (have_prev) {
          const uint64_t a = Counter(prev->second.counters, name);
          const uint64_t z = Counter(counters, name);
          r = z >= a ? static_cast<double>(z - a) / interval_s : 0.0;
        }
        rates[name] = r;
        total_rates[name] += r;
      }
      b["rates"] = rates;
      Buckets d =
          have_prev ? Delta(now.latency, prev->second.latency) : Buckets();
      b["latency_ms"] = LatencyPercentiles(d);
      if (d.size() == total_latency.size()) {
        for (size_t i = 0; i < d.size(); ++i) total_latency[i] += d[i];
      }
      if (ok) samples[endpoint] = std::move(now);
      for (const auto& w : ws) {
        nlohmann::ordered_json row;
        row["name"] = w.value("name", "");
        row["broker"] = endpoint;
        row["capacity"] = Number(w, "capacity");
        row["credit"] = Number(w, "credit");
        row["outstanding"] = Number(w, "outstanding");
        row["quarantined"] = w.value("quarantined", false);
        capacity += Number(w, "capacity");
        out["workers"].push_back(std::move(row));
      }
      if (ok) {
        ++up;
        workers += static_cast<int64_t>(ws.size());
        ready += Number(q, "ready");
        delayed += Number(q, "delayed");
        running += Number(q, "running");
        in_flight += Number(stats, "in_flight");
      }
      out["brokers"].push_back(std::move(b));
    }
    samples_ = std::move(samples);
    last_us_ = now_us;

    if (!queue.is_null()) {
      // The durable queue is the truth about waiting jobs: brokers hold only
      // what they claimed.
      ready = Number(queue, "ready");
      delayed = Number(queue, "delayed");
      running = Number(queue, "running");
    }
    totals["brokers_up"] = up;
    totals["brokers"] = endpoints_.size();
    totals["workers"] = workers;
    totals["capacity"] = capacity;
    totals["ready"] = ready;
    totals["delayed"] = delayed;
    totals["running"] = running;
    totals["in_flight"] = in_flight;
    totals["dead"] = queue.is_null() ? nlohmann::ordered_json() : queue["dead"];
    nlohmann::ordered_json rates;
    for (const char* name : kRated) rates[name] = total_rates[name];
    totals["rates"] = rates;
    totals["latency_ms"] = LatencyPercentiles(total_latency);
    out["queue"] = std::move(queue);
    if (!queue_error.empty()) out["queue_error"] = queue_error;
    out["totals"] = std::move(totals);
    return out;
  }

 private:
  struct Sample {
    nlohmann::json counters;
    Buckets latency;
  };

  // The registry's live brokers of our queue become the ones we ask.
  void FollowRegistry(const Json& queue_stats) {
    std::vector<std::string> found;
    if (queue_stats.contains("brokers") && queue_stats["brokers"].is_array()) {
      for (const auto& b : queue_stats["brokers"]) {
        if (b.value("queue", options_.queue) != options_.queue) continue;
        const std::string fe = b.value("frontend", "");
        if (!fe.empty()) found.push_back(fe);
      }
    }
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    if (found == registry_brokers_) return;
    if (Status s = UseBrokers(found); !s.ok()) {
      spdlog::warn("overview: brokers of the registry: {}", s.ToString());
      return;
    }
    registry_brokers_ = std::move(found);
  }

  // The producer that asks for stats: made for the first brokers, told of
  // later changes.
  Status UseBrokers(const std::vector<std::string>& endpoints) {
    if (producer_) {
      producer_->SetBrokers(endpoints);
      return Status::OK();
    }
    if (endpoints.empty()) return Status::OK();
    ProducerOptions p;
    p.brokers = endpoints;
    p.curve = options_.curve;
    p.heartbeat_ms = 500;
    p.on_stats = [this](const BrokerStatsReply& r) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!asked_.count(r.endpoint)) return;  // late, from an earlier ask
      replies_[r.endpoint] = r;
      cv_.notify_all();
    };
    auto created = Producer::Create(std::move(p));
    if (!created.ok()) return created.status();
    producer_ = std::move(created).value();
    return Status::OK();
  }

  // Asks every broker; waits until each answered or the deadline. Brokers
  // still shaking hands (the first snapshot) are waited for too.
  std::map<std::string, BrokerStatsReply> Ask(int64_t deadline_us) {
    endpoints_ =
        options_.brokers.empty() ? registry_brokers_ : options_.brokers;
    std::unique_lock<std::mutex> lock(mu_);
    replies_.clear();
    asked_ = std::set<std::string>(endpoints_.begin(), endpoints_.end());
    if (asked_.empty() || !producer_) return {};
    // Asked again every 100 ms until all answered: a broker becomes live
    // (and is asked) only once it answered a heartbeat.
    for (;;) {
      lock.unlock();
      producer_->RequestStats();
      lock.lock();
      const int64_t left = deadline_us - MonoMicros();
      if (left <= 0) break;
      if (cv_.wait_for(
              lock, std::chrono::microseconds(std::min<int64_t>(left, 100'000)),
              [&] { return replies_.size() >= asked_.size(); })) {
        break;
      }
    }
    std::map<std::string, BrokerStatsReply> out = std::move(replies_);
    replies_.clear();
    asked_.clear();
    return out;
  }

  OverviewOptions options_;
  std::unique_ptr<QueueConnection> queue_;
  std::unique_ptr<Producer> producer_;
  std::vector<std::string> registry_brokers_;
  std::vector<std::string> endpoints_;  // asked in this snapshot
  std::map<std::string, Sample> samples_;
  int64_t last_us_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> asked_;                      // mu_
  std::map<std::string, BrokerStatsReply> replies_;  // mu_
};

Result<std::unique_ptr<Overview>> Overview::Create(OverviewOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<Overview>(new Overview(std::move(impl)));
}

Overview::Overview(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Overview::~Overview() = default;

nlohmann::ordered_json Overview::Snapshot() { return impl_->Snapshot(); }

}  // namespace yard::admin
