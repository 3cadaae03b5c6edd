// Redis Sentinel: sentinel:// URLs, resolving the primary through
// real Sentinels, and a failover under load with real `yard` processes.
//
// The set: one primary, one replica, three Sentinels (quorum 2, down-after
// 1000 ms), all real servers on 127.0.0.1 (testing/redis_server.h). The
// failover tests SIGKILL the primary while `yard push` runs through a broker
// on sentinel://...; the Sentinels promote the replica, the broker resolves
// the new primary by itself and the run finishes. What each setting
// promises (README, "Redis Sentinel"):
//   --redis-wait-replicas 1: no accepted job is lost;
//   no WAIT: accepted jobs the old primary had not yet sent to its replica
//     can be lost; they are among the jobs in flight at the kill, so at
//     most the producer's window.
//
// WaitRefusesSubmitsWithoutAReplica drives a RedisQueue in-process to pin
// down the WAIT path itself: accepted with the replica, Unavailable without
// it (one probe batch at a time, the rest refused at once), accepted again
// once it is back.
//
// Every wait is bounded; on failure the Cluster prints each child's stderr
// and the fixture the tails of the Redis and Sentinel logs.
#include "testing/redis_sentinel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "redis/redis_target.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

using std::chrono::steady_clock;

const bool kSigpipeIgnored = [] {  // hiredis writes with write(2)
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

constexpr char kMaster[] = "yardmaster";
constexpr Millis kReadyBound{20000};     // replica in sync, Sentinels met
constexpr Millis kFailoverBound{30000};  // kill -> a Sentinel names the replica
constexpr Millis kSettleBound{15000};    // until Redis holds no job
// The run: kJobs echo jobs at kRate jobs/s with kWindow in flight; the
// primary dies once kKillAfter are completed.
constexpr int64_t kJobs = 20000;
constexpr int64_t kRate = 2500;
constexpr int64_t kWindow = 1000;
constexpr int64_t kKillAfter = 4000;
constexpr int kPushTimeoutS = 30;  // push's own limit (lost jobs wait it out)

int64_t MillisSince(steady_clock::time_point t) {
  return std::chrono::duration_cast<Millis>(steady_clock::now() - t).count();
}

// ---------------------------------------------------------------- parsing

// ------------------------------------------------------------- the set

// What the queue "default" holds on one server (queue/redis_layout.h).
struct QueueState {
  int64_t ready = 0, leased = 0, delayed = 0, dead = 0, completed = 0;
  bool empty() const { return ready == 0 && leased == 0 && delayed == 0; }
  std::string ToString() const {
    return "ready=" + std::to_string(ready) +
           " leased=" + std::to_string(leased) +
           " delayed=" + std::to_string(delayed) +
           " dead=" + std::to_string(dead) +
           " completed=" + std::to_string(completed);
  }
};

// nullopt when the server does not answer.
std::optional<QueueState> ReadQueue(uint16_t port) {
  auto c = RedisClient::Connect({"127.0.0.1", port, 0, {}}, 500);
  if (!c.ok()) return std::nullopt;
  const QueueKeys keys("default");
  QueueState s;
  for (const std::string& stream : keys.stream) {
    auto len = RedisCall(**c, {"XLEN", stream}, 500);
    auto pending = RedisCall(**c, {"XPENDING", stream, kRedisGroup}, 500);
    if (!len.ok()) return std::nullopt;
    s.ready += len->integer;
    // No group yet (NOGROUP) reads as none leased.
    if (pending.ok() && !pending->elements.empty()) {
      s.leased += pending->elements[0].integer;
    }
  }
  auto delayed = RedisCall(**c, {"ZCARD", keys.delayed}, 500);
  auto dead = RedisCall(**c, {"XLEN", keys.dead}, 500);
  auto completed = RedisCall(**c, {"HGET", keys.stats, "completed"}, 500);
  if (!delayed.ok() || !dead.ok() || !completed.ok()) return std::nullopt;
  s.delayed = delayed->integer;
  s.dead = dead->integer;
  if (!completed->is_nil()) s.completed = std::stoll(completed->str);
  return s;
}

// One primary, one replica of it, three Sentinels watching it.
class SentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto primary = RedisServer::Create();
    ASSERT_TRUE(primary.ok()) << primary.status().ToString();
    primary_ = std::move(primary).value();
    RedisServer::Options replica_options;
    replica_options.replica_of = primary_->port();
    auto replica = RedisServer::Create(replica_options);
    ASSERT_TRUE(replica.ok()) << replica.status().ToString();
    replica_ = std::move(replica).value();
    url_ = "sentinel://";
    for (int i = 0; i < 3; ++i) {
      auto s = RedisSentinel::Create(kMaster, primary_->port());
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      url_ += (i ? "," : "") + (*s)->address();
      sentinels_.push_back(std::move(s).value());
    }
    url_ += std::string("/") + kMaster;
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (auto* s : {primary_.get(), replica_.get()}) {
      if (s == nullptr) continue;
      std::cerr << "---- redis.log tail (port " << s->port() << ") ----\n"
                << s->LogTail() << "\n";
    }
    for (auto& s : sentinels_) {
      std::cerr << "---- sentinel.log tail (" << s->address() << ") ----\n"
                << s->LogTail() << "\n";
    }
  }

  // The replica is in sync and every Sentinel knows it and the others: the
  // set can fail over from now on.
  void AwaitReady() {
    const auto start = steady_clock::now();
    Status s = replica_->AwaitReplicaLink(kReadyBound);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = primary_->AwaitReplicas(1, kReadyBound);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (auto& sentinel : sentinels_) {
      s = sentinel->AwaitTopology(1, 2, kReadyBound);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    std::cout << "[ set ready  ] in " << MillisSince(start) << " ms"
              << std::endl;
  }

  // Pushes kJobs through a broker on url_ (with `broker_flags`), SIGKILLs
  // the primary once kKillAfter are done, and waits for the run. With
  // `restart_old_primary` the killed server comes back as a replica of the
  // promoted one once the Sentinels have switched.
  PushRun RunWithFailover(std::vector<std::string> broker_flags,
                          bool restart_old_primary) {
    PushRun none;
    AwaitReady();
    if (HasFatalFailure()) return none;
    std::vector<std::string> flags = {
        // 400 ms: the registry TTL (3 heartbeats) must be over twice the
        // WAIT timeout (500 ms).
        "--redis", url_, "--lease-ms", "6000", "--heartbeat-ms", "400"};
    flags.insert(flags.end(), broker_flags.begin(), broker_flags.end());
    broker_ = cluster_.StartBroker(flags);
    if (!broker_) return none;
    for (int i = 0; i < 2; ++i) {
      if (!cluster_.StartWorker(broker_->backend, 2, {"--heartbeat-ms", "200"}))
        return none;
    }
    Process* push = cluster_.StartPush(
        {"--connect", broker_->frontend, "--task", "echo", "--count",
         std::to_string(kJobs), "--size", "64", "--rate", std::to_string(kRate),
         "--window", std::to_string(kWindow), "--ack-timeout-ms", "1000",
         "--heartbeat-ms", "200", "--timeout", std::to_string(kPushTimeoutS)});
    if (!push) return none;
    const auto run_start = steady_clock::now();

    std::optional<QueueState> last;
    bool reached = PollUntil(
        [&] {
          if (auto s = ReadQueue(primary_->port())) last = s;
          return (last && last->completed >= kKillAfter) || !push->Running();
        },
        Millis(30000));
    EXPECT_TRUE(reached && push->Running())
        << "push ended, or fewer than " << kKillAfter
        << " jobs done in 30 s; primary: "
        << (last ? last->ToString() : "no answer");
    if (!reached || !push->Running())
      return cluster_.FinishPush(push, Millis(1000));

    const auto kill = steady_clock::now();
    primary_->Kill();
    std::cout << "[ kill       ] primary :" << primary_->port() << " after "
              << MillisSince(run_start) << " ms at " << last->ToString()
              << std::endl;
    bool switched = PollUntil(
        [&] {
          for (auto& s : sentinels_) {
            auto port = s->MasterPort();
            if (port.ok() && *port == replica_->port()) return true;
          }
          return false;
        },
        kFailoverBound);
    failover_ms_ = MillisSince(kill);
    EXPECT_TRUE(switched) << "no Sentinel named the replica within "
                          << kFailoverBound.count() << " ms";
    std::cout << "[ failover   ] Sentinel switched to :" << replica_->port()
              << " " << failover_ms_ << " ms after the kill" << std::endl;
    RecordProperty("failover_ms", std::to_string(failover_ms_));
    if (switched && restart_old_primary) {
      primary_->set_replica_of(replica_->port());
      Status s = primary_->Start();
      EXPECT_TRUE(s.ok()) << s.ToString();
      std::cout << "[ restart    ] old primary back as a replica "
                << MillisSince(kill) << " ms after the kill" << std::endl;
    }
    PushRun run =
        cluster_.FinishPush(push, Millis(kPushTimeoutS * 1000 + 10000));
    std::cout << "[ push       ] " << MillisSince(run_start)
              << " ms: " << run.out << std::endl;
    return run;
  }

  // The broker is still the first one (it was never restarted), and it
  // logged the switch to the promoted replica.
  void ExpectBrokerFollowed() {
    ASSERT_TRUE(broker_);
    EXPECT_TRUE(broker_->process->Running());
    const std::string err = broker_->process->Stderr();
    const std::string line =
        " is 127.0.0.1:" + std::to_string(replica_->port());
    EXPECT_NE(err.find(line), std::string::npos)
        << "the broker did not log '" << line << "'; stderr:\n"
        << err;
  }

  // Redis (the promoted replica) eventually holds no job: copies re-run
  // after the failover have finished.
  void ExpectQueueSettles() {
    std::optional<QueueState> last;
    PollUntil(
        [&] {
          if (auto s = ReadQueue(replica_->port())) last = s;
          return last && last->empty();
        },
        kSettleBound);
    ASSERT_TRUE(last) << "the promoted replica does not answer";
    EXPECT_TRUE(last->empty()) << last->ToString();
    EXPECT_EQ(last->dead, 0) << last->ToString();
    std::cout << "[ settled    ] " << last->ToString() << std::endl;
  }

  // Declared before the cluster: the brokers go before the servers.
  std::unique_ptr<RedisServer> primary_, replica_;
  std::vector<std::unique_ptr<RedisSentinel>> sentinels_;
  std::string url_;
  Cluster cluster_;
  std::optional<BrokerHandle> broker_;
  int64_t failover_ms_ = -1;
};

