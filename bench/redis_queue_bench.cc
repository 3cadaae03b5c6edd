// Micro-benchmarks of the durable queue (queue/redis_queue.cc) against a real
// redis-server that the benchmark starts itself (testing/redis_server.h: a free
// 127.0.0.1 port, a temp dir, appendonly yes, appendfsync everysec; stopped
// and removed at exit). One queue instance stands for one broker and is
// driven the way the broker's loop drives it: PollItems -> zmq_poll ->
// OnPollEvents -> Want/Claim -> Tick.
//
//   BM_RedisPush               Push a batch of 64-byte echo jobs, wait for
//                              the outcomes (nothing claims them).
//   BM_RedisRoundTrip          Push a batch, claim all of it, Complete each
//                              job with a small result blob, wait until the
//                              queue is Drained(): the full durable cycle.
//   BM_RedisRoundTripNoResults The same with result_ttl_s = 0 (results are
//                              not kept).
//
// Arg: batch size (1, 16, 256). Times are wall clock (the process mostly
// waits for Redis); items/s is jobs per second. Counters, per job, from the
// queue's DescribeStats: redis_cmds (commands sent) and redis_rtts (round
// trips); they include the queue's background work (lease touches, leader
// and stats refreshes) during the run. Encoding the job and result blobs is
// not timed (see codec_bench for that).
//
// Each run (every arg, every iteration-count probe) starts on an empty
// Redis (FLUSHALL) with a queue of its own name, so the keys stay bounded.
//
//   redis_queue_bench --benchmark_min_time=1
//   redis_queue_bench --benchmark_filter=RoundTrip/256
//
// $YARD_REDIS_SERVER overrides /usr/bin/redis-server.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <zmq.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/job_id.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"
#include "schemas/codec.h"
#include "testing/redis_server.h"

namespace yard {
namespace {

constexpr size_t kPayloadBytes = 64;
constexpr int64_t kPumpTimeoutMs = 10000;

// The server and an admin connection, started on first use (so that
// --benchmark_list_tests starts nothing) and stopped by main().
struct Env {
  std::unique_ptr<RedisServer> server;
  std::unique_ptr<RedisClient> admin;
};
std::unique_ptr<Env> g_env;
Status g_env_error;
bool g_failed = false;  // a benchmark was skipped with an error: exit 1

Env* GetEnv() {
  if (g_env || !g_env_error.ok()) return g_env.get();
  auto env = std::make_unique<Env>();
  auto server = RedisServer::Create();
  if (!server.ok()) {
    g_env_error = server.status();
    return nullptr;
  }
  env->server = std::move(server).value();
  auto address = ParseRedisUrl(env->server->url());
  if (!address.ok()) {
    g_env_error = address.status();
    return nullptr;
  }
  auto admin = RedisClient::Connect(*address, 5000);
  if (!admin.ok()) {
    g_env_error = admin.status();
    return nullptr;
  }
  env->admin = std::move(admin).value();
  g_env = std::move(env);
  return g_env.get();
}

// One batch: job blobs (kept alive by `keep`, as a broker keeps the inbound
// message), the NewJobs pointing into them, and a result blob per job.
struct Batch {
  std::shared_ptr<std::vector<std::string>> keep;
  std::vector<NewJob> jobs;
  std::vector<std::string> results;
};

uint64_t Counter(const nlohmann::json& stats, const char* name) {
  return stats.at("durable").at("counters").at(name).get<uint64_t>();
}

// One queue on a freshly flushed Redis, and the loop that drives it.
class Harness {
 public:
  explicit Harness(benchmark::State& state) : state_(state) {
    std::vector<uint8_t> payload(kPayloadBytes);
    std::mt19937 rng(42);
    for (auto& b : payload) b = static_cast<uint8_t>(rng());
    payload_ = std::move(payload);
  }

  // False (and the benchmark skipped) when Redis or the queue is not there.
  bool Open(RedisQueueOptions options) {
    Env* env = GetEnv();
    if (env == nullptr) return Error(g_env_error.ToString());
    auto flushed = RedisCall(*env->admin, {"FLUSHALL"});
    if (!flushed.ok()) return Error(flushed.status().ToString());
    static int runs = 0;
    options.url = env->server->url();
    options.queue = "bench-" + std::to_string(++runs);
    options.consumer = "bench";
    // Never Busy: the runs push far fewer jobs, and Busy is not measured.
    options.capacity = std::numeric_limits<uint32_t>::max();
    auto q = NewRedisQueue(options);
    if (!q.ok()) return Error(q.status().ToString());
    queue_ = std::move(q).value();
    return true;
  }

  DurableQueue& queue() { return *queue_; }
  void set_want(size_t n) { want_ = n; }
  std::vector<ClaimedJob>& claimed() { return claimed_; }

  bool Error(const std::string& message) {
    g_failed = true;
    state_.SkipWithError(message.c_str());
    return false;
  }

  // Fresh ids, so that results land in hashes the way real traffic's do.
  Batch MakeBatch(size_t n) {
    Batch b;
    b.keep = std::make_shared<std::vector<std::string>>();
    b.keep->reserve(n);
    b.results.reserve(n);
    JobSpec spec;
    spec.task = "echo";
    spec.payload = Bytes(payload_.data(), payload_.size());
    spec.created_ms = UnixMillis();
    for (size_t i = 0; i < n; ++i) {
      spec.id = JobId::Random();
      b.keep->emplace_back(AsString(writer_.EncodeJob(spec)));
      b.results.emplace_back(AsString(writer_.EncodeResult(
          spec.id, wire::ResultStatus::Ok, AsBytes("ok"), {}, 1, 42)));
    }
    for (const std::string& blob : *b.keep) {
      const auto* job = flatbuffers::GetRoot<wire::Job>(blob.data());
      NewJob j;
      j.id = FromWire(job->id());
      j.blob.owner = b.keep;
      j.blob.bytes = AsBytes(blob);
      j.priority = job->priority();
      j.route = "producer-1";
      b.jobs.push_back(j);
    }
    return b;
  }

