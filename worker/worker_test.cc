// Worker tests: the test plays the broker with a ROUTER socket on inproc://
// (sharing the worker's zmq context) and runs Worker::Run on a thread.
#include "worker/worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "testing/log_capture.h"

namespace yard {
namespace {

using std::chrono::milliseconds;

// The bound on anything a test waits for: generous, since waits end as soon
// as what they wait for happens (a loaded machine under ASan can stall).
constexpr int64_t kWaitMs = 20000;
// A time limit the test must never reach (e.g. a drain timeout), so that a
// worker that waited it out fails a bounded wait instead of passing slowly.
constexpr int64_t kNeverMs = 60000;

// Polls `done` every 2 ms until it holds or timeout_ms pass.
bool PollUntil(const std::function<bool()>& done, int64_t timeout_ms) {
  const int64_t deadline = MonoMillis() + timeout_ms;
  while (!done()) {
    if (MonoMillis() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// The "hold" task: a job that runs until the test opens the gate, so that
// "the job is running" and "the job is still running" are facts the test
// waits on or relies on, never guesses from time.
class Gate {
 public:
  Handler handler() {
    return [this](const JobContext&) {
      std::unique_lock<std::mutex> lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return open_; });
      return std::string("held");
    };
  }
  // Waits until `n` hold jobs have started.
  bool AwaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, milliseconds(kWaitMs),
                        [&] { return entered_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

struct ResultRecord {
  JobId id;
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string output;
  std::string error;
  uint16_t attempt = 0;
  uint64_t duration_us = 0;
};

// One message the fake broker received.
struct Inbound {
  std::string identity;
  zmq::message_t frame;
  const wire::Envelope* envelope = nullptr;
  wire::Body kind() const { return envelope->body_type(); }
};

// A broker's backend socket, driven by the test.
class FakeBroker {
 public:
  FakeBroker(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::router) {
    ConfigureSocket(socket_, limits_, 0);
    EXPECT_TRUE(Bind(socket_, endpoint).ok());
  }

  // While waiting for messages, heartbeat this identity every interval.
  void KeepAlive(const std::string& identity, int64_t interval_ms) {
    keepalive_identity_ = identity;
    keepalive_interval_ms_ = interval_ms;
  }

  // The next message (heartbeats skipped unless asked for), or nullopt.
  std::optional<Inbound> Recv(int64_t timeout_ms, bool skip_heartbeats = true) {
    const int64_t deadline = MonoMillis() + timeout_ms;
    for (;;) {
      RouterMessage m;
      while (RecvRouter(socket_, &m)) {
        EXPECT_EQ(m.framing_error, nullptr);
        if (m.framing_error != nullptr) continue;
        Inbound in;
        in.identity = std::string(m.identity_view());
        in.frame = std::move(m.body);
        Decoded d =
            Decode(Bytes(in.frame.data<uint8_t>(), in.frame.size()), limits_);
        EXPECT_TRUE(d.ok()) << d.message;
        if (!d.ok()) continue;
        in.envelope = d.envelope;
        if (skip_heartbeats && in.kind() == wire::Body::Heartbeat) continue;
        return in;
      }
      int64_t now = MonoMillis();
      if (!keepalive_identity_.empty() && now >= next_keepalive_ms_) {
        Send(keepalive_identity_, writer_.EncodeHeartbeat());
        next_keepalive_ms_ = now + keepalive_interval_ms_;
      }
      if (now >= deadline) return std::nullopt;
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(std::min<int64_t>(10, deadline - now)));
    }
  }

  // The next non-heartbeat message, which must be of `kind`.
  Inbound Expect(wire::Body kind, int64_t timeout_ms = kWaitMs) {
    auto in = Recv(timeout_ms);
    if (!in) {
      ADD_FAILURE() << "no " << wire::EnumNameBody(kind) << " within "
                    << timeout_ms << " ms";
      return Inbound{};
    }
    EXPECT_EQ(in->kind(), kind) << "got " << wire::EnumNameBody(in->kind());
    return std::move(*in);
  }

  // Waits for a Ready and returns its sender.
  std::string ExpectReady(uint32_t* credit = nullptr,
                          int64_t timeout_ms = kWaitMs) {
    Inbound in = Expect(wire::Body::Ready, timeout_ms);
    if (in.envelope == nullptr || in.kind() != wire::Body::Ready) return "";
    if (credit != nullptr) *credit = in.envelope->body_as_Ready()->credit();
    return in.identity;
  }

  void Send(const std::string& identity, Bytes body) {
    EXPECT_TRUE(SendRouter(socket_, identity, body).ok());
  }

  void SendRaw(const std::string& identity,
               const std::vector<std::string>& frames) {
    socket_.send(zmq::buffer(identity), zmq::send_flags::sndmore);
    for (size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]), i + 1 < frames.size()
                                               ? zmq::send_flags::sndmore
                                               : zmq::send_flags::none);
    }
  }

