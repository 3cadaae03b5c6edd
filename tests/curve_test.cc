// CURVE end to end with real `yard` processes (memory mode, loopback): keys
// from `yard keygen`, a broker with --curve-secret and three role key sets,
// and peers that must be refused at the handshake (plaintext, unknown keys,
// keys of the wrong role), at the message (StatsRequest without an admin
// key), or after a SIGHUP removed their key; valid keys run jobs with
// nothing lost.
#include <gtest/gtest.h>

#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <zmq.hpp>

#include "client/producer.h"
#include "schemas/codec.h"
#include "schemas/frames.h"
#include "security/curve_keys.h"
#include "tests/cluster.h"
#include "tests/curve_key_files.h"

namespace yard {
namespace {

// A raw DEALER (CURVE when `curve` is enabled) that records what it hears.
class RawPeer {
 public:
  RawPeer(zmq::context_t& ctx, const std::string& ep,
          const CurveClientOptions& curve)
      : socket_(ctx, zmq::socket_type::dealer) {
    ConfigureSocket(socket_, Limits(), 0);
    EXPECT_TRUE(ApplyCurveClient(socket_, curve, ep).ok());
    EXPECT_TRUE(Connect(socket_, ep).ok());
  }
  void Send(Bytes body) { (void)SendDealer(socket_, body); }
  // Reads for up to `wait`; returns the kinds heard (and keeps the last
  // Stats / Error).
  std::vector<wire::Body> Listen(Millis wait, bool stop_at_first = false) {
    std::vector<wire::Body> kinds;
    const auto end = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < end) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, Millis(20));
      DealerMessage m;
      while (RecvDealer(socket_, &m)) {
        Decoded d = Decode(m.bytes(), Limits());
        if (!d.ok()) continue;
        kinds.push_back(d.kind());
        if (d.kind() == wire::Body::Stats) {
          stats = nlohmann::json::parse(
              AsString(d.envelope->body_as_Stats()->json()));
        } else if (d.kind() == wire::Body::Error) {
          error = d.envelope->body_as_Error()->code();
        }
      }
      if (stop_at_first && !kinds.empty()) break;
    }
    return kinds;
  }
  nlohmann::json stats;
  wire::ErrorCode error = wire::ErrorCode::None;

 private:
  zmq::socket_t socket_;
};

nlohmann::json StatsAs(zmq::context_t& ctx, const std::string& frontend,
                       const CurveClientOptions& curve,
                       Millis wait = Millis(3000)) {
  RawPeer admin(ctx, frontend, curve);
  Writer w;
  admin.Send(w.EncodeStatsRequest());
  admin.Listen(wait, /*stop_at_first=*/true);
  return admin.stats;
}

int64_t Refused(const nlohmann::json& stats, const char* why) {
  if (!stats.contains("auth_refused")) return -1;
  return stats["auth_refused"].value(why, int64_t{-1});
}

std::vector<std::string> CurveBrokerArgs(const Keys& k,
                                         const std::string& workers) {
  return {"--curve-secret",  k.Secret("broker"),
          "--producer-keys", k.SetOf("producers", {"producer"}),
          "--worker-keys",   workers,
          "--admin-keys",    k.Public("admin"),
          "--heartbeat-ms",  "200"};
}