  // Pushes and waits for the outcomes; false (skipped) unless all accepted.
  bool Push(const Batch& b) {
    bool done = false;
    Status status;
    bool accepted = true;
    queue_->Push(b.jobs, [&](Status s, std::span<const PushOutcome> out) {
      status = s;
      for (PushOutcome o : out) accepted &= o == PushOutcome::kAccepted;
      done = true;
    });
    if (!Pump([&] { return done; })) return Error("push timed out");
    if (!status.ok()) return Error("push: " + status.ToString());
    if (!accepted) return Error("push: a job was not accepted");
    return true;
  }

  // Turns the loop until `until()`; false (skipped) after kPumpTimeoutMs.
  // Each turn claims up to want_ jobs into claimed_.
  bool Pump(const std::function<bool()>& until) {
    const int64_t deadline = MonoMillis() + kPumpTimeoutMs;
    zmq_pollitem_t items[8];
    while (!until()) {
      if (MonoMillis() >= deadline) return Error("timed out waiting for Redis");
      int n = queue_->PollItems(items, 8);
      zmq_poll(items, n, 20);
      queue_->OnPollEvents(items, n);
      queue_->Want(want_);
      if (want_ > 0) {
        queue_->Claim(want_, [&](std::span<const ClaimedJob> jobs) {
          claimed_.insert(claimed_.end(), jobs.begin(), jobs.end());
        });
      }
      queue_->Tick(MonoMillis());
    }
    return true;
  }

  nlohmann::json Stats() const {
    nlohmann::json j;
    queue_->DescribeStats(&j);
    return j;
  }

  // items/s and the per-job Redis counters since `before`.
  void Report(const nlohmann::json& before, size_t batch) {
    const auto jobs =
        static_cast<int64_t>(state_.iterations()) * static_cast<int64_t>(batch);
    state_.SetItemsProcessed(jobs);
    if (jobs == 0) return;
    nlohmann::json after = Stats();
    auto per_job = [&](const char* name) {
      return static_cast<double>(Counter(after, name) - Counter(before, name)) /
             static_cast<double>(jobs);
    };
    state_.counters["redis_cmds"] = per_job("redis_commands");
    state_.counters["redis_rtts"] = per_job("redis_round_trips");
  }

 private:
  benchmark::State& state_;
  std::vector<uint8_t> payload_;
  Writer writer_;
  std::unique_ptr<DurableQueue> queue_;
  size_t want_ = 0;
  std::vector<ClaimedJob> claimed_;  // only the ids are used (views expire)
};

void BM_RedisPush(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Harness h(state);
  if (!h.Open(RedisQueueOptions())) return;
  const nlohmann::json before = h.Stats();
  for (auto _ : state) {
    state.PauseTiming();
    Batch b = h.MakeBatch(batch);
    state.ResumeTiming();
    if (!h.Push(b)) break;
  }
  h.Report(before, batch);
}

// Push, claim, Complete each, wait until Drained() (every write answered).
void RoundTrip(benchmark::State& state, const RedisQueueOptions& options) {
  const auto batch = static_cast<size_t>(state.range(0));
  Harness h(state);
  if (!h.Open(options)) return;
  // Idle workers: the queue keeps a claim (XREADGROUP BLOCK) outstanding,
  // as a broker with free credit does.
  h.set_want(batch);
  const nlohmann::json before = h.Stats();
  for (auto _ : state) {
    state.PauseTiming();
    Batch b = h.MakeBatch(batch);
    h.claimed().clear();
    state.ResumeTiming();
    if (!h.Push(b)) break;
    if (!h.Pump([&] { return h.claimed().size() >= batch; })) break;
    if (h.claimed().size() != batch) {
      h.Error("claimed more jobs than pushed");
      break;
    }
    bool known = true;
    for (size_t i = 0; i < batch && known; ++i) {
      const JobId id = h.claimed()[i].id;
      // Claimed in push order (one record); search if not.
      size_t r = i;
      if (b.jobs[r].id != id) {
        r = 0;
        while (r < batch && b.jobs[r].id != id) ++r;
        known = r < batch;
        if (!known) break;
      }
      h.queue().Complete(id, AsBytes(b.results[r]));
    }
    if (!known) {
      h.Error("claimed a job that was not pushed");
      break;
    }
    if (!h.Pump([&] { return h.queue().Drained(); })) break;
  }
  h.Report(before, batch);
}

void BM_RedisRoundTrip(benchmark::State& state) {
  RoundTrip(state, RedisQueueOptions());
}

void BM_RedisRoundTripNoResults(benchmark::State& state) {
  RedisQueueOptions options;
  options.result_ttl_s = 0;
  RoundTrip(state, options);
}

void BatchArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("batch")->Arg(1)->Arg(16)->Arg(256);
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_RedisPush)->Apply(BatchArgs);
BENCHMARK(BM_RedisRoundTrip)->Apply(BatchArgs);
BENCHMARK(BM_RedisRoundTripNoResults)->Apply(BatchArgs);

}  // namespace
}  // namespace yard

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::warn);  // one "durable queue" line a run
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  yard::g_env.reset();  // stops redis-server and removes its dir
  return yard::g_failed ? 1 : 0;
}