  // Sends one Dispatch; returns the job ids in order.
  std::vector<JobId> Dispatch(
      const std::string& identity,
      const std::vector<std::pair<std::string, std::string>>& jobs,
      int64_t deadline_ms = 0, uint16_t attempt = 1) {
    std::vector<JobId> ids;
    BlobBatch batch;
    for (const auto& [task, payload] : jobs) {
      JobSpec spec;
      spec.id = JobId::Random();
      spec.task = task;
      spec.payload = AsBytes(payload);
      spec.deadline_ms = deadline_ms;
      batch.AddJob(writer_.EncodeJob(spec), attempt);
      ids.push_back(spec.id);
    }
    Send(identity, batch.FinishDispatch());
    return ids;
  }

  // Collects results until `n` arrived (or the timeout). Credit messages add
  // to credit_seen(); any other kind fails the test.
  std::unordered_map<JobId, ResultRecord, JobIdHash> CollectResults(
      size_t n, int64_t timeout_ms = kWaitMs, std::string* from = nullptr) {
    std::unordered_map<JobId, ResultRecord, JobIdHash> out;
    const int64_t deadline = MonoMillis() + timeout_ms;
    while (out.size() < n) {
      auto in = Recv(std::max<int64_t>(0, deadline - MonoMillis()));
      if (!in) break;
      if (in->kind() == wire::Body::Credit) {
        credit_seen_ += in->envelope->body_as_Credit()->credit();
        continue;
      }
      if (in->kind() != wire::Body::Results) {
        ADD_FAILURE() << "unexpected " << wire::EnumNameBody(in->kind());
        continue;
      }
      if (from != nullptr) *from = in->identity;
      for (const auto* blob : *in->envelope->body_as_Results()->results()) {
        const auto* r = blob->data_nested_root();
        ResultRecord rec;
        rec.id = FromWire(r->id());
        rec.status = r->status();
        rec.output = std::string(AsString(r->output()));
        rec.error = std::string(AsString(r->error()));
        rec.attempt = r->attempt();
        rec.duration_us = r->duration_us();
        EXPECT_TRUE(out.emplace(rec.id, rec).second) << "duplicate result";
      }
    }
    EXPECT_EQ(out.size(), n) << "results within " << timeout_ms << " ms";
    return out;
  }

  uint32_t credit_seen() const { return credit_seen_; }
  Writer& writer() { return writer_; }

 private:
  Limits limits_;
  zmq::socket_t socket_;
  Writer writer_;
  uint32_t credit_seen_ = 0;
  std::string keepalive_identity_;
  int64_t keepalive_interval_ms_ = 0;
  int64_t next_keepalive_ms_ = 0;
};

class WorkerTest : public ::testing::Test {
 protected:
  static std::string NewEndpoint() {
    static std::atomic<int> n{0};
    return "inproc://worker-test-" + std::to_string(n++);
  }

  WorkerOptions Options(const std::vector<std::string>& endpoints,
                        int concurrency, int prefetch) {
    WorkerOptions o;
    o.brokers = endpoints;
    o.concurrency = concurrency;
    o.prefetch = prefetch;
    o.heartbeat_ms = 1000;
    o.drain_timeout_ms = 3000;
    o.name = "test-worker";
    o.context = &context_;
    return o;
  }

