// The run: the cluster and the producers set up, the lanes submitting, and
// the main loop (loadtest/run.h).
#include "loadtest/run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <span>
#include <utility>

#include "common/clock.h"
#include "common/signals.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"
#include "redis/redis_target.h"

namespace yard::loadtest_internal {
namespace {

// The main loop's tick, and the longest a lane waits before it looks again.
constexpr int64_t kTickUs = 50'000;
// Past the hard bound, how long the producers get to deliver the timeouts
// they fire at it.
constexpr int64_t kCloseGraceUs = 2'000'000;
// Let freshly started workers register before the load begins.
constexpr int64_t kWorkerSettleUs = 500'000;

}  // namespace

std::string QueueName(const LoadtestOptions& o) {
  return o.queue.empty() ? "default" : o.queue;
}

Result<int> ReadQueueShards(const std::string& url, const std::string& queue) {
  auto target = ParseRedisTarget(url);
  if (!target.ok()) return target.status();
  auto client = ConnectRegistry(*target, RedisTimeoutMs());
  if (!client.ok()) return client.status();
  return ReadShardCount(**client, queue, RedisTimeoutMs());
}

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
  c.redis_with_password = o_.redis_with_password;
  c.redis_password_file = o_.redis_password_file;
  c.redis_cluster = o_.redis_cluster;
  c.redis_fsync_always = o_.redis_fsync_always;
  c.heartbeat_ms = o_.heartbeat_ms;
  c.broker_args = o_.broker_args;
  c.worker_args = o_.worker_args;
  c.discover = o_.discover;
  c.curve = o_.curve;
  c.dir = o_.logs_dir;
  auto cluster = LocalCluster::Start(std::move(c));
  if (!cluster.ok()) return cluster.status();
  cluster_ = std::move(cluster).value();
  report_.endpoints = cluster_->frontends();
  report_.redis_url = RedactRedisUrl(cluster_->redis_url());
  std::string redis;
  if (!report_.redis_url.empty()) {
    // The brokers settled the queue's shard count before they got ready.
    auto shards = ReadQueueShards(cluster_->redis_url(), QueueName(o_));
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
    po.curve = cluster_ ? cluster_->curve_client() : o_.curve_client;
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
  std::vector<const Producer*> producers;
  for (const auto& lane : lanes_) producers.push_back(lane->producer.get());
  return yard::WaitForBrokers(producers, report_.endpoints,
                              o_.connect_timeout_s);
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

Result<LoadtestReport> Run::Go() {
  if (Status st = Prepare(); !st.ok()) return st;
  Schedule();
  StartLanes();
  MainLoop();
  StopLoad();
  Audit();
  AddProblems();
  FinishCluster();
  return std::move(report_);
}

// The cluster up, the producers made and connected to every broker.
Status Run::Prepare() {
  payload_ = o_.payload_given ? o_.payload : TextPayload(o_.size);
  if (Status st = StartCluster(); !st.ok()) return st;
  if (Status st = MakeProducers(); !st.ok()) return st;
  if (Status st = WaitForBrokers(); !st.ok()) {
    if (cluster_) {
      return Status(st.code(),
                    st.message() + "; cluster:\n" + cluster_->Describe(600));
    }
    return st;
  }
  if (cluster_ && o_.workers > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(kWorkerSettleUs));
  }
  return Status::OK();
}

// The load starts now: its bounds, the chaos times, the first sample.
void Run::Schedule() {
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
}

void Run::StartLanes() {
  for (auto& lane : lanes_) {
    Lane* l = lane.get();
    l->thread = std::thread([this, l] { SubmitLoop(*l); });
  }
}

// The main loop: chaos, samples, progress, until every job is answered.
void Run::MainLoop() {
  while (true) {
    std::this_thread::sleep_for(std::chrono::microseconds(kTickUs));
    const int64_t now = MonoMicros();
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
}

// Submitting stops; jobs still unanswered time out; the last sample.
void Run::StopLoad() {
  if (migration_) FinishMigration();
  stop_.store(true);
  for (auto& lane : lanes_) lane->thread.join();
  for (auto& lane : lanes_) lane->producer->Close();  // the rest time out
  const int64_t now = MonoMicros();
  Sample(now, true);
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fflush(log_);
  report_.wall_s = Since(now);
  if (o_.discover && cluster_) RecordBrokers();
}

}  // namespace yard::loadtest_internal