// Turns q's loop until `until()` or the bound.
bool Pump(DurableQueue& q, const std::function<bool()>& until, Millis bound) {
  const int64_t deadline = MonoMillis() + bound.count();
  while (!until()) {
    if (MonoMillis() >= deadline) return false;
    zmq_pollitem_t items[8];
    const int n = q.PollItems(items, 8);
    zmq_poll(items, n, 10);
    q.OnPollEvents(items, n);
    q.Tick(MonoMillis());
  }
  return true;
}

// One submit batch of one echo job, answered later through `status`.
class OneSubmit {
 public:
  explicit OneSubmit(DurableQueue& q) {
    JobSpec spec;
    spec.id = JobId::Random();
    spec.task = "echo";
    Bytes b = writer_.EncodeJob(spec);
    auto blob = std::make_shared<std::string>(
        reinterpret_cast<const char*>(b.data()), b.size());
    NewJob j;
    j.id = spec.id;
    j.blob.owner = blob;
    j.blob.bytes = {reinterpret_cast<const uint8_t*>(blob->data()),
                    blob->size()};
    j.route = "producer";
    q.Push({&j, 1}, [this](Status s, std::span<const PushOutcome>) {
      status_ = std::move(s);
    });
  }
  const std::optional<Status>& status() const { return status_; }

