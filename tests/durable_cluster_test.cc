// Durable mode end to end: real `yard` brokers sharing one real redis-server
// (testing/redis_server.h), real workers, and `yard push` spread over both
// brokers. One process of the cluster fails mid-run (a broker, a worker, or
// Redis itself); every job must still complete, and afterwards Redis must
// hold no job that is waiting, leased, delayed or dead. Duplicates are
// allowed (at-least-once) and only reported: RecordProperty("duplicates")
// and a line on stdout.
//
// Every wait is bounded; the Cluster prints each child's stderr and the
// fixture the tail of redis.log when a test fails.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "queue/redis_layout.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

constexpr int64_t kJobs = 50000;
constexpr Millis kPushBound{120000};     // one push run, start to exit
constexpr Millis kProgressBound{60000};  // until a part of the jobs is done
constexpr Millis kSettleBound{30000};    // until Redis holds no job
constexpr Millis kExitBound{15000};      // a process exiting after a signal
// The fault is injected once the queue counts this many jobs completed.
constexpr int64_t kFaultAfter = kJobs / 5;

// What queue "default" holds in Redis (queue/redis_layout.h).
struct QueueState {
  int64_t ready = 0;    // entries in the ready streams (waiting or leased)
  int64_t leased = 0;   // of those, pending in group "g" (leased)
  int64_t delayed = 0;  // ZCARD of the delayed set
  int64_t dead = 0;     // XLEN of the dead-letter stream
  // The `completed` counter of the queue's stats: jobs completed, counting
  // every run, so runs beyond one per job show here even when the producer
  // never sees their results (they went to a dead broker's inbox).
  int64_t completed = 0;

  bool empty() const { return ready == 0 && leased == 0 && delayed == 0; }
  std::string ToString() const {
    return "ready=" + std::to_string(ready) +
           " leased=" + std::to_string(leased) +
           " delayed=" + std::to_string(delayed) +
           " dead=" + std::to_string(dead) +
           " completed=" + std::to_string(completed);
  }
};

// Reads QueueState with a blocking hiredis connection of its own (not the
// broker's async client), reconnecting after an error so that it survives a
// Redis restart.
class QueueProbe {
 public:
  explicit QueueProbe(uint16_t port) : port_(port) {}
  ~QueueProbe() { Disconnect(); }
  QueueProbe(const QueueProbe&) = delete;
  QueueProbe& operator=(const QueueProbe&) = delete;

  // nullopt when Redis does not answer (down, restarting, loading).
  std::optional<QueueState> Read() {
    QueueState s;
    for (const std::string& stream : keys_.stream) {
      Reply length = Call({"XLEN", stream});
      Reply pending = Call({"XPENDING", stream, kRedisGroup});
      if (!IsInteger(length) || !pending ||
          pending->type != REDIS_REPLY_ARRAY || pending->elements < 1) {
        return std::nullopt;
      }
      s.ready += length->integer;
      s.leased += pending->element[0]->integer;
    }
    Reply delayed = Call({"ZCARD", keys_.delayed});
    Reply dead = Call({"XLEN", keys_.dead});
    Reply completed = Call({"HGET", keys_.stats, "completed"});
    if (!IsInteger(delayed) || !IsInteger(dead) || !completed ||
        completed->type == REDIS_REPLY_ERROR) {
      return std::nullopt;
    }
    s.delayed = delayed->integer;
    s.dead = dead->integer;
    if (completed->type == REDIS_REPLY_STRING) {  // nil before the first
      s.completed = std::stoll(std::string(completed->str, completed->len));
    }
    return s;
  }

 private:
  using Reply = std::unique_ptr<redisReply, void (*)(void*)>;

  static bool IsInteger(const Reply& r) {
    return r && r->type == REDIS_REPLY_INTEGER;
  }

  // The reply (an error reply too); null when Redis is unreachable.
  Reply Call(const std::vector<std::string>& args) {
    Reply none(nullptr, freeReplyObject);
    if (context_ == nullptr) {
      timeval tv{1, 0};
      context_ = redisConnectWithTimeout("127.0.0.1", port_, tv);
      if (context_ == nullptr || context_->err != 0 ||
          redisSetTimeout(context_, tv) != REDIS_OK) {
        Disconnect();
        return none;
      }
    }
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    Reply r(static_cast<redisReply*>(
                redisCommandArgv(context_, static_cast<int>(args.size()),
                                 argv.data(), lengths.data())),
            freeReplyObject);
    if (!r) Disconnect();  // the connection is unusable after an error
    return r;
  }