TEST(CurveTest, RefusesPlaintextAndWrongRolesRunsValidKeys) {
  Cluster c;
  Keys k(c, {"broker", "producer", "worker", "admin", "stranger"});
  auto broker =
      c.StartBroker(CurveBrokerArgs(k, k.SetOf("workers", {"worker"})));
  ASSERT_TRUE(broker);
  // Jobs wait in the broker: no valid worker yet.
  Process* push =
      c.StartPush({"--connect", broker->frontend, "--task", "echo", "--count",
                   "20000", "--size", "64", "--timeout", "30", "--curve-secret",
                   k.Secret("producer"), "--broker-key", k.Public("broker")});
  ASSERT_TRUE(push);
  zmq::context_t ctx;
  const CurveClientOptions plain;
  ReadyInfo ready;
  ready.credit = 1000;
  ready.capacity = 10;
  ready.tasks = {"echo"};
  ready.name = "intruder";
  Writer w;
  RawPeer plain_worker(ctx, broker->backend, plain);
  RawPeer producer_as_worker(ctx, broker->backend, k.Client("producer"));
  RawPeer stranger_worker(ctx, broker->backend, k.Client("stranger"));
  for (RawPeer* p : {&plain_worker, &producer_as_worker, &stranger_worker}) {
    p->Send(w.EncodeReady(ready));
  }
  BlobBatch submit;
  JobSpec job;
  job.id = JobId::Random();
  job.task = "echo";
  submit.AddSubmission(w.EncodeJob(job), 1);
  RawPeer plain_producer(ctx, broker->frontend, plain);
  RawPeer worker_as_producer(ctx, broker->frontend, k.Client("worker"));
  for (RawPeer* p : {&plain_producer, &worker_as_producer}) {
    p->Send(submit.FinishSubmit());
  }
  // While jobs are queued, none of them hears anything: no Dispatch, no
  // Accepted.
  const Millis wait(1500);
  EXPECT_TRUE(plain_worker.Listen(wait).empty());
  for (RawPeer* p : {&producer_as_worker, &stranger_worker, &plain_producer,
                     &worker_as_producer}) {
    EXPECT_TRUE(p->Listen(Millis(50)).empty());
  }
  nlohmann::json stats = StatsAs(ctx, broker->frontend, k.Client("admin"));
  ASSERT_TRUE(stats.is_object()) << "the admin key got no stats";
  // Plaintext peers: a mechanism mismatch, or a hang-up when the peer saw
  // the mismatch first (ZMTP greetings cross); each retries, so both show.
  EXPECT_GE(Refused(stats, "plaintext") + Refused(stats, "hung_up"), 2)
      << stats.dump();
  EXPECT_GE(Refused(stats, "wrong_role"), 2) << stats.dump();
  EXPECT_GE(Refused(stats, "unknown_key"), 1) << stats.dump();
  EXPECT_EQ(stats["counters"]["dispatched"], 0) << stats.dump();
  EXPECT_TRUE(stats["workers"].empty()) << stats.dump();
  // Stats need the admin role: a producer key gets Forbidden, plaintext
  // nothing at all.
  RawPeer producer(ctx, broker->frontend, k.Client("producer"));
  producer.Send(w.EncodeStatsRequest());
  producer.Listen(Millis(2000), /*stop_at_first=*/true);
  EXPECT_TRUE(producer.stats.is_null());
  EXPECT_EQ(producer.error, wire::ErrorCode::Forbidden);
  EXPECT_TRUE(StatsAs(ctx, broker->frontend, plain, Millis(500)).is_null());
  // A valid worker key: the queued jobs run, none lost.
  ASSERT_TRUE(
      c.StartWorker(broker->backend, 2,
                    {"--curve-secret", k.Secret("worker"), "--broker-key",
                     k.Public("broker"), "--heartbeat-ms", "200"}));
  PushRun run = c.FinishPush(push, Millis(40000));
  ExpectPushSucceeded(run, 20000);
  stats = StatsAs(ctx, broker->frontend, k.Client("admin"));
  EXPECT_GE(stats.value("role_violations", 0), 1) << stats.dump();
}