 private:
  Writer writer_;
  std::optional<Status> status_;
};

TEST_F(SentinelTest, WaitRefusesSubmitsWithoutAReplica) {
  Status ready = primary_->AwaitReplicas(1, kReadyBound);
  ASSERT_TRUE(ready.ok()) << ready.ToString();
  RedisQueueOptions o;
  o.url = url_;
  o.lease_ms = 3000;
  o.wait_replicas = 1;
  o.wait_timeout_ms = 500;
  {
    RedisQueueOptions bad = o;
    bad.wait_timeout_ms = 1001;  // more than a third of the lease
    auto refused = NewRedisQueue(bad);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    bad = o;
    bad.wait_replicas = -1;
    EXPECT_FALSE(NewRedisQueue(bad).ok());
  }
  auto made = NewRedisQueue(o);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  DurableQueue& q = **made;
  auto answered = [](const OneSubmit& s) {
    return [&s] { return s.status().has_value(); };
  };

  // Accepted with the replica online. A replica busy right after its sync
  // (it fsyncs its new AOF) can miss one 500 ms WAIT on a loaded machine:
  // a few tries.
  Status first;
  for (int i = 0; i < 10; ++i) {
    OneSubmit submit(q);
    ASSERT_TRUE(Pump(q, answered(submit), Millis(5000)));
    first = *submit.status();
    if (first.ok()) break;
  }
  ASSERT_TRUE(first.ok()) << first.ToString();

  // The replica gone: WAIT times out, the batch is Unavailable (its job is
  // in Redis nonetheless: the producer's resend makes a duplicate).
  ASSERT_TRUE(replica_->Stop().ok());
  OneSubmit probe(q);
  OneSubmit second(q);  // joins the probe's WAIT
  const auto start = steady_clock::now();
  ASSERT_TRUE(Pump(q, answered(second), Millis(5000)));
  ASSERT_TRUE(probe.status().has_value());
  EXPECT_GE(MillisSince(start), 450);
  EXPECT_EQ(probe.status()->code(), StatusCode::kUnavailable);
  EXPECT_NE(probe.status()->message().find("0 of 1 replicas"),
            std::string::npos)
      << probe.status()->ToString();
  EXPECT_EQ(second.status()->code(), StatusCode::kUnavailable);
  EXPECT_TRUE(q.available());  // the primary itself is fine

  // While short: one probe waits, the batches behind it are refused at once.
  OneSubmit probe2(q);
  OneSubmit refused(q);
  ASSERT_TRUE(refused.status().has_value());
  EXPECT_EQ(refused.status()->code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status()->message().find("fewer than 1 replicas"),
            std::string::npos)
      << refused.status()->ToString();
  ASSERT_TRUE(Pump(q, answered(probe2), Millis(5000)));
  EXPECT_EQ(probe2.status()->code(), StatusCode::kUnavailable);

  // The replica back: accepted again.
  ASSERT_TRUE(replica_->Start().ok());
  ready = primary_->AwaitReplicas(1, kReadyBound);
  ASSERT_TRUE(ready.ok()) << ready.ToString();
  // As above, a replica fresh from its sync may miss a WAIT or two.
  bool accepted = false;
  for (int i = 0; i < 10 && !accepted; ++i) {
    OneSubmit again(q);
    ASSERT_TRUE(Pump(q, answered(again), Millis(5000)));
    accepted = again.status()->ok();
  }
  EXPECT_TRUE(accepted);
}