  void Disconnect() {
    if (context_ != nullptr) redisFree(context_);
    context_ = nullptr;
  }

  uint16_t port_;
  QueueKeys keys_{"default"};
  redisContext* context_ = nullptr;
};

// Two durable brokers on one Redis, two workers serving both.
class DurableClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Create();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    redis_ = std::move(server).value();
    probe_ = std::make_unique<QueueProbe>(redis_->port());
    for (auto* b : {&b1_, &b2_}) {
      *b = cluster_.StartBroker({"--redis", redis_->url(), "--lease-ms", "2000",
                                 "--heartbeat-ms", "200"});
      ASSERT_TRUE(*b);
    }
    int n = 0;
    for (auto** w : {&w1_, &w2_}) {
      *w = cluster_.StartWorker(
          b1_->backend + "," + b2_->backend, 2,
          {"--heartbeat-ms", "200", "--name", "worker-" + std::to_string(++n)});
      ASSERT_TRUE(*w);
    }
  }

  void TearDown() override {
    if (HasFailure() && redis_ != nullptr) {
      std::cerr << "---- redis.log tail (" << redis_->dir() << ") ----\n"
                << redis_->LogTail() << "\n";
    }
  }

  // Which of the brokers and workers have exited ("" when none has), e.g.
  // "broker 1, worker 2".
  std::string Exited() {
    const std::pair<const char*, Process*> all[] = {{"broker 1", b1_->process},
                                                    {"broker 2", b2_->process},
                                                    {"worker 1", w1_},
                                                    {"worker 2", w2_}};
    std::string out;
    for (const auto& [name, p] : all) {
      if (p->Running()) continue;
      out += (out.empty() ? "" : ", ") + std::string(name);
    }
    return out;
  }

  // kJobs echo jobs of 64 bytes over both brokers.
  Process* StartPush() {
    return cluster_.StartPush({"--connect", b1_->frontend + "," + b2_->frontend,
                               "--task", "echo", "--count",
                               std::to_string(kJobs), "--size", "64",
                               "--window", "1000", "--ack-timeout-ms", "1000",
                               "--heartbeat-ms", "200", "--timeout", "100"});
  }

  // Waits until the queue counts kFaultAfter jobs completed, with `push`
  // still running: the moment to inject a fault.
  void AwaitProgress(Process* push) {
    std::optional<QueueState> last;
    bool reached = PollUntil(
        [&] {
          if (auto s = probe_->Read()) last = s;
          return (last && last->completed >= kFaultAfter) || !push->Running() ||
                 !Exited().empty();
        },
        kProgressBound);
    ASSERT_TRUE(reached) << "fewer than " << kFaultAfter << " jobs done in "
                         << kProgressBound.count() << " ms; Redis: "
                         << (last ? last->ToString() : "no answer");
    ASSERT_EQ(Exited(), "") << "exited before the fault";
    ASSERT_TRUE(push->Running())
        << "push ended before the fault; "
        << cluster_.FinishPush(push, Millis(1000)).Describe();
    std::cout << "[ fault      ] at " << last->ToString() << std::endl;
  }

  // The run succeeded and Redis holds no job any more.
  void ExpectAllDone(Process* push) {
    PushRun run = cluster_.FinishPush(push, kPushBound);
    ExpectPushSucceeded(run, kJobs);
    int64_t duplicates = run.Count("duplicates");
    RecordProperty("duplicates", std::to_string(duplicates));

    // Copies a lease reclaim re-ran may still be in flight: let them finish.
    std::optional<QueueState> last;
    PollUntil(
        [&] {
          if (auto s = probe_->Read()) last = s;
          return last && last->empty();
        },
        kSettleBound);
    int64_t completions = last ? last->completed : -1;
    RecordProperty("redis_completed", std::to_string(completions));
    std::cout << "[ duplicates ] " << duplicates << " at the producer (resent "
              << run.Count("resent") << "); Redis counted " << completions
              << " completions of " << kJobs << " jobs" << std::endl;
    ASSERT_TRUE(last) << "Redis did not answer";
    EXPECT_TRUE(last->empty())
        << "jobs stuck in Redis after " << kSettleBound.count()
        << " ms: " << last->ToString();
    EXPECT_EQ(last->dead, 0) << "dead letters: " << last->ToString();
  }

  // Pushes kJobs, runs `fault` once a part of them is done, and checks that
  // all completed and Redis holds none; `gone` is what Exited() must then
  // answer (the process the fault ended, "" for none).
  void RunWithFault(const std::function<void()>& fault,
                    const std::string& gone) {
    Process* push = StartPush();
    ASSERT_TRUE(push);
    ASSERT_NO_FATAL_FAILURE(AwaitProgress(push));
    ASSERT_NO_FATAL_FAILURE(fault());
    ExpectAllDone(push);
    EXPECT_EQ(Exited(), gone);
  }

  // Declared before the cluster: the brokers go before their Redis.
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<QueueProbe> probe_;
  Cluster cluster_;
  std::optional<BrokerHandle> b1_, b2_;
  Process* w1_ = nullptr;
  Process* w2_ = nullptr;
};