  void Start(WorkerOptions options,
             const std::function<void(Worker&)>& extra_handlers = nullptr) {
    worker_ = std::make_unique<Worker>(std::move(options));
    RegisterBuiltinHandlers(*worker_);
    if (extra_handlers) extra_handlers(*worker_);
    thread_ = std::thread([this] {
      run_status_ = worker_->Run();
      returned_ = true;
    });
  }

  // For Start: the "hold" task (jobs that run until gate_ opens).
  std::function<void(Worker&)> WithHold() {
    return [this](Worker& w) { w.Register("hold", gate_.handler()); };
  }

  Status StopAndJoin() {
    worker_->Stop();
    if (thread_.joinable()) thread_.join();
    return run_status_;
  }

  void TearDown() override {
    gate_.Open();  // ~Worker waits for running handlers
    if (thread_.joinable()) {
      worker_->Stop();
      thread_.join();
    }
    worker_.reset();
  }

  LogCapture log_;  // what the worker logs (it outlives the worker's thread)
  zmq::context_t context_;
  Gate gate_;  // outlives the worker, whose handlers wait on it
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  Status run_status_;
  std::atomic<bool> returned_{false};  // Run has returned
};

TEST_F(WorkerTest, ReadyCarriesCreditCapacityAndTasks) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 3, 5);
  options.tags = {"gpu"};
  options.taints = {"batch"};
  Start(std::move(options));

  Inbound in = broker.Expect(wire::Body::Ready);
  ASSERT_NE(in.envelope, nullptr);
  const auto* ready = in.envelope->body_as_Ready();
  EXPECT_EQ(ready->credit(), 8u);
  EXPECT_EQ(ready->capacity(), 3u);
  std::vector<std::string> tasks;
  for (const auto* t : *ready->tasks()) tasks.push_back(t->str());
  EXPECT_EQ(tasks, (std::vector<std::string>{"echo", "fail", "hang", "progress",
                                             "sha256", "sleep"}));
  ASSERT_EQ(ready->tags()->size(), 1u);
  EXPECT_EQ(ready->tags()->Get(0)->str(), "gpu");
  ASSERT_EQ(ready->taints()->size(), 1u);
  EXPECT_EQ(ready->taints()->Get(0)->str(), "batch");
  EXPECT_EQ(AsString(ready->name()), "test-worker");
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, EchoJobsComeBackWithTheirIdsAndOutputs) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Start(Options({ep}, 2, 64));
  std::string id = broker.ExpectReady();

  std::vector<std::pair<std::string, std::string>> jobs;
  for (int i = 0; i < 50; ++i)
    jobs.emplace_back("echo", "payload-" + std::to_string(i));
  auto ids = broker.Dispatch(id, jobs, 0, /*attempt=*/2);
  auto results = broker.CollectResults(ids.size());
  ASSERT_EQ(results.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& r = results[ids[i]];
    EXPECT_EQ(r.status, wire::ResultStatus::Ok);
    EXPECT_EQ(r.output, "payload-" + std::to_string(i));
    EXPECT_EQ(r.attempt, 2);
    EXPECT_TRUE(r.error.empty());
  }
  EXPECT_TRUE(StopAndJoin().ok());
  auto c = worker_->counters();
  EXPECT_EQ(c.jobs_received, 50u);
  EXPECT_EQ(c.jobs_ok, 50u);
  EXPECT_EQ(c.jobs_failed, 0u);
}