TEST_F(SentinelTest, ResolvesThePrimaryWhileASentinelIsDown) {
  auto target = ParseRedisTarget(url_);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  auto primary = ResolveRedisTarget(*target, 2000);
  ASSERT_TRUE(primary.ok()) << primary.status().ToString();
  EXPECT_EQ(primary->host, "127.0.0.1");
  EXPECT_EQ(primary->port, primary_->port());
  auto client = ConnectRedisTarget(*target, 2000);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto set = RedisCall(**client, {"SET", "k", "v"}, 2000);
  EXPECT_TRUE(set.ok()) << set.status().ToString();

  // The first Sentinel stopped: the second answers, and goes to the front.
  ASSERT_TRUE(sentinels_[0]->Stop().ok());
  auto fresh = ParseRedisTarget(url_);
  ASSERT_TRUE(fresh.ok());
  primary = ResolveRedisTarget(*fresh, 2000);
  ASSERT_TRUE(primary.ok()) << primary.status().ToString();
  EXPECT_EQ(primary->port, primary_->port());
  EXPECT_EQ(fresh->addresses[0].port, sentinels_[1]->port());

  // A name no Sentinel monitors: Unavailable, naming it and each Sentinel.
  auto unknown = ParseRedisTarget(url_ + "x");
  ASSERT_TRUE(unknown.ok());
  auto missing = ResolveRedisTarget(*unknown, 2000);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(missing.status().message().find("does not monitor 'yardmasterx'"),
            std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find(sentinels_[0]->address()),
            std::string::npos)
      << missing.status().message();

  // A Sentinel whose "primary" says ROLE slave is not believed (one
  // Sentinel alone never reaches quorum 2, so it cannot fail anything over).
  auto odd = RedisSentinel::Create("odd", replica_->port());
  ASSERT_TRUE(odd.ok()) << odd.status().ToString();
  auto odd_target =
      ParseRedisTarget("sentinel://" + (*odd)->address() + "/odd");
  ASSERT_TRUE(odd_target.ok());
  auto not_master = ResolveRedisTarget(*odd_target, 2000);
  ASSERT_FALSE(not_master.ok());
  EXPECT_NE(not_master.status().message().find("is a slave, not a master"),
            std::string::npos)
      << not_master.status().message();

  // No Sentinel up: Unavailable at their refusals, not at a timeout (30 s
  // here: one waited out would say "timed out").
  for (auto& s : sentinels_) ASSERT_TRUE(s->Stop().ok());
  auto none = ParseRedisTarget(url_);
  ASSERT_TRUE(none.ok());
  auto down = ConnectRedisTarget(*none, 30000);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), StatusCode::kUnavailable);
  const std::string why = down.status().message();
  EXPECT_EQ(why.find("timed out"), std::string::npos) << why;
  EXPECT_EQ(why.find("out of time"), std::string::npos) << why;
  for (auto& s : sentinels_) {  // each asked, each with its own answer
    EXPECT_NE(why.find("; " + s->address() + ": "), std::string::npos) << why;
  }
}