// A broker SIGKILLed mid-run: its leases expire and the other broker re-runs
// those jobs; the producer resends what the dead broker had accepted.
TEST_F(DurableClusterTest, BrokerKilledMidRunLosesNothing) {
  RunWithFault([&] { ASSERT_TRUE(b1_->process->Signal(SIGKILL)); }, "broker 1");
}

// A worker SIGKILLed mid-run, while a broker counts jobs in its hands: the
// brokers hand its jobs to the other worker.
TEST_F(DurableClusterTest, WorkerKilledMidRunLosesNothing) {
  auto stats = [&](const BrokerHandle& b) { return BrokerStats(b.frontend); };
  RunWithFault(
      [&] {
        std::string seen;
        ASSERT_TRUE(PollUntil(
            [&] {
              seen.clear();
              for (const auto* b : {&*b1_, &*b2_}) {
                nlohmann::json s = stats(*b);
                nlohmann::json w = WorkerNamed(s["workers"], "worker-1");
                seen += s.dump() + "\n";
                if (w.is_object() && w["outstanding"].get<int64_t>() > 0) {
                  return true;
                }
              }
              return false;
            },
            Millis(30000)))
            << "worker 1 held no job:\n"
            << seen;
        ASSERT_TRUE(w1_->Signal(SIGKILL));
      },
      "worker 1");
  // What it held when it died went back to the queue.
  int64_t redispatched = 0;
  for (const auto* b : {&*b1_, &*b2_}) {
    nlohmann::json s = stats(*b);
    ASSERT_TRUE(s.is_object());
    redispatched += s["counters"]["redispatched"].get<int64_t>();
  }
  EXPECT_GT(redispatched, 0);
}

// Redis stopped with SHUTDOWN (it writes its AOF) and started again on the
// same port and dir a second later: the brokers answer Unavailable
// meanwhile, push retries, the brokers reconnect by themselves.
TEST_F(DurableClusterTest, RedisRestartedMidRunLosesNothing) {
  RunWithFault(
      [&] {
        Status stopped = redis_->Shutdown();
        ASSERT_TRUE(stopped.ok()) << stopped.ToString();
        std::this_thread::sleep_for(Millis(1000));
        Status started = redis_->Start();
        ASSERT_TRUE(started.ok()) << started.ToString();
      },
      "");
}

// Redis unreachable at start: one line on stderr, exit 2, no ready line.
TEST(DurableBrokerTest, UnreachableRedisExitsTwo) {
  Result<uint16_t> port = PickFreeLoopbackPort();  // nothing listens there
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  Cluster c;
  Process* broker =
      c.Start("broker", {"broker", "--frontend", "tcp://127.0.0.1:*",
                         "--backend", "tcp://127.0.0.1:*", "--redis",
                         "redis://127.0.0.1:" + std::to_string(*port)});
  ASSERT_TRUE(broker);
  auto exit = broker->Wait(kExitBound);
  ASSERT_TRUE(exit) << "broker still running " << kExitBound.count()
                    << " ms after start";
  EXPECT_TRUE(exit->ExitedWith(2)) << exit->ToString();
  EXPECT_EQ(broker->ReadAll(Millis(1000)).value_or("(open)"), "");
  std::string err = broker->Stderr();
  EXPECT_FALSE(err.empty());
  EXPECT_EQ(err.find('\n'), err.size() - 1)
      << "not one line on stderr: " << err;
}

}  // namespace
}  // namespace yard
