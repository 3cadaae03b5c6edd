#include "loadtest/loadtest.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "client/producer.h"
#include "common/clock.h"
#include "common/done_counter.h"
#include "common/signals.h"
#include "loadtest/local_cluster.h"
#include "redis/redis_cluster.h"
#include "queue/redis_layout.h"
#include "redis/redis_target.h"
#include "registry/registry.h"
#include "schemas/frames.h"

namespace yard {
namespace {

constexpr int64_t kTickUs = 50'000;
constexpr int64_t kSecondUs = 1'000'000;
constexpr int64_t kLiveProgressUs = 200'000;
// Past the hard bound, how long the producers get to deliver the timeouts
// they fire at it.
constexpr int64_t kCloseGraceUs = 2'000'000;
// Let freshly started workers register before the load begins.
constexpr int64_t kWorkerSettleUs = 500'000;
// --migrate-slot-at: keys moved per tick of the main loop (one CLUSTER
// GETKEYSINSLOT and one MIGRATE), so the loop never stalls for long.
constexpr int kMigrateKeysPerTick = 10;
constexpr int64_t kRegistryTimeoutMs = 2000;

std::string QueueName(const LoadtestOptions& o) {
  return o.queue.empty() ? "default" : o.queue;
}

// The queue's shard count as its brokers agreed on it ({yard}:shards:Q; no
// key: 1, since a broker stores every count above 1 before it gets ready).
Result<int> ReadQueueShards(const std::string& url, const std::string& queue) {
  auto target = ParseRedisTarget(url);
  if (!target.ok()) return target.status();
  auto client = ConnectRegistry(*target, kRegistryTimeoutMs);
  if (!client.ok()) return client.status();
  return ReadShardCount(**client, queue, kRegistryTimeoutMs);
}

// One producer: its Producer, ledger, submitting thread and counters.
struct Lane {
  // Declared before the producer, whose destructor may still call back.
  std::unique_ptr<Ledger> ledger;
  DoneCounter done;
  std::atomic<uint64_t> submitted{0};
  std::atomic<int64_t> last_answer_us{0};
  std::atomic<bool> finished{false};   // the submitting loop ended
  uint64_t quota = 0;                  // UINT64_MAX: until the duration ends
  double rate = 0;                     // jobs/s for this lane
  std::atomic<bool> cut_short{false};  // stopped below quota at the bound
  std::unique_ptr<Producer> producer;
  // After the producer: it calls the producer, so it goes first.
  std::unique_ptr<Discovery> discovery;
  std::thread thread;
};

class Run {
 public:
  Run(const LoadtestOptions& o, std::FILE* log) : o_(o), log_(log) {
    report_.options = o;
    // A cluster it did not start: its mode is not known here.
    report_.mode = !o.connect.empty()                        ? "external"
                   : o.redis.empty() && o.redis_cluster == 0 ? "memory"
                                                             : "durable";
  }
  ~Run() {
    stop_.store(true);
    for (auto& lane : lanes_) {
      if (lane->producer) lane->producer->Close();
      if (lane->thread.joinable()) lane->thread.join();
    }
  }

  Result<LoadtestReport> Go();

 private:
  Status StartCluster();
  Status MakeProducers();
  Status WaitForBrokers();
  void SubmitLoop(Lane& lane);
  void OnOutcome(Lane& lane, const JobOutcome& out);
  // Open loop: when job `seq` of the lane is due (start + seq / rate).
  int64_t IntendedUs(const Lane& lane, uint64_t seq) const {
    return start_us_ +
           static_cast<int64_t>(static_cast<double>(seq) * 1e6 / lane.rate);
  }
  void Sample(int64_t now, bool final);
  // The registry's brokers and their counters, for the report.
  void RecordBrokers();
  void Chaos(int64_t now, bool loading);
  // --migrate-slot-at, in steps: Begin at the time, then one Step per tick
  // until no key is left, then the hand-over; Finish does all that is left
  // at once (the run is ending).
  void BeginMigration(int64_t now);
  void StepMigration();
  void FinishMigration();
  // Records an event at `now` (in time order) and logs it.
  LoadEvent& Event(int64_t now, const char* what, Result<std::string> r);
  void Progress(int64_t now);
  uint64_t Submitted() const;
  uint64_t Answered() const;
  double Since(int64_t now) const { return (now - start_us_) / 1e6; }