// With WAIT for one replica, a failover loses no accepted job. The killed
// primary comes back as a replica of the promoted one (until then WAIT
// cannot succeed with a single replica, so submits are refused and resent).
TEST_F(SentinelTest, FailoverWithWaitLosesNothing) {
  PushRun run = RunWithFailover(
      {"--redis-wait-replicas", "1", "--redis-wait-timeout-ms", "500"},
      /*restart_old_primary=*/true);
  ASSERT_FALSE(HasFatalFailure());
  ExpectPushSucceeded(run, kJobs);
  RecordProperty("duplicates", std::to_string(run.Count("duplicates")));
  ExpectBrokerFollowed();
  ExpectQueueSettles();
}

// Without WAIT, the failover may lose the jobs the old primary accepted but
// had not yet sent to its replica: a part of those in flight at the kill,
// so at most the window. Everything else completes, with no restart.
TEST_F(SentinelTest, FailoverWithoutWaitLosesAtMostTheJobsInFlight) {
  PushRun run = RunWithFailover({}, /*restart_old_primary=*/false);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(run.exit.has_value()) << run.Describe();
  ASSERT_TRUE(run.report.is_object()) << run.Describe();
  const int64_t lost = run.Count("lost");
  RecordProperty("lost", std::to_string(lost));
  std::cout << "[ lost       ] " << lost << " of " << kJobs << std::endl;
  EXPECT_EQ(run.Count("submitted"), kJobs) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 0) << run.Describe();
  EXPECT_EQ(run.Count("completed") + lost, kJobs) << run.Describe();
  // Every job was sent: what is lost, the failover lost.
  EXPECT_EQ(run.Count("unsent"), 0) << run.Describe();
  EXPECT_LE(lost, kWindow) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(lost == 0 ? 0 : 1)) << run.Describe();
  ExpectBrokerFollowed();
  ExpectQueueSettles();
}

}  // namespace
}  // namespace yard