// A deadline is any int64 a producer sent: the most negative one expires
// the job too, and how late it is does not overflow.
TEST_F(WorkerTest, DeadlineAtTheMostNegativeTimeExpires) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Start(Options({ep}, 1, 1));
  std::string id = broker.ExpectReady();
  auto ids =
      broker.Dispatch(id, {{"echo", "x"}}, std::numeric_limits<int64_t>::min());
  auto results = broker.CollectResults(1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[ids[0]].status, wire::ResultStatus::Expired);
  EXPECT_NE(results[ids[0]].error.find("deadline passed 92233"),
            std::string::npos)
      << results[ids[0]].error;
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, FailuresUnknownTasksAndExpiredDeadlines) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  std::atomic<int> custom_calls{0};
  Start(Options({ep}, 2, 8), [&](Worker& w) {
    w.Register("custom", [&](const JobContext& ctx) {
      ++custom_calls;
      if (AsString(ctx.payload) == "boom")
        throw std::logic_error("custom boom");
      return std::string("custom:") + std::string(ctx.task);
    });
  });
  std::string id = broker.ExpectReady();

  auto ids = broker.Dispatch(id, {{"fail", ""},
                                  {"nope", "x"},
                                  {"custom", "boom"},
                                  {"custom", "ok"},
                                  {"sha256", "abc"},
                                  {"sleep", "soon"},
                                  {"sleep", "5"}});
  auto expired = broker.Dispatch(id, {{"custom", "late"}}, UnixMillis() - 1000);
  auto results = broker.CollectResults(ids.size() + 1);
  ASSERT_EQ(results.size(), ids.size() + 1);

  EXPECT_EQ(results[ids[0]].status, wire::ResultStatus::Failed);
  EXPECT_EQ(results[ids[0]].error, "fail: this task always fails");
  EXPECT_EQ(results[ids[1]].status, wire::ResultStatus::UnknownTask);
  EXPECT_EQ(results[ids[1]].error, "unknown task 'nope'");
  EXPECT_EQ(results[ids[2]].status, wire::ResultStatus::Failed);
  EXPECT_EQ(results[ids[2]].error, "custom boom");
  EXPECT_EQ(results[ids[3]].status, wire::ResultStatus::Ok);
  EXPECT_EQ(results[ids[3]].output, "custom:custom");
  EXPECT_EQ(results[ids[4]].status, wire::ResultStatus::Ok);
  EXPECT_EQ(results[ids[4]].output,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(results[ids[5]].status, wire::ResultStatus::Failed);
  EXPECT_NE(results[ids[5]].error.find("sleep: payload must be"),
            std::string::npos)
      << results[ids[5]].error;
  EXPECT_EQ(results[ids[6]].status, wire::ResultStatus::Ok);
  EXPECT_GE(results[ids[6]].duration_us, 4000u);
  EXPECT_EQ(results[expired[0]].status, wire::ResultStatus::Expired);
  EXPECT_FALSE(results[expired[0]].error.empty());
  EXPECT_EQ(custom_calls.load(), 2);  // the expired job did not run

  EXPECT_TRUE(StopAndJoin().ok());
  auto c = worker_->counters();
  EXPECT_EQ(c.jobs_ok, 3u);
  EXPECT_EQ(c.jobs_failed, 5u);
}

TEST_F(WorkerTest, ABrokersCancelStopsRunningAndWaitingJobs) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Start(Options({ep}, 1, 4));
  std::string id = broker.ExpectReady();
  // One runner: "hang" runs, the echoes wait behind it.
  auto ids = broker.Dispatch(id, {{"hang", ""}, {"echo", "a"}, {"echo", "b"}});
  std::this_thread::sleep_for(milliseconds(50));
  const JobId cancelled[] = {ids[0], ids[1]};
  broker.Send(id, broker.writer().EncodeCancel(cancelled));
  auto results = broker.CollectResults(3);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[ids[0]].status, wire::ResultStatus::Cancelled);
  EXPECT_EQ(results[ids[0]].error, "cancelled while it ran");
  EXPECT_EQ(results[ids[1]].status, wire::ResultStatus::Cancelled);
  EXPECT_EQ(results[ids[1]].error, "cancelled before it started");
  EXPECT_EQ(results[ids[2]].status, wire::ResultStatus::Ok);
  EXPECT_EQ(results[ids[2]].output, "b");
  EXPECT_TRUE(StopAndJoin().ok());
  EXPECT_EQ(worker_->counters().jobs_cancelled, 2u);
  EXPECT_EQ(worker_->counters().unexpected, 0u);
}