  const LoadtestOptions& o_;
  std::FILE* log_;
  LoadtestReport report_;
  std::unique_ptr<LocalCluster> cluster_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::atomic<bool> stop_{false};
  std::string payload_;
  int64_t start_us_ = 0;
  int64_t submit_end_us_ = 0;  // duration mode: submitting stops here
  int64_t deadline_us_ = 0;    // the hard bound
  // Chaos state.
  int64_t next_worker_kill_us_ = 0;
  int64_t broker_kill_us_ = 0, broker_restart_us_ = 0, redis_restart_us_ = 0;
  int64_t broker_add_us_ = 0;
  int64_t migrate_at_us_ = 0;
  // The slot migration under way.
  struct Migration {
    int64_t began_us = 0;
    uint16_t slot = 0;
    size_t from = 0, to = 0;
    int shards = 0;
    std::string what;  // the slot, its shard and the nodes
    int moved = 0;
    int steps = 0;
  };
  std::optional<Migration> migration_;
  // Sampling.
  int64_t last_sample_us_ = 0;
  uint64_t last_sample_submitted_ = 0;
  int64_t next_progress_us_ = 0;
  int64_t last_progress_us_ = 0;
  uint64_t last_progress_answered_ = 0;
  bool progress_drawn_ = false;
};

uint64_t Run::Submitted() const {
  uint64_t n = 0;
  for (const auto& lane : lanes_) n += lane->submitted.load();
  return n;
}

uint64_t Run::Answered() const {
  uint64_t n = 0;
  for (const auto& lane : lanes_) n += lane->done.value();
  return n;
}

Status Run::StartCluster() {
  if (!o_.connect.empty()) {
    report_.endpoints = o_.connect;
    return Status::OK();
  }
  LocalClusterOptions c;
  c.yard_binary = o_.yard_binary;
  if (c.yard_binary.empty()) {
    Result<std::string> self = SelfExecutable();
    if (!self.ok()) return self.status();
    c.yard_binary = *self;
  }
  c.brokers = o_.brokers;
  c.workers = o_.workers;
  c.concurrency = o_.concurrency;
  c.redis = o_.redis;
  c.redis_cluster = o_.redis_cluster;
  c.redis_fsync_always = o_.redis_fsync_always;
  c.heartbeat_ms = o_.heartbeat_ms;
  c.broker_args = o_.broker_args;
  c.worker_args = o_.worker_args;
  c.discover = o_.discover;
  c.dir = o_.logs_dir;
  auto cluster = LocalCluster::Start(std::move(c));
  if (!cluster.ok()) return cluster.status();
  cluster_ = std::move(cluster).value();
  report_.endpoints = cluster_->frontends();
  report_.redis_url = cluster_->redis_url();
  std::string redis;
  if (!report_.redis_url.empty()) {
    // The brokers settled the queue's shard count before they got ready.
    auto shards = ReadQueueShards(report_.redis_url, QueueName(o_));
    if (shards.ok()) report_.redis_shards = *shards;
    if (o_.redis_cluster > 0) {
      redis = " (Redis Cluster of " + std::to_string(o_.redis_cluster) +
              " primaries";
      if (report_.redis_shards > 0) {
        redis +=
            ", queue in " + std::to_string(report_.redis_shards) + " shard(s)";
      }
      redis += ") " + report_.redis_url;
    } else if (cluster_->owns_redis()) {
      redis = ", redis-server " + report_.redis_url;
    }
  }
  std::fprintf(log_,
               "loadtest: %d broker(s), %d worker(s) x %d, %s mode%s; logs in "
               "%s\n",
               o_.brokers, o_.workers, o_.concurrency, report_.mode.c_str(),
               redis.c_str(), cluster_->dir().c_str());
  if (o_.workers == 0) {
    std::fprintf(log_, "loadtest: --workers 0: nothing will run the jobs\n");
  }
  return Status::OK();
}

Status Run::MakeProducers() {
  const int p = o_.producers;
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  for (int i = 0; i < p; ++i) {
    auto lane = std::make_unique<Lane>();
    ProducerOptions po;
    po.brokers = report_.endpoints;
    if (o_.discover) {
      Discovery::Options d;
      d.url = cluster_->redis_url();
      d.side = Discovery::Side::kFrontend;
      d.queue = QueueName(o_);
      d.wait_ms = static_cast<int64_t>(o_.connect_timeout_s * 1e3);
      // Brokers it has not seen yet come through the discovery thread;
      // WaitForBrokers waits for every producer to reach all of them.
      auto found = Discovery::Create(d);
      if (!found.ok()) return found.status();
      lane->discovery = std::move(found).value();
      po.brokers = lane->discovery->endpoints();
    }
    po.heartbeat_ms = o_.heartbeat_ms;
    po.max_batch = static_cast<size_t>(o_.batch);
    po.default_timeout_ms =
        std::max<int64_t>(1, static_cast<int64_t>(EffectiveTimeoutS(o_) * 1e3));
    auto made = Producer::Create(std::move(po));
    if (!made.ok()) return made.status();
    lane->producer = std::move(made).value();
    if (lane->discovery) {
      Producer* producer = lane->producer.get();
      lane->discovery->Start([producer](const std::vector<std::string>& set) {
        producer->SetBrokers(set);
      });
    }
    lane->ledger = std::make_unique<Ledger>(rng(), payload_, !o_.payload_given,
                                            o_.task == "echo");
    if (o_.jobs > 0) {
      lane->quota = o_.jobs / static_cast<uint64_t>(p) +
                    (static_cast<uint64_t>(i) < o_.jobs % p ? 1 : 0);
    } else {
      lane->quota = Ledger::kMaxJobs;
    }
    lane->rate = o_.rate / p;
    lanes_.push_back(std::move(lane));
  }
  return Status::OK();
}

Status Run::WaitForBrokers() {
  const int64_t until =
      MonoMicros() + static_cast<int64_t>(o_.connect_timeout_s * 1e6);
  const uint64_t want = report_.endpoints.size();
  while (true) {
    bool all = true;
    for (const auto& lane : lanes_) {
      if (lane->producer->counters().live_brokers < want) all = false;
    }
    if (all) return Status::OK();
    if (StopRequested()) return Status::Unavailable("interrupted");
    if (MonoMicros() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string which;
  for (const auto& ep : report_.endpoints)
    which += (which.empty() ? "" : ",") + ep;
  return Status::Unavailable(
      "no answer from the broker(s) at " + which + " within " +
      std::to_string(o_.connect_timeout_s).substr(0, 5) +
      " s (is a broker running there? --connect-timeout sets the wait)");
}

void Run::SubmitLoop(Lane& lane) {
  const uint64_t window = static_cast<uint64_t>(o_.window);
  const size_t batch = static_cast<size_t>(o_.batch);
  const uint64_t refill = std::clamp<uint64_t>(window / 8, 1, batch);
  std::vector<std::string> bufs(batch);
  std::vector<JobSpec> specs(batch);
  for (JobSpec& s : specs) {
    s.task = o_.task;
    s.queue = o_.queue;
  }
  const int64_t start_unix_ms =
      UnixMillis() - (MonoMicros() - start_us_) / 1000;
  // Two pointers: std::function keeps it inline, so the copy SubmitBatch
  // makes for each job allocates nothing.
  const OutcomeCallback on_outcome = [this, &lane](const JobOutcome& out) {
    OnOutcome(lane, out);
  };
  const bool open_loop = lane.rate > 0;
  Ledger* ledger = lane.ledger.get();
  DoneCounter* done = &lane.done;

  uint64_t seq = 0;
  while (seq < lane.quota && !stop_.load(std::memory_order_relaxed) &&
         !StopRequested()) {
    const int64_t now = MonoMicros();
    if (submit_end_us_ && now >= submit_end_us_) break;
    if (now >= deadline_us_) {
      lane.cut_short.store(true);
      break;
    }
    const int64_t tick = std::min(deadline_us_, now + kTickUs);
    const uint64_t in_flight = seq - std::min(seq, done->value());
    if (in_flight >= window) {
      done->WaitFor(seq - window + refill, tick);
      continue;
    }
    uint64_t n =
        std::min<uint64_t>({window - in_flight, batch, lane.quota - seq});
    if (open_loop) {
      // Jobs whose intended time has come.
      const auto due =
          static_cast<uint64_t>(std::floor(
              static_cast<double>(now - start_us_) * lane.rate / 1e6)) +
          1;
      if (due <= seq) {
        std::this_thread::sleep_for(std::chrono::microseconds(
            std::min(IntendedUs(lane, seq), tick) - now));
        continue;
      }
      n = std::min(n, due - seq);
    }
    const int64_t timeout_ms = std::max<int64_t>(
        1, o_.job_timeout_s > 0 ? static_cast<int64_t>(o_.job_timeout_s * 1e3)
                                : (deadline_us_ - now) / 1000);
    const int64_t created_ms = start_unix_ms + (now - start_us_) / 1000;
    for (uint64_t k = 0; k < n; ++k) {
      ledger->Reserve(seq + k);
      JobSpec& s = specs[k];
      s.id = ledger->IdFor(seq + k);
      s.payload = ledger->Payload(seq + k, &bufs[k]);
      s.created_ms = created_ms;
      s.deadline_ms = o_.job_timeout_s > 0 ? created_ms + timeout_ms : 0;
    }
    lane.producer->SubmitBatch(std::span<const JobSpec>(specs.data(), n),
                               on_outcome, timeout_ms);
    seq += n;
    lane.submitted.store(seq, std::memory_order_relaxed);
  }
  lane.finished.store(true);
}

// On the lane's producer I/O thread. Closed loop: latency from submit to
// result. Open loop: from the job's intended send time (start + n / rate).
void Run::OnOutcome(Lane& lane, const JobOutcome& out) {
  const int64_t now = MonoMicros();
  int64_t latency = out.latency_us;
  if (lane.rate > 0) latency = now - IntendedUs(lane, out.id.lo);
  lane.ledger->Record(out, latency);
  if (out.kind == JobOutcome::Kind::kCompleted ||
      out.kind == JobOutcome::Kind::kFailed) {
    lane.last_answer_us.store(now, std::memory_order_relaxed);
  }
  lane.done.Add();
}

void Run::RecordBrokers() {
  auto target = ParseRedisTarget(cluster_->redis_url());
  if (!target.ok()) return;
  auto client = ConnectRegistry(*target, kRegistryTimeoutMs);
  if (!client.ok()) return;
  // Let every broker refresh its record (counters) once more.
  std::this_thread::sleep_for(std::chrono::milliseconds(o_.heartbeat_ms + 100));
  auto records = ReadRegistry(**client);
  if (!records.ok()) return;
  for (const BrokerRecord& b : *records) {
    std::map<std::string, std::string> row = {{"id", b.id},
                                              {"frontend", b.frontend}};
    for (const auto& [k, v] : b.counters) row[k] = std::to_string(v);
    report_.brokers.push_back(std::move(row));
  }
}

// `now`: when it happened (a slot migration's event, recorded at its end,
// has the time it began).
LoadEvent& Run::Event(int64_t now, const char* what, Result<std::string> r) {
  LoadEvent e;
  e.t = Since(now);
  e.what = what;
  e.ok = r.ok();
  e.detail = r.ok() ? *r : r.status().ToString();
  if (!e.ok) report_.problems.push_back(std::string(what) + ": " + e.detail);
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fprintf(log_, "[%7.2fs] %s: %s\n", e.t, what, e.detail.c_str());
  std::fflush(log_);
  auto& events = report_.events;
  auto after = std::upper_bound(
      events.begin(), events.end(), e.t,
      [](double t, const LoadEvent& other) { return t < other.t; });
  return *events.insert(after, std::move(e));
}

void Run::BeginMigration(int64_t now) {
  RedisCluster* redis = cluster_->redis_cluster();
  if (redis == nullptr) {
    Event(now, "migrate-slot", Status::InvalidArgument("no Redis Cluster"));
    return;
  }
  // Shard 0's hash tag: QueueKeys knows the one-shard layout ("jq:NAME")
  // from the sharded one (ShardHashTag).
  const std::string queue = QueueName(o_);
  auto shards = ReadQueueShards(cluster_->redis_url(), queue);
  if (!shards.ok()) {
    Event(now, "migrate-slot",
          Status(shards.status().code(),
                 "cannot read the shard count: " + shards.status().message()));
    return;
  }
  Migration m;
  m.began_us = now;
  m.shards = *shards;
  const QueueKeys keys(queue, 0, m.shards);
  std::string tagged = "{";
  tagged += keys.tag;
  tagged += '}';
  m.slot = KeySlot(tagged);
  auto from = redis->Owner(m.slot);
  if (!from.ok()) {
    Event(now, "migrate-slot", from.status());
    return;
  }
  m.from = *from;
  m.to = (m.from + 1) % redis->size();
  m.what = "slot " + std::to_string(m.slot) + " (" + tagged + ", shard 0 of " +
           std::to_string(m.shards) + " of queue " + queue + ") from node " +
           std::to_string(m.from) + " (port " +
           std::to_string(redis->node(m.from).port()) + ") to node " +
           std::to_string(m.to) + " (port " +
           std::to_string(redis->node(m.to).port()) + ")";
  if (Status st = redis->BeginMigration(m.slot, m.to); !st.ok()) {
    Event(now, "migrate-slot", Status(st.code(), m.what + ": " + st.message()));
    return;
  }
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fprintf(log_, "[%7.2fs] migrate-slot: %s begun\n", Since(now),
               m.what.c_str());
  std::fflush(log_);
  migration_ = std::move(m);
}

void Run::StepMigration() {
  Migration& m = *migration_;
  auto moved = cluster_->redis_cluster()->MoveKeys(kMigrateKeysPerTick);
  ++m.steps;
  if (moved.ok() && *moved > 0) {
    m.moved += *moved;
    return;
  }
  if (!moved.ok()) {
    // The slot stays MIGRATING/IMPORTING: the report says how far it got.
    Event(m.began_us, "migrate-slot",
          Status(moved.status().code(),
                 m.what + ": after " + std::to_string(m.moved) +
                     " keys: " + moved.status().message()));
    migration_.reset();
    return;
  }
  FinishMigration();
}

void Run::FinishMigration() {
  Migration m = std::move(*migration_);
  migration_.reset();
  RedisCluster* redis = cluster_->redis_cluster();
  // What is left (all of it when the run ends early), then SETSLOT NODE.
  auto rest = redis->MoveKeys(INT32_MAX);
  Status st = rest.ok() ? redis->FinishMigration() : rest.status();
  if (rest.ok()) m.moved += *rest;
  const int64_t ms = (MonoMicros() - m.began_us) / 1000;
  Result<std::string> r =
      st.ok() ? Result<std::string>(m.what + ": " + std::to_string(m.moved) +
                                    " keys moved in " + std::to_string(ms) +
                                    " ms (" + std::to_string(m.steps) +
                                    " steps of at most " +
                                    std::to_string(kMigrateKeysPerTick) + ")")
              : Result<std::string>(Status(
                    st.code(), m.what + ": after " + std::to_string(m.moved) +
                                   " keys: " + st.message()));
  Event(m.began_us, "migrate-slot", std::move(r)).numbers = {
      {"slot", m.slot},
      {"from_node", static_cast<int64_t>(m.from)},
      {"to_node", static_cast<int64_t>(m.to)},
      {"shards", m.shards},
      {"keys_moved", m.moved},
      {"duration_ms", ms},
  };
}

void Run::Chaos(int64_t now, bool loading) {
  if (!cluster_) return;
  // A migration under way goes on after the load ends; it begins only
  // while the load runs.
  if (migration_) {
    StepMigration();
  } else if (loading && migrate_at_us_ && now >= migrate_at_us_) {
    migrate_at_us_ = 0;
    BeginMigration(now);
  }
  // Kills happen while the load runs; a killed broker is always restarted.
  if (loading && next_worker_kill_us_ && now >= next_worker_kill_us_) {
    Event(now, "kill-worker", cluster_->KillWorker());
    // After a slow step, the next kill is a whole period away, not at once.
    const auto every = static_cast<int64_t>(o_.kill_worker_every_s * 1e6);
    while (next_worker_kill_us_ <= MonoMicros()) next_worker_kill_us_ += every;
  }
  if (loading && broker_kill_us_ && now >= broker_kill_us_) {
    broker_kill_us_ = 0;
    Event(now, "kill-broker", cluster_->KillBroker(0));
    if (!o_.broker_stays_down) {
      broker_restart_us_ = now + static_cast<int64_t>(o_.broker_down_s * 1e6);
    }
  }
  if (loading && broker_add_us_ && now >= broker_add_us_) {
    broker_add_us_ = 0;
    Event(now, "add-broker", cluster_->AddBroker());
  }
  if (broker_restart_us_ && now >= broker_restart_us_) {
    broker_restart_us_ = 0;
    Event(now, "restart-broker", cluster_->RestartBroker(0));
  }
  if (loading && redis_restart_us_ && now >= redis_restart_us_) {
    redis_restart_us_ = 0;
    Event(now, "restart-redis", cluster_->RestartRedis());
  }
}

void Run::Sample(int64_t now, bool final) {
  if (!final && now - last_sample_us_ < kSecondUs) return;
  SeriesPoint p;
  p.t = Since(now);
  p.span_s = (now - last_sample_us_) / 1e6;
  Ledger::Second sec;
  Histogram merged;
  for (auto& lane : lanes_) {
    lane->ledger->TakeSecond(&sec);
    p.completed += sec.completed;
    p.failed += sec.failed;
    p.lost += sec.lost;
    merged.Merge(sec.latency);
  }
  const uint64_t submitted = Submitted();
  p.submitted = submitted - last_sample_submitted_;
  p.in_flight = submitted - std::min(submitted, Answered());
  p.jobs_per_s = p.span_s > 0 ? (p.completed + p.failed) / p.span_s : 0;
  p.p50_us = merged.Percentile(0.50);
  p.p99_us = merged.Percentile(0.99);
  p.max_us = merged.max();
  report_.latency.Merge(merged);
  last_sample_us_ = now;
  last_sample_submitted_ = submitted;
  if (final && p.span_s < 0.001 && p.completed + p.failed + p.lost == 0) {
    return;  // nothing happened since the last whole second
  }
  report_.series.push_back(p);
}

void Run::Progress(int64_t now) {
  const bool live = o_.progress;
  const int64_t every =
      live ? kLiveProgressUs : static_cast<int64_t>(o_.progress_every_s * 1e6);
  if (every <= 0 || now < next_progress_us_) return;
  next_progress_us_ = now + every;
  const uint64_t answered = Answered();
  const uint64_t submitted = Submitted();
  const double rate = last_progress_us_ && now > last_progress_us_
                          ? (answered - last_progress_answered_) * 1e6 /
                                static_cast<double>(now - last_progress_us_)
                          : 0;
  last_progress_us_ = now;
  last_progress_answered_ = answered;
  uint64_t failed = 0, lost = 0, resent = 0, errors = 0;
  for (const auto& lane : lanes_) {
    const ProducerCounters c = lane->producer->counters();
    failed += c.failed + c.rejected;
    lost += c.timed_out;
    resent += c.resent;
    errors += c.errors;
  }
  std::fprintf(log_,
               "%s[%7.2fs] %" PRIu64 " done  %.0f jobs/s  %" PRIu64
               " in flight  %" PRIu64 " failed  %" PRIu64 " lost  %" PRIu64
               " resent  %" PRIu64 " errors%s",
               live ? "\r\x1b[K" : "", Since(now), answered, rate,
               submitted - std::min(submitted, answered), failed, lost, resent,
               errors, live ? "" : "\n");
  std::fflush(log_);
  progress_drawn_ = live;
}

Result<LoadtestReport> Run::Go() {
  payload_ = o_.payload_given ? o_.payload : TextPayload(o_.size);
  if (Status st = StartCluster(); !st.ok()) return st;
  if (Status st = MakeProducers(); !st.ok()) return st;
  if (Status st = WaitForBrokers(); !st.ok()) {
    if (cluster_) {
      cluster_->KeepLogs();
      return Status(st.code(),
                    st.message() + "; cluster:\n" + cluster_->Describe(600));
    }
    return st;
  }
  if (cluster_ && o_.workers > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(kWorkerSettleUs));
  }

  start_us_ = MonoMicros();
  deadline_us_ = start_us_ + static_cast<int64_t>(EffectiveTimeoutS(o_) * 1e6);
  if (o_.duration_s > 0) {
    submit_end_us_ = start_us_ + static_cast<int64_t>(o_.duration_s * 1e6);
  }
  if (o_.kill_worker_every_s > 0) {
    next_worker_kill_us_ =
        start_us_ + static_cast<int64_t>(o_.kill_worker_every_s * 1e6);
  }
  // A one-off chaos time, S seconds into the load; 0 (off) when S < 0.
  auto at = [this](double s) -> int64_t {
    return s < 0 ? 0
                 : start_us_ +
                       std::max<int64_t>(1, static_cast<int64_t>(s * 1e6));
  };
  broker_kill_us_ = at(o_.kill_broker_at_s);
  broker_add_us_ = at(o_.add_broker_at_s);
  redis_restart_us_ = at(o_.restart_redis_at_s);
  migrate_at_us_ = at(o_.migrate_slot_at_s);
  last_sample_us_ = start_us_;
  next_progress_us_ = start_us_ + kLiveProgressUs;
  last_progress_us_ = start_us_;
  for (auto& lane : lanes_) {
    Lane* l = lane.get();
    l->thread = std::thread([this, l] { SubmitLoop(*l); });
  }

  // The main loop: chaos, samples, progress, until every job is answered.
  int64_t now = start_us_;
  while (true) {
    std::this_thread::sleep_for(std::chrono::microseconds(kTickUs));
    now = MonoMicros();
    if (StopRequested()) {
      report_.interrupted = true;
      break;
    }
    const bool all_sent =
        std::all_of(lanes_.begin(), lanes_.end(),
                    [](const auto& l) { return l->finished.load(); });
    Chaos(now, !all_sent);
    Sample(now, false);
    Progress(now);
    // A slot migration under way ends before the run does.
    if (all_sent && Answered() >= Submitted() && !migration_) break;
    if (now >= deadline_us_ + kCloseGraceUs) {
      report_.hit_timeout = true;
      break;
    }
  }
  if (migration_) FinishMigration();
  stop_.store(true);
  for (auto& lane : lanes_) lane->thread.join();
  for (auto& lane : lanes_) lane->producer->Close();  // the rest time out
  now = MonoMicros();
  Sample(now, true);
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fflush(log_);
  report_.wall_s = Since(now);
  if (o_.discover && cluster_) RecordBrokers();

  int64_t last_answer = 0;
  for (auto& lane : lanes_) {
    const Ledger::Totals t = lane->ledger->Audit(lane->submitted.load());
    Ledger::Totals& sum = report_.totals;
    sum.submitted += t.submitted;
    sum.completed += t.completed;
    sum.failed += t.failed;
    sum.unknown_task += t.unknown_task;
    sum.rejected += t.rejected;
    sum.timed_out += t.timed_out;
    sum.unanswered += t.unanswered;
    sum.corrupt += t.corrupt;
    sum.foreign += t.foreign;
    sum.repeated += t.repeated;
    const ProducerCounters c = lane->producer->counters();
    report_.duplicated += c.duplicates;
    report_.resent += c.resent;
    report_.busy += c.busy;
    last_answer = std::max(last_answer, lane->last_answer_us.load());
  }
  const Ledger::Totals& t = report_.totals;
  report_.lost = t.timed_out + t.unanswered;
  report_.elapsed_s =
      last_answer > start_us_ ? (last_answer - start_us_) / 1e6 : 0;
  report_.jobs_per_s =
      report_.elapsed_s > 0
          ? (t.completed + t.corrupt + t.failed) / report_.elapsed_s
          : 0;
  if (t.corrupt) {
    report_.problems.push_back(std::to_string(t.corrupt) +
                               " echo results did not match their payload");
  }
  if (t.foreign || t.repeated) {
    report_.problems.push_back(
        std::to_string(t.foreign) + " outcomes for unknown ids, " +
        std::to_string(t.repeated) + " second outcomes for one id");
  }
  const uint64_t cut = static_cast<uint64_t>(
      std::count_if(lanes_.begin(), lanes_.end(),
                    [](const auto& l) { return l->cut_short.load(); }));
  if (report_.hit_timeout || cut > 0) {
    report_.problems.push_back(
        "the run hit its time bound (--timeout " +
        std::to_string(static_cast<int64_t>(EffectiveTimeoutS(o_))) +
        " s) before it submitted every job");
  }
  if (t.rejected) {
    report_.problems.push_back(std::to_string(t.rejected) +
                               " jobs refused (too large, or invalid)");
  }
  if (t.unknown_task) {
    report_.problems.push_back(std::to_string(t.unknown_task) +
                               " jobs failed: no worker knows task '" +
                               o_.task + "'");
  }
  if (!report_.interrupted) {
    // The one-off chaos events still pending when the load ended.
    const std::pair<int64_t, const char*> events[] = {
        {broker_kill_us_, "--kill-broker-at"},
        {broker_add_us_, "--add-broker-at"},
        {redis_restart_us_, "--restart-redis-at"},
        {migrate_at_us_, "--migrate-slot-at"}};
    for (const auto& [pending_us, flag] : events) {
      if (pending_us) {
        report_.problems.push_back(std::string(flag) +
                                   ": the load ended before it");
      }
    }
  }
  if (cluster_) {
    const std::string dead = cluster_->Casualties();
    if (!dead.empty()) report_.problems.push_back(dead);
    cluster_->Stop();
    const bool failed = report_.ExitCode() != 0;
    if (failed || o_.keep_logs || !o_.logs_dir.empty()) {
      cluster_->KeepLogs();
      report_.logs_dir = cluster_->dir();
    }
  }
  return std::move(report_);
}

}  // namespace

std::string TextPayload(int64_t size) {
  static constexpr char kChars[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> pick(0, sizeof(kChars) - 2);
  std::string s(static_cast<size_t>(size), 'x');
  for (char& c : s) c = kChars[pick(rng)];
  return s;
}

int LoadtestReport::ExitCode() const {
  if (interrupted) return 130;
  return lost == 0 && problems.empty() ? 0 : 1;
}

Result<LoadtestReport> ExecuteLoadtest(const LoadtestOptions& options,
                                       std::FILE* log) {
  if (Status st = ValidateLoadtest(options); !st.ok()) return st;
  Run run(options, log);
  return run.Go();
}

}  // namespace yard