TEST(CurveTest, SighupRefusesARemovedWorkerKeyKeepsTheOthers) {
  Cluster c;
  Keys k(c, {"broker", "producer", "admin", "w1", "w2"});
  const std::string workers = k.SetOf("workers", {"w1", "w2"});
  auto broker = c.StartBroker(CurveBrokerArgs(k, workers));
  ASSERT_TRUE(broker);
  auto worker_args = [&](const std::string& key, const std::string& name) {
    return std::vector<std::string>{
        "--curve-secret", k.Secret(key), "--broker-key", k.Public("broker"),
        "--heartbeat-ms", "200",         "--name",       name};
  };
  ASSERT_TRUE(c.StartWorker(broker->backend, 2, worker_args("w1", "one")));
  ASSERT_TRUE(c.StartWorker(broker->backend, 2, worker_args("w2", "two")));
  zmq::context_t ctx;
  const CurveClientOptions admin = k.Client("admin");
  nlohmann::json stats;
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = StatsAs(ctx, broker->frontend, admin);
        return stats.is_object() && stats["workers"].size() == 2;
      },
      Millis(10000)))
      << stats.dump();
  std::filesystem::remove(workers + "/w2.public");
  ASSERT_TRUE(broker->process->Signal(SIGHUP));
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = StatsAs(ctx, broker->frontend, admin);
        return stats.is_object() && stats["auth"]["reloads"] == 1;
      },
      Millis(5000)))
      << stats.dump();
  // A new worker with the removed key is refused at the handshake; the one
  // that connected before is refused at its next message and dropped.
  ASSERT_TRUE(c.StartWorker(broker->backend, 2, worker_args("w2", "three")));
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = StatsAs(ctx, broker->frontend, admin);
        return stats.is_object() && Refused(stats, "unknown_key") >= 1 &&
               Refused(stats, "removed_key") >= 1 &&
               stats["workers"].size() == 1;
      },
      Millis(5000)))
      << stats.dump();
  EXPECT_TRUE(WorkerNamed(stats["workers"], "one").is_object()) << stats.dump();
  PushRun run =
      c.RunPush({"--connect", broker->frontend, "--task", "echo", "--count",
                 "2000", "--size", "64", "--timeout", "20", "--curve-secret",
                 k.Secret("producer"), "--broker-key", k.Public("broker")},
                Millis(30000));
  ExpectPushSucceeded(run, 2000);
  stats = StatsAs(ctx, broker->frontend, admin);
  ASSERT_TRUE(stats.is_object());
  EXPECT_TRUE(WorkerNamed(stats["workers"], "one").is_object()) << stats.dump();
  EXPECT_TRUE(WorkerNamed(stats["workers"], "two").is_null()) << stats.dump();
  EXPECT_TRUE(WorkerNamed(stats["workers"], "three").is_null()) << stats.dump();
}