TEST_F(WorkerTest, ResultsReturnCreditWithoutExplicitGrants) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Start(Options({ep}, 1, 0));
  uint32_t credit = 0;
  std::string id = broker.ExpectReady(&credit);
  EXPECT_EQ(credit, 1u);

  // One slot: a slow job, then (after its result returned the credit)
  // another. The worker never grants more than its one slot.
  auto first = broker.Dispatch(id, {{"sleep", "100"}});
  auto r1 = broker.CollectResults(1);
  EXPECT_EQ(r1[first[0]].status, wire::ResultStatus::Ok);
  auto second = broker.Dispatch(id, {{"echo", "again"}});
  auto r2 = broker.CollectResults(1);
  EXPECT_EQ(r2[second[0]].output, "again");
  EXPECT_FALSE(broker.Recv(200).has_value());  // no Credit: results returned it
  EXPECT_EQ(broker.credit_seen(), 0u);
  EXPECT_EQ(worker_->counters().credit_violations, 0u);

  // Over-dispatching is a broker bug: the jobs still run, and are counted.
  auto extra =
      broker.Dispatch(id, {{"echo", "a"}, {"echo", "b"}, {"echo", "c"}});
  auto r3 = broker.CollectResults(3);
  EXPECT_EQ(r3[extra[2]].output, "c");
  EXPECT_EQ(worker_->counters().credit_violations, 2u);
  EXPECT_EQ(broker.credit_seen(), 0u);
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, SlotsAreSharedBetweenBrokers) {
  auto ep1 = NewEndpoint();
  auto ep2 = NewEndpoint();
  FakeBroker b1(context_, ep1);
  FakeBroker b2(context_, ep2);
  Start(Options({ep1, ep2}, 2, 3));  // 5 slots: 3 + 2
  uint32_t c1 = 0;
  uint32_t c2 = 0;
  std::string id1 = b1.ExpectReady(&c1);
  std::string id2 = b2.ExpectReady(&c2);
  EXPECT_EQ(c1 + c2, 5u);
  EXPECT_GE(std::min(c1, c2), 2u);

  auto ids1 = b1.Dispatch(id1, {{"echo", "one"}, {"sleep", "20"}});
  auto ids2 = b2.Dispatch(id2, {{"echo", "two"}});
  auto r1 = b1.CollectResults(2);
  auto r2 = b2.CollectResults(1);
  EXPECT_EQ(r1[ids1[0]].output, "one");
  EXPECT_EQ(r2[ids2[0]].output, "two");
  EXPECT_TRUE(StopAndJoin().ok());
}

// Issue 5: slots follow the work. With no prefetch, 4 slots and two
// brokers, each starts with 2; when only the first has work, the worker
// takes back the idle broker's unused credit (down to the one slot every
// broker keeps) and grants it to the busy one, so no slot sits idle while a
// broker has work.
TEST_F(WorkerTest, IdleBrokersCreditMovesToTheBusyOne) {
  auto ep1 = NewEndpoint();
  auto ep2 = NewEndpoint();
  FakeBroker b1(context_, ep1);
  FakeBroker b2(context_, ep2);
  Start(Options({ep1, ep2}, 4, 0), WithHold());
  uint32_t c1 = 0, c2 = 0;
  std::string id1 = b1.ExpectReady(&c1);
  std::string id2 = b2.ExpectReady(&c2);
  EXPECT_EQ(c1, 2u);
  EXPECT_EQ(c2, 2u);
  // b1's two jobs run until the test lets them finish: b1 is busy throughout.
  auto slow = b1.Dispatch(id1, {{"hold", ""}, {"hold", ""}});
  ASSERT_TRUE(gate_.AwaitEntered(2));
  // The idle broker is asked for one slot back...
  Inbound w = b2.Expect(wire::Body::Credit);
  ASSERT_NE(w.envelope, nullptr);
  EXPECT_EQ(w.envelope->body_as_Credit()->withdraw(), 1u);
  EXPECT_EQ(w.envelope->body_as_Credit()->credit(), 0u);
  // ... and the busy one gets it.
  Inbound g = b1.Expect(wire::Body::Credit);
  ASSERT_NE(g.envelope, nullptr);
  EXPECT_EQ(g.envelope->body_as_Credit()->credit(), 1u);
  auto more = b1.Dispatch(id1, {{"echo", "more"}});
  // The idle broker still has its one slot.
  auto mine = b2.Dispatch(id2, {{"echo", "b2"}});
  auto r2 = b2.CollectResults(1);
  EXPECT_EQ(r2[mine[0]].output, "b2");
  gate_.Open();
  auto r1 = b1.CollectResults(3);
  EXPECT_EQ(r1[more[0]].output, "more");
  EXPECT_EQ(r1[slow[0]].output, "held");
  EXPECT_EQ(r1[slow[1]].output, "held");
  EXPECT_EQ(worker_->counters().credit_violations, 0u);
  EXPECT_TRUE(StopAndJoin().ok());
}