TEST(CurveTest, LoadtestRunsWithCurveEndToEnd) {
  Cluster c;
  Process* p =
      c.Start("loadtest", {"loadtest", "--curve", "--jobs", "20000", "--quiet",
                           "--json", "-", "--timeout", "30"});
  ASSERT_TRUE(p);
  auto out = p->ReadAll(Millis(40000));
  auto exit = p->Wait(Millis(5000));
  ASSERT_TRUE(exit) << p->Stderr();
  EXPECT_TRUE(exit->ExitedWith(0)) << p->Stderr() << out.value_or("");
  auto j = nlohmann::json::parse(out.value_or(""), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out.value_or("");
  EXPECT_EQ(j["totals"]["lost"], 0) << j["totals"].dump();
  EXPECT_EQ(j["totals"]["completed"], 20000) << j["totals"].dump();
}

// A producer key over its rate limit is answered Busy and resends: all its
// jobs complete, none lost; another producer key within its own limit is
// never refused meanwhile.
TEST(CurveTest, RateLimitsAreKeptPerProducerKey) {
  Cluster c;
  Keys k(c, {"broker", "flood", "calm", "worker", "admin"});
  auto broker =
      c.StartBroker({"--curve-secret", k.Secret("broker"), "--producer-keys",
                     k.SetOf("producers", {"flood", "calm"}), "--worker-keys",
                     k.SetOf("workers", {"worker"}), "--admin-keys",
                     k.Public("admin"), "--heartbeat-ms", "200",
                     "--producer-rate", "1000", "--producer-burst", "1000"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      c.StartWorker(broker->backend, 4,
                    {"--heartbeat-ms", "200", "--curve-secret",
                     k.Secret("worker"), "--broker-key", k.Public("broker")}));
  auto push = [&](const std::string& key, int count) {
    return c.StartPush({"--connect", broker->frontend, "--task", "echo",
                        "--count", std::to_string(count), "--size", "64",
                        "--timeout", "30", "--curve-secret", k.Secret(key),
                        "--broker-key", k.Public("broker")});
  };
  // The flood asks for 5,000 jobs at once: about ten times its rate.
  Process* flood = push("flood", 5000);
  Process* calm = push("calm", 500);
  ASSERT_TRUE(flood && calm);
  PushRun calm_run = c.FinishPush(calm, Millis(40000));
  PushRun flood_run = c.FinishPush(flood, Millis(40000));
  ExpectPushSucceeded(flood_run, 5000);
  ExpectPushSucceeded(calm_run, 500);
  EXPECT_GT(flood_run.Count("busy"), 0) << flood_run.Describe();
  EXPECT_EQ(calm_run.Count("busy"), 0) << calm_run.Describe();
  zmq::context_t ctx;
  nlohmann::json stats = StatsAs(ctx, broker->frontend, k.Client("admin"));
  ASSERT_TRUE(stats.is_object());
  EXPECT_GT(stats["counters"]["busy_quota"].get<int64_t>(), 0) << stats.dump();
}

// Submits one echo job from `peer` and waits for its Accepted.
void SubmitOneJob(RawPeer& peer, JobSpec* spec) {
  Writer w;
  spec->id = JobId::Random();
  spec->task = "echo";
  std::string blob(AsString(w.EncodeJob(*spec)));
  BlobBatch batch;
  batch.AddSubmission(AsBytes(blob), 1);
  peer.Send(batch.FinishSubmit());
  ASSERT_EQ(peer.Listen(Millis(5000), /*stop_at_first=*/true),
            std::vector<wire::Body>{wire::Body::Accepted});
}

// With CURVE a job belongs to its producer's key: another connection with
// the same key may cancel it, another producer key may not.
TEST(CurveTest, TheSubmittersKeyMayCancelOthersMayNot) {
  Cluster c;
  Keys k(c, {"broker", "owner", "stranger", "worker", "admin"});
  auto broker = c.StartBroker(
      {"--curve-secret", k.Secret("broker"), "--producer-keys",
       k.SetOf("producers", {"owner", "stranger"}), "--worker-keys",
       k.SetOf("workers", {"worker"}), "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  zmq::context_t ctx;
  Writer w;
  RawPeer first(ctx, broker->frontend, k.Client("owner"));
  JobSpec spec;
  ASSERT_NO_FATAL_FAILURE(SubmitOneJob(first, &spec));
  // No worker: the job waits. A stranger's cancel is refused.
  RawPeer stranger(ctx, broker->frontend, k.Client("stranger"));
  stranger.Send(w.EncodeCancel({&spec.id, 1}));
  ASSERT_EQ(stranger.Listen(Millis(5000), /*stop_at_first=*/true),
            std::vector<wire::Body>{wire::Body::Error});
  EXPECT_EQ(stranger.error, wire::ErrorCode::Forbidden);
  // The owner's key on a new connection cancels it.
  RawPeer second(ctx, broker->frontend, k.Client("owner"));
  second.Send(w.EncodeCancel({&spec.id, 1}));
  EXPECT_EQ(second.Listen(Millis(5000), /*stop_at_first=*/true),
            std::vector<wire::Body>{wire::Body::Results});
  // ... and the owner's own connection hears it too.
  EXPECT_EQ(first.Listen(Millis(5000), /*stop_at_first=*/true),
            std::vector<wire::Body>{wire::Body::Results});
}

// `yard cancel` with an admin key cancels another producer's job: one line
// "ID cancelled", exit 0; the owner gets the Cancelled result. With a
// stranger's key it is refused (exit 1).
TEST(CurveTest, YardCancelWithAnAdminKeyCancelsAnyJob) {
  Cluster c;
  Keys k(c, {"broker", "owner", "stranger", "worker", "admin"});
  auto broker =
      c.StartBroker({"--curve-secret", k.Secret("broker"), "--producer-keys",
                     k.SetOf("producers", {"owner", "stranger"}),
                     "--worker-keys", k.SetOf("workers", {}), "--admin-keys",
                     k.SetOf("admins", {"admin"}), "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  zmq::context_t ctx;
  RawPeer owner(ctx, broker->frontend, k.Client("owner"));
  JobSpec spec;
  ASSERT_NO_FATAL_FAILURE(SubmitOneJob(owner, &spec));
  auto cancel = [&](const std::string& key) {
    Process* p =
        c.Start("cancel", {"cancel", "--connect", broker->frontend,
                           "--curve-secret", k.Secret(key), "--broker-key",
                           k.Public("broker"), spec.id.ToString()});
    EXPECT_TRUE(p);
    std::pair<std::string, int> out{"", -1};
    if (!p) return out;
    out.first = p->ReadAll(Millis(20000)).value_or("");
    auto exit = p->Wait(Millis(5000));
    out.second = exit && exit->exited ? exit->code : -1;
    return out;
  };
  auto refused = cancel("stranger");
  EXPECT_EQ(refused.second, 1) << refused.first;
  EXPECT_NE(refused.first.find(spec.id.ToString() + " refused: "),
            std::string::npos)
      << refused.first;
  auto done = cancel("admin");
  EXPECT_EQ(done.second, 0) << done.first;
  EXPECT_EQ(done.first, spec.id.ToString() + " cancelled\n");
  EXPECT_EQ(owner.Listen(Millis(5000), /*stop_at_first=*/true),
            std::vector<wire::Body>{wire::Body::Results});
}

// Producer::RequestStats, as monitors use it: every live broker answers
// through on_stats; an admin key gets the stats, a producer key the refusal.
// And `yard top`, such a monitor, likewise.
TEST(CurveTest, AProducerGetsStatsOnlyWithAnAdminKey) {
  Cluster c;
  Keys k(c, {"broker", "producer", "worker", "admin"});
  auto broker =
      c.StartBroker(CurveBrokerArgs(k, k.SetOf("workers", {"worker"})));
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      c.StartWorker(broker->backend, 3,
                    {"--curve-secret", k.Secret("worker"), "--broker-key",
                     k.Public("broker"), "--heartbeat-ms", "200"}));
  auto ask = [&](const std::string& who) {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<BrokerStatsReply> replies;
    ProducerOptions o;
    o.brokers = {broker->frontend};
    o.heartbeat_ms = 200;
    o.curve = k.Client(who);
    o.on_stats = [&](const BrokerStatsReply& r) {
      std::lock_guard<std::mutex> lock(mu);
      replies.push_back(r);
      cv.notify_all();
    };
    auto p = Producer::Create(std::move(o));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return replies;
    // Asked again until a broker answers: the first ask may go out before
    // the handshake (no live broker yet).
    for (int i = 0; i < 100; ++i) {
      (*p)->RequestStats();
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, Millis(100), [&] { return !replies.empty(); })) {
        break;
      }
    }
    (*p)->Close();
    return replies;
  };
  std::vector<BrokerStatsReply> admin = ask("admin");
  ASSERT_FALSE(admin.empty());
  EXPECT_EQ(admin[0].endpoint, broker->frontend);
  EXPECT_TRUE(admin[0].error.empty()) << admin[0].error;
  nlohmann::json stats = nlohmann::json::parse(admin[0].json, nullptr, false);
  ASSERT_TRUE(stats.is_object()) << admin[0].json;
  EXPECT_TRUE(stats.contains("counters")) << admin[0].json;
  std::vector<BrokerStatsReply> producer = ask("producer");
  ASSERT_FALSE(producer.empty());
  EXPECT_TRUE(producer[0].json.empty()) << producer[0].json;
  EXPECT_NE(producer[0].error.find("Forbidden"), std::string::npos)
      << producer[0].error;
  // `yard top --once --json`: the same with each key, and a refused one
  // says why and what to do.
  auto top = [&](const std::string& who) {
    return c.FinishPush(
        c.Start("top-" + who,
                {"top", "--connect", broker->frontend, "--once", "--json",
                 "--interval-ms", "200", "--curve-secret", k.Secret(who),
                 "--broker-key", k.Public("broker")}),
        Millis(20000));
  };
  const PushRun admin_top = top("admin");
  ASSERT_TRUE(admin_top.exit && admin_top.exit->ExitedWith(0))
      << admin_top.Describe();
  EXPECT_EQ(admin_top.report["brokers"][0]["up"], true) << admin_top.Describe();
  const PushRun refused_top = top("producer");
  ASSERT_TRUE(refused_top.exit && refused_top.exit->ExitedWith(1))
      << refused_top.Describe();
  const nlohmann::json& refused = refused_top.report["brokers"][0];
  EXPECT_EQ(refused["up"], false) << refused_top.Describe();
  EXPECT_NE(refused["error"].dump().find("Forbidden"), std::string::npos)
      << refused_top.Describe();
  EXPECT_NE(c.Describe().find("stats need an admin key"), std::string::npos)
      << c.Describe();
}

TEST(CurveTest, KeygenRefusesToOverwrite) {
  Cluster c;
  Keys k(c, {"a"});
  Process* p = c.Start("keygen", {"keygen", "--out", k.Path("a")});
  ASSERT_TRUE(p);
  auto exit = p->Wait(Millis(10000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->ExitedWith(2)) << exit->ToString() << p->Stderr();
  EXPECT_EQ(
      std::filesystem::status(k.Secret("a")).permissions() &
          std::filesystem::perms::all,
      std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

}  // namespace
}  // namespace yard