// A broker that leaves the set (discovery) while it still holds a running
// job of ours keeps getting heartbeats (a draining broker must not take us
// for dead) and gets the result; then it is dropped, and its slots go to the
// broker that stays.
TEST_F(WorkerTest, ALeavingBrokerGetsItsResultThenItsSlotsMove) {
  auto ep1 = NewEndpoint();
  auto ep2 = NewEndpoint();
  FakeBroker b1(context_, ep1);
  FakeBroker b2(context_, ep2);
  WorkerOptions o = Options({ep1, ep2}, 4, 0);
  o.heartbeat_ms = 500;  // silence for 1.5 s would end a connection
  Start(o, WithHold());
  uint32_t c1 = 0, c2 = 0;
  std::string id1 = b1.ExpectReady(&c1);
  std::string id2 = b2.ExpectReady(&c2);
  ASSERT_EQ(c1 + c2, 4u);
  b1.KeepAlive(id1, 100);
  b2.KeepAlive(id2, 100);
  auto slow = b2.Dispatch(id2, {{"hold", ""}});
  ASSERT_TRUE(gate_.AwaitEntered(1));  // b2 holds a running job of ours
  worker_->SetBrokers({ep1});
  // b1's credit, counted as grants and withdrawals come (b1 is kept alive
  // meanwhile; while b2 is busy, b1 may be asked for a slot back).
  int64_t granted = c1;
  auto count_grants = [&](int64_t wait_ms) {
    while (auto in = b1.Recv(wait_ms)) {
      if (in->kind() == wire::Body::Credit) {
        granted += in->envelope->body_as_Credit()->credit();
        granted -= in->envelope->body_as_Credit()->withdraw();
      }
      wait_ms = 0;
    }
  };
  // b2, while the job runs: its unused credit is taken back, and heartbeats
  // go on after that (a draining broker must not take us for dead).
  bool withdrawn = false, heartbeat = false;
  const int64_t until = MonoMillis() + kWaitMs;
  while (MonoMillis() < until && !(withdrawn && heartbeat)) {
    count_grants(0);
    auto in = b2.Recv(20, /*skip_heartbeats=*/false);
    if (!in) continue;
    ASSERT_NE(in->kind(), wire::Body::Results) << "the job is still running";
    // Ordered after the withdraw, so sent after the broker left the set.
    if (in->kind() == wire::Body::Heartbeat) heartbeat = withdrawn;
    if (in->kind() == wire::Body::Credit) {
      withdrawn |= in->envelope->body_as_Credit()->withdraw() > 0;
    }
  }
  EXPECT_TRUE(withdrawn);
  EXPECT_TRUE(heartbeat) << "a broker holding our job must hear from us";
  // The job finishes: its result still goes to b2.
  gate_.Open();
  std::optional<ResultRecord> result;
  while (MonoMillis() < until && !result) {
    count_grants(0);
    auto in = b2.Recv(20);
    if (!in || in->kind() != wire::Body::Results) continue;
    const auto* r =
        in->envelope->body_as_Results()->results()->Get(0)->data_nested_root();
    result = ResultRecord{FromWire(r->id()), r->status(), "", "", 0, 0};
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->id, slow[0]);
  // Then b2 is dropped, and all four slots end up with b1.
  while (MonoMillis() < until && granted < 4) count_grants(20);
  EXPECT_EQ(granted, 4);
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, GarbageFromTheBrokerIsCountedAndIgnored) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Start(Options({ep}, 1, 4));
  std::string id = broker.ExpectReady();

  broker.SendRaw(id, {"no delimiter"});                 // framing error
  broker.SendRaw(id, {"", "not a flatbuffer at all"});  // Decode error
  broker.SendRaw(id, {"", "a", "b"});                   // too many frames
  broker.Send(id, broker.writer().EncodeCredit(7));     // valid but unexpected
  auto ids = broker.Dispatch(id, {{"echo", "still here"}});
  auto results = broker.CollectResults(1);
  EXPECT_EQ(results[ids[0]].output, "still here");
  auto c = worker_->counters();
  EXPECT_EQ(c.bad_frames, 3u);
  EXPECT_EQ(c.unexpected, 1u);
  EXPECT_FALSE(broker.Recv(100).has_value());  // no reply to garbage
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, StopDrainsRunningAndPrefetchedJobsThenDisconnects) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 1, 2);
  // The drain ends when the jobs are done: a worker that waited out its
  // timeout would miss every bounded wait below.
  options.drain_timeout_ms = kNeverMs;
  Start(std::move(options), WithHold());
  std::string id = broker.ExpectReady();

  auto ids = broker.Dispatch(id, {{"hold", ""}, {"echo", "queued"}});
  ASSERT_TRUE(gate_.AwaitEntered(1));  // running; the echo waits behind it
  worker_->Stop();
  ASSERT_NE(log_.Await("draining: 2 jobs in hand", milliseconds(kWaitMs)), "")
      << ::testing::PrintToString(log_.Lines());
  // Arrives during the drain: not started (the broker requeues it on
  // Disconnect).
  auto late = broker.Dispatch(id, {{"echo", "late"}});
  ASSERT_TRUE(PollUntil([&] { return worker_->counters().jobs_received == 3; },
                        kWaitMs));
  gate_.Open();

  auto results = broker.CollectResults(2);
  EXPECT_EQ(results[ids[0]].output, "held");
  EXPECT_EQ(results[ids[1]].output, "queued");
  EXPECT_EQ(results.count(late[0]), 0u);
  Inbound bye = broker.Expect(wire::Body::Disconnect);
  ASSERT_NE(bye.envelope, nullptr);
  EXPECT_EQ(AsString(bye.envelope->body_as_Disconnect()->reason()), "draining");
  thread_.join();
  EXPECT_TRUE(run_status_.ok());
  EXPECT_FALSE(broker.Recv(100).has_value());
  auto c = worker_->counters();
  EXPECT_EQ(c.jobs_received, 3u);
  EXPECT_EQ(c.jobs_ok, 2u);
}

TEST_F(WorkerTest, DrainTimeoutAbandonsSlowJobs) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 1, 0);
  options.drain_timeout_ms = 100;
  Start(std::move(options), WithHold());
  std::string id = broker.ExpectReady();
  broker.Dispatch(id, {{"hold", ""}});
  ASSERT_TRUE(gate_.AwaitEntered(1));
  worker_->Stop();
  // The job cannot finish while the gate is shut: only a drain that gives
  // up on it sends the Disconnect (and no Results before it), and Run
  // returns with the handler still running.
  Inbound bye = broker.Expect(wire::Body::Disconnect);
  ASSERT_NE(bye.envelope, nullptr);
  EXPECT_NE(log_.Find("drain timed out with 1 jobs unanswered"), "")
      << ::testing::PrintToString(log_.Lines());
  EXPECT_TRUE(PollUntil([&] { return returned_.load(); }, kWaitMs))
      << "Run waits for an abandoned handler";
  gate_.Open();
  thread_.join();
  EXPECT_TRUE(run_status_.ok());
}

TEST_F(WorkerTest, SilentBrokerGetsANewSocketAndASecondReady) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 2, 2);
  // 3 intervals: 750 ms of silence end a connection, far more than the
  // test's own pauses between keep-alives.
  options.heartbeat_ms = 250;
  Start(std::move(options));
  std::string first = broker.ExpectReady();
  // Say nothing: after 3 intervals the worker gives up on this socket.
  uint32_t credit = 0;
  std::string second = broker.ExpectReady(&credit);
  EXPECT_NE(first, second);
  EXPECT_EQ(credit, 4u);
  EXPECT_GE(worker_->counters().reconnects, 1u);

  broker.KeepAlive(second, 20);
  auto ids = broker.Dispatch(second, {{"echo", "after reconnect"}});
  auto results = broker.CollectResults(1);
  EXPECT_EQ(results[ids[0]].output, "after reconnect");
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, JobsFromTheOldSocketAnswerOnTheNewOneWithCredit) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 1, 0);
  options.heartbeat_ms = 250;  // 750 ms of silence end a connection
  Start(std::move(options), WithHold());
  uint32_t credit = 0;
  std::string first = broker.ExpectReady(&credit);
  EXPECT_EQ(credit, 1u);
  auto ids = broker.Dispatch(first, {{"hold", ""}});
  ASSERT_TRUE(gate_.AwaitEntered(1));
  // Silence: the worker reconnects while the job runs; its one slot is busy,
  // so the new registration starts with no credit.
  std::string second = broker.ExpectReady(&credit);
  EXPECT_NE(first, second);
  EXPECT_EQ(credit, 0u);
  broker.KeepAlive(second, 30);
  gate_.Open();
  std::string from;
  auto results = broker.CollectResults(1, kWaitMs, &from);
  EXPECT_EQ(from, second);
  EXPECT_EQ(results[ids[0]].status, wire::ResultStatus::Ok);
  // The new registration never dispatched that job, so the freed slot comes
  // back as an explicit Credit.
  Inbound grant = broker.Expect(wire::Body::Credit);
  ASSERT_NE(grant.envelope, nullptr);
  EXPECT_EQ(grant.envelope->body_as_Credit()->credit(), 1u);
  EXPECT_EQ(grant.identity, second);
  EXPECT_FALSE(broker.Recv(300).has_value());
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, BrokerDisconnectMakesTheWorkerRegisterAgain) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  auto options = Options({ep}, 2, 1);
  options.heartbeat_ms = 250;  // 750 ms of silence end a connection
  Start(std::move(options));
  std::string id = broker.ExpectReady();
  broker.KeepAlive(id, 30);
  // Past the Ready debounce (one heartbeat interval from the Ready), kept
  // alive meanwhile; the worker sends nothing but heartbeats.
  EXPECT_FALSE(broker.Recv(300).has_value());
  broker.Send(id, broker.writer().EncodeDisconnect("unknown worker"));
  uint32_t credit = 0;
  std::string again = broker.ExpectReady(&credit);
  EXPECT_EQ(again, id);  // same socket
  EXPECT_EQ(credit, 3u);
  EXPECT_EQ(worker_->counters().reconnects, 0u);
  EXPECT_TRUE(StopAndJoin().ok());
}

TEST_F(WorkerTest, RunRejectsBadEndpoints) {
  auto options = Options({"localhost:5555"}, 1, 0);
  Worker worker(options);
  Status st = worker.Run();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  Worker none(Options({}, 1, 0));
  EXPECT_EQ(none.Run().code(), StatusCode::kInvalidArgument);
}

TEST_F(WorkerTest, StopBeforeRunReturnsPromptly) {
  auto ep = NewEndpoint();
  FakeBroker broker(context_, ep);
  Worker worker(Options({ep}, 1, 0));
  worker.Stop();
  EXPECT_TRUE(worker.Run().ok());
  broker.ExpectReady();
  broker.Expect(wire::Body::Disconnect);
}

}  // namespace
}  // namespace yard
