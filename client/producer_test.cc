// Producer tests against fake brokers: ROUTER sockets on tcp://127.0.0.1:*
// driven by the test thread, which decodes what the producer sends and
// answers with Writer / BlobBatch. Every wait is bounded.
#include "client/producer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "testing/log_capture.h"

namespace yard {
namespace {

using std::chrono::milliseconds;

// The bound on anything a test waits for: generous, since waits end as soon
// as what they wait for happens (a loaded machine under ASan can stall).
constexpr int kWaitMs = 20000;
// A time limit no test may reach (an ack or job timeout that must not be
// what made something happen within kWaitMs).
constexpr int kNeverMs = 600000;

// One message the producer sent to a fake broker.
struct Received {
  std::string identity;
  std::string frame;
  wire::Body kind = wire::Body::NONE;
  std::vector<JobId> ids;             // Submit: the job ids, in order
  std::vector<std::string> payloads;  // Submit: the payloads
  int64_t at_us = 0;
};

class FakeBroker {
 public:
  explicit FakeBroker(zmq::context_t& ctx)
      : socket_(ctx, zmq::socket_type::router) {
    ConfigureSocket(socket_, limits_, 0);
    EXPECT_TRUE(Bind(socket_, "tcp://127.0.0.1:*").ok());
    endpoint_ = LastEndpoint(socket_);
  }

  const std::string& endpoint() const { return endpoint_; }
  // A silent broker reads (and drops) everything and answers nothing.
  void set_silent(bool silent) { silent_ = silent; }
  // The incarnation heartbeats report (a restarted broker has a new one).
  void set_instance(JobId instance) { instance_ = instance; }
  // Whether heartbeats are answered (they always count as "seen").
  int heartbeats() const { return heartbeats_; }

  zmq::socket_t& socket() { return socket_; }

  // Handles one inbound message if one is waiting: heartbeats are answered
  // here; anything else is returned.
  std::optional<Received> Poll(int timeout_ms) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(timeout_ms));
    RouterMessage in;
    if (!RecvRouter(socket_, &in)) return std::nullopt;
    EXPECT_EQ(in.framing_error, nullptr);
    // Copy: received frames may be misaligned (see producer.cc, Aligned).
    Received r;
    r.frame.assign(reinterpret_cast<const char*>(in.bytes().data()),
                   in.bytes().size());
    Decoded d = Decode(AsBytes(r.frame), limits_);
    EXPECT_TRUE(d.ok()) << d.message;
    if (!d.ok()) return std::nullopt;
    identity_ = std::string(in.identity_view());
    if (silent_) return std::nullopt;
    if (d.kind() == wire::Body::Heartbeat) {
      ++heartbeats_;
      EXPECT_TRUE(
          SendRouter(socket_, identity_, writer_.EncodeHeartbeat(instance_))
              .ok());
      return std::nullopt;
    }
    r.identity = identity_;
    r.kind = d.kind();
    r.at_us = MonoMicros();
    if (d.kind() == wire::Body::Submit) {
      for (const auto* blob : *d.envelope->body_as_Submit()->jobs()) {
        const wire::Job* job = blob->data_nested_root();
        r.ids.push_back(FromWire(job->id()));
        r.payloads.emplace_back(AsString(job->payload()));
      }
    }
    return r;
  }

  // The next non-heartbeat message, within timeout_ms.
  std::optional<Received> Next(int timeout_ms = kWaitMs) {
    const int64_t deadline = MonoMillis() + timeout_ms;
    while (MonoMillis() < deadline) {
      auto r =
          Poll(static_cast<int>(std::max<int64_t>(1, deadline - MonoMillis())));
      if (r) return r;
    }
    return std::nullopt;
  }

  // Answers heartbeats for a while (so the producer sees this broker live).
  void Pump(int ms) {
    const int64_t deadline = MonoMillis() + ms;
    while (MonoMillis() < deadline) {
      auto r =
          Poll(static_cast<int>(std::max<int64_t>(1, deadline - MonoMillis())));
      EXPECT_FALSE(r.has_value())
          << "unexpected message kind " << static_cast<int>(r->kind);
    }
  }

  void Send(Bytes body) {
    EXPECT_TRUE(SendRouter(socket_, identity_, body).ok());
  }
  void Accept(const std::vector<JobId>& ids) {
    Send(writer_.EncodeAccepted(ids));
  }
  void Error(wire::ErrorCode code, const std::vector<JobId>& ids,
             uint32_t retry_after_ms = 0,
             std::string_view message = "refused") {
    Send(writer_.EncodeError(code, message, ids, retry_after_ms));
  }
  // Results for `ids`, all with the same status and output.
  void Results(const std::vector<JobId>& ids,
               wire::ResultStatus status = wire::ResultStatus::Ok,
               std::string_view output = "out", std::string_view error = "",
               const JobId& duplicate_of = {}) {
    BlobBatch batch;
    Writer w;
    for (const JobId& id : ids) {
      batch.AddResult(w.EncodeResult(id, status, AsBytes(output), error, 1, 10,
                                     duplicate_of));
    }
    Send(batch.FinishResults());
  }

 private:
  Limits limits_;
  zmq::socket_t socket_;
  std::string endpoint_;
  std::string identity_;
  Writer writer_;
  bool silent_ = false;
  int heartbeats_ = 0;
  JobId instance_;
};

// Polls several fake brokers at once; returns (index, message).
std::optional<std::pair<size_t, Received>> NextFromAny(
    std::vector<FakeBroker*> brokers, int timeout_ms = kWaitMs) {
  const int64_t deadline = MonoMillis() + timeout_ms;
  while (MonoMillis() < deadline) {
    for (size_t i = 0; i < brokers.size(); ++i) {
      if (auto r = brokers[i]->Poll(1)) return std::make_pair(i, std::move(*r));
    }
  }
  return std::nullopt;
}

void PumpAll(std::vector<FakeBroker*> brokers, int ms) {
  const int64_t deadline = MonoMillis() + ms;
  while (MonoMillis() < deadline) {
    for (FakeBroker* b : brokers) {
      auto r = b->Poll(1);
      EXPECT_FALSE(r.has_value());
    }
  }
}

// Collects outcomes delivered on the I/O thread.
class Outcomes {
 public:
  OutcomeCallback Callback() {
    return [this](const JobOutcome& o) {
      std::lock_guard<std::mutex> lock(mu_);
      all_.push_back(o);
    };
  }
  std::vector<JobOutcome> WaitFor(size_t n, int timeout_ms = kWaitMs) {
    const int64_t deadline = MonoMillis() + timeout_ms;
    while (MonoMillis() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (all_.size() >= n) return all_;
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
    std::lock_guard<std::mutex> lock(mu_);
    return all_;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return all_.size();
  }

 private:
  std::mutex mu_;
  std::vector<JobOutcome> all_;
};

class ProducerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Producer> Make(std::vector<std::string> brokers,
                                 ProducerOptions opts = Options()) {
    opts.brokers = std::move(brokers);
    auto created = Producer::Create(std::move(opts));
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return std::move(created).value();
  }
  static ProducerOptions Options() {
    ProducerOptions o;
    o.heartbeat_ms = 200;  // liveness tests use 50
    o.ack_timeout_ms = 2000;
    o.default_timeout_ms = 10000;
    return o;
  }
  JobSpec Spec(std::string_view payload = "hello") {
    JobSpec s;
    s.task = "echo";
    s.payload = AsBytes(payload);
    return s;
  }

  zmq::context_t ctx_;
};

TEST_F(ProducerTest, CreateRejectsBadOptions) {
  ProducerOptions o;
  EXPECT_EQ(Producer::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.brokers = {"localhost:5555"};
  EXPECT_EQ(Producer::Create(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ProducerTest, SubmitAcceptedResultsCompletes) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec("ping"), outcomes.Callback());
  auto msg = broker.Next();
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->kind, wire::Body::Submit);
  ASSERT_EQ(msg->ids, std::vector<JobId>{id});
  EXPECT_EQ(msg->payloads[0], "ping");
  broker.Accept({id});
  std::this_thread::sleep_for(milliseconds(2));
  broker.Results({id}, wire::ResultStatus::Ok, "pong");
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, id);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kCompleted);
  EXPECT_EQ(got[0].status, wire::ResultStatus::Ok);
  EXPECT_EQ(got[0].output, "pong");
  EXPECT_EQ(got[0].attempt, 1);
  EXPECT_GE(got[0].latency_us, 2000);
  EXPECT_TRUE(p->Flush(kWaitMs));
  ProducerCounters c = p->counters();
  EXPECT_EQ(c.submitted, 1u);
  EXPECT_EQ(c.accepted, 1u);
  EXPECT_EQ(c.completed, 1u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_EQ(c.resent, 0u);
}

TEST_F(ProducerTest, FailedResultCarriesStatusAndError) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  auto msg = broker.Next();
  ASSERT_TRUE(msg);
  broker.Accept({id});
  broker.Results({id}, wire::ResultStatus::Failed, "", "handler threw");
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kFailed);
  EXPECT_EQ(got[0].status, wire::ResultStatus::Failed);
  EXPECT_EQ(got[0].error, "handler threw");
  EXPECT_EQ(p->counters().failed, 1u);
}

// Durable mode answers an idempotent duplicate with the first job's result
// and says which job that was.
TEST_F(ProducerTest, DuplicateResultNamesTheFirstJob) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  ASSERT_TRUE(broker.Next());
  broker.Accept({id});
  const JobId first = JobId::Random();
  broker.Results({id}, wire::ResultStatus::Ok, "charged", "", first);
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].output, "charged");
  EXPECT_EQ(got[0].duplicate_of, first);
}

// Jobs submitted while no broker is live yet wait, then leave in batches of
// at most max_batch; a frame never exceeds the frame limit.
TEST_F(ProducerTest, BatchesWaitingJobs) {
  FakeBroker broker(ctx_);
  ProducerOptions o = Options();
  o.max_batch = 100;
  auto p = Make({broker.endpoint()}, o);
  std::vector<JobId> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(p->Push(Spec()));
  std::set<JobId, bool (*)(const JobId&, const JobId&)> seen(
      [](const JobId& a, const JobId& b) {
        return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
      });
  int messages = 0;
  while (seen.size() < ids.size()) {
    auto msg = broker.Next();
    ASSERT_TRUE(msg) << "got " << seen.size() << " of " << ids.size();
    ASSERT_EQ(msg->kind, wire::Body::Submit);
    EXPECT_LE(msg->ids.size(), 100u);
    ++messages;
    seen.insert(msg->ids.begin(), msg->ids.end());
    broker.Accept(msg->ids);
    broker.Results(msg->ids);
  }
  EXPECT_EQ(messages, 10);
  EXPECT_TRUE(p->Flush(kWaitMs));
  EXPECT_EQ(p->counters().completed, 1000u);
}

// A lone job leaves at once; jobs that pour in are held up to linger_us for
// a fuller batch.
TEST_F(ProducerTest, LingerCoalescesStreamingJobsOnly) {
  {
    // A lone job is not held: with a linger far beyond the wait, it only
    // arrives if it was sent at once.
    FakeBroker broker(ctx_);
    ProducerOptions o = Options();
    o.linger_us = int64_t{kNeverMs} * 1000;
    auto p = Make({broker.endpoint()}, o);
    broker.Pump(100);
    p->Push(Spec());
    auto first = broker.Next();
    ASSERT_TRUE(first) << "a lone job was held back";
    EXPECT_EQ(first->ids.size(), 1u);
    broker.Accept(first->ids);
  }
  FakeBroker broker(ctx_);
  ProducerOptions o = Options();
  o.linger_us = 300'000;  // exaggerated, so that timing is unambiguous
  auto p = Make({broker.endpoint()}, o);
  broker.Pump(100);
  // A stream: bursts of 16 jobs, 1 ms apart. Without lingering each burst
  // would leave on its own; held back, they leave in few messages. Each
  // burst is one SubmitBatch, so that it pours (jobs within 200 us of each
  // other) however the submitting thread is scheduled on a loaded machine.
  constexpr size_t kBurst = 16, kStream = 25 * kBurst;
  std::thread submitter([&] {
    const std::vector<JobSpec> burst(kBurst, Spec());
    for (size_t i = 0; i < kStream; i += kBurst) {
      p->SubmitBatch(burst, [](const JobOutcome&) {});
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  size_t jobs = 0;
  int messages = 0;
  while (jobs < kStream) {
    auto msg = broker.Next();
    if (!msg) break;
    jobs += msg->ids.size();
    ++messages;
    broker.Accept(msg->ids);
  }
  submitter.join();
  EXPECT_EQ(jobs, kStream);
  // Typically 2-5 (without lingering: 20-140, one or more per burst).
  EXPECT_LE(messages, 12);
}

TEST_F(ProducerTest, KeepsFramesUnderTheFrameLimit) {
  FakeBroker broker(ctx_);
  ProducerOptions o = Options();
  o.limits.max_frame_bytes = 64 * 1024;
  o.limits.max_payload_bytes = 16 * 1024;
  auto p = Make({broker.endpoint()}, o);
  std::string payload(10000, 'p');
  for (int i = 0; i < 50; ++i) p->Push(Spec(payload));
  size_t jobs = 0;
  int messages = 0;
  while (jobs < 50) {
    auto msg = broker.Next();
    ASSERT_TRUE(msg);
    EXPECT_LE(msg->frame.size(), o.limits.max_frame_bytes);
    EXPECT_GE(msg->ids.size(), 1u);
    jobs += msg->ids.size();
    ++messages;
    broker.Accept(msg->ids);
    broker.Results(msg->ids);
  }
  EXPECT_GE(messages, 8);  // 500 KB in frames of at most 64 KB
  EXPECT_TRUE(p->Flush(kWaitMs));
}

TEST_F(ProducerTest, ResendsSameIdWhenNoAccepted) {
  FakeBroker broker(ctx_);
  ProducerOptions o = Options();
  o.ack_timeout_ms = 100;
  auto p = Make({broker.endpoint()}, o);
  broker.Pump(100);
  Outcomes outcomes;
  // Receive times are late by scheduling noise, so bound the resend from
  // a time taken before the first send, never between two receipts.
  const int64_t t0 = MonoMicros();
  JobId id = p->Submit(Spec(), outcomes.Callback());
  auto first = broker.Next();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->ids, std::vector<JobId>{id});
  auto second = broker.Next();  // no Accepted: resent after ~100 ms
  ASSERT_TRUE(second);
  ASSERT_EQ(second->ids, std::vector<JobId>{id});
  EXPECT_GE(second->at_us - t0, 100'000);
  broker.Accept({id});
  broker.Results({id});
  ASSERT_EQ(outcomes.WaitFor(1).size(), 1u);
  EXPECT_GE(p->counters().resent, 1u);
}

TEST_F(ProducerTest, BusyRetriesAfterRetryAfterWithSameId) {
  FakeBroker broker(ctx_);
  // No resend or time-out of its own within the test's waits: a resend can
  // only come from the Busy's retry-after.
  ProducerOptions o = Options();
  o.ack_timeout_ms = kNeverMs;
  o.default_timeout_ms = kNeverMs;
  auto p = Make({broker.endpoint()}, o);
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  auto first = broker.Next();
  ASSERT_TRUE(first);
  // The producer's retry timer starts when it reads the Busy, which is
  // after the time taken here; so these lower bounds cannot be noise.
  int64_t sent_busy = MonoMicros();
  broker.Error(wire::ErrorCode::Busy, {id}, 200, "queue full");
  auto second = broker.Next();
  ASSERT_TRUE(second);
  ASSERT_EQ(second->ids, std::vector<JobId>{id});
  EXPECT_GE(second->at_us - sent_busy, 200'000);
  // Busy again: the backoff grows.
  sent_busy = MonoMicros();
  broker.Error(wire::ErrorCode::Busy, {id}, 200, "queue full");
  auto third = broker.Next();
  ASSERT_TRUE(third);
  ASSERT_EQ(third->ids, std::vector<JobId>{id});
  EXPECT_GE(third->at_us - sent_busy, 400'000);
  broker.Accept({id});
  broker.Results({id});
  ASSERT_EQ(outcomes.WaitFor(1).size(), 1u);
  EXPECT_EQ(p->counters().busy, 2u);
  EXPECT_EQ(p->counters().resent, 2u);
}

TEST_F(ProducerTest, UnavailableResendsToTheOtherBroker) {
  FakeBroker a(ctx_), b(ctx_);
  auto p = Make({a.endpoint(), b.endpoint()});
  PumpAll({&a, &b}, 150);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  auto first = NextFromAny({&a, &b});
  ASSERT_TRUE(first);
  ASSERT_EQ(first->second.ids, std::vector<JobId>{id});
  FakeBroker* refuser = first->first == 0 ? &a : &b;
  refuser->Error(wire::ErrorCode::Unavailable, {id}, 0, "draining");
  auto second = NextFromAny({&a, &b});
  ASSERT_TRUE(second);
  EXPECT_NE(second->first, first->first);
  ASSERT_EQ(second->second.ids, std::vector<JobId>{id});
  FakeBroker* other = second->first == 0 ? &a : &b;
  other->Accept({id});
  other->Results({id});
  ASSERT_EQ(outcomes.WaitFor(1).size(), 1u);
}

TEST_F(ProducerTest, SilentBrokerJobsMoveToTheOtherBroker) {
  LogCapture log;
  FakeBroker a(ctx_), b(ctx_);
  ProducerOptions o = Options();
  // 3 heartbeats (600 ms) of silence: far beyond the test's own pauses, so
  // only the broker that falls silent is taken for dead.
  o.heartbeat_ms = 200;
  auto p = Make({a.endpoint(), b.endpoint()}, o);
  PumpAll({&a, &b}, 150);
  Outcomes outcomes;
  std::vector<JobId> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(p->Submit(Spec(), outcomes.Callback()));
  // Accept everything wherever it lands.
  std::map<size_t, std::vector<JobId>> held;
  size_t got = 0;
  while (got < ids.size()) {
    auto m = NextFromAny({&a, &b});
    ASSERT_TRUE(m);
    FakeBroker* to = m->first == 0 ? &a : &b;
    to->Accept(m->second.ids);
    held[m->first].insert(held[m->first].end(), m->second.ids.begin(),
                          m->second.ids.end());
    got += m->second.ids.size();
  }
  // The broker holding the most goes silent; the other must get its jobs.
  size_t victim = held[0].size() >= held[1].size() ? 0 : 1;
  FakeBroker* dead = victim == 0 ? &a : &b;
  FakeBroker* live = victim == 0 ? &b : &a;
  dead->set_silent(true);
  // The producer resends the jobs once it takes the silent broker for dead
  // (it says so), never before.
  const std::string died =
      "producer: broker " + dead->endpoint() + " silent for ";
  const std::string resending =
      "; resending its " + std::to_string(held[victim].size()) + " jobs";
  std::vector<JobId> moved;
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (moved.size() < held[victim].size() && MonoMillis() < deadline) {
    dead->Poll(0);
    auto m = live->Poll(1);
    if (m) {
      ASSERT_EQ(m->kind, wire::Body::Submit);
      const std::string line = log.Find(died);
      ASSERT_NE(line, "") << "jobs moved before their broker was taken for "
                             "dead";
      EXPECT_NE(line.find(resending), std::string::npos) << line;
      live->Accept(m->ids);
      live->Results(m->ids);
      moved.insert(moved.end(), m->ids.begin(), m->ids.end());
    }
  }
  ASSERT_EQ(moved.size(), held[victim].size());
  std::set<std::pair<uint64_t, uint64_t>> want, have;
  for (const JobId& id : held[victim]) want.insert({id.hi, id.lo});
  for (const JobId& id : moved) have.insert({id.hi, id.lo});
  EXPECT_EQ(want, have);
  if (!held[1 - victim].empty()) live->Results(held[1 - victim]);
  ASSERT_EQ(outcomes.WaitFor(ids.size()).size(), ids.size());
  EXPECT_TRUE(p->Flush(kWaitMs));
  EXPECT_EQ(p->counters().completed, ids.size());
  EXPECT_GE(p->counters().resent, held[victim].size());
}

// With every broker down jobs wait; a broker that shows up gets them.
TEST_F(ProducerTest, JobsWaitForABrokerToComeUp) {
  // Reserve a port, then close the socket: nothing listens there yet.
  std::string endpoint;
  {
    FakeBroker probe(ctx_);
    endpoint = probe.endpoint();
  }
  ProducerOptions o = Options();
  o.heartbeat_ms = 50;
  auto p = Make({endpoint}, o);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  std::this_thread::sleep_for(milliseconds(300));  // > liveness: socket reset
  EXPECT_EQ(outcomes.size(), 0u);
  zmq::socket_t router(ctx_, zmq::socket_type::router);
  ConfigureSocket(router, Limits(), 0);
  ASSERT_TRUE(Bind(router, endpoint).ok());
  Writer w;
  bool done = false;
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (!done && MonoMillis() < deadline) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(10));
    RouterMessage in;
    while (RecvRouter(router, &in)) {
      std::string copy(reinterpret_cast<const char*>(in.bytes().data()),
                       in.bytes().size());
      Decoded d = Decode(AsBytes(copy), Limits());
      ASSERT_TRUE(d.ok());
      std::string who(in.identity_view());
      if (d.kind() == wire::Body::Heartbeat) {
        (void)SendRouter(router, who, w.EncodeHeartbeat());
      } else if (d.kind() == wire::Body::Submit) {
        auto* jobs = d.envelope->body_as_Submit()->jobs();
        ASSERT_EQ(jobs->size(), 1u);
        EXPECT_EQ(FromWire(jobs->Get(0)->data_nested_root()->id()), id);
        std::vector<JobId> ids{id};
        (void)SendRouter(router, who, w.EncodeAccepted(ids));
        BlobBatch batch;
        Writer rw;
        batch.AddResult(rw.EncodeResult(id, wire::ResultStatus::Ok,
                                        AsBytes("x"), "", 1, 1));
        (void)SendRouter(router, who, batch.FinishResults());
        done = true;
      }
    }
  }
  ASSERT_TRUE(done);
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kCompleted);
}

TEST_F(ProducerTest, RestartedBrokerGetsItsJobsAgain) {
  FakeBroker broker(ctx_);
  broker.set_instance(JobId{1, 1});
  Outcomes outcomes;  // outlives the producer, whose Close calls back
  auto p = Make({broker.endpoint()});
  broker.Pump(300);
  JobId id = p->Submit(Spec("keep me"), outcomes.Callback());
  auto first = broker.Next();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->ids, std::vector<JobId>{id});
  broker.Accept({id});
  broker.Pump(300);  // accepted, and heard from: nothing to resend yet
  // The broker process restarts (same endpoint, new incarnation) and has
  // forgotten the job; the producer must send it again, same id.
  broker.set_instance(JobId{2, 2});
  auto again = broker.Next();
  ASSERT_TRUE(again);
  ASSERT_EQ(again->kind, wire::Body::Submit);
  EXPECT_EQ(again->ids, std::vector<JobId>{id});
  broker.Accept({id});
  broker.Results({id});
  ASSERT_EQ(outcomes.WaitFor(1).size(), 1u);
  EXPECT_EQ(outcomes.WaitFor(1)[0].kind, JobOutcome::Kind::kCompleted);
}

TEST_F(ProducerTest, SubmitBatchDeliversAnOutcomePerJob) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  std::vector<std::string> payloads = {"a", "b", "c"};
  std::vector<JobSpec> specs;
  for (const auto& pl : payloads) specs.push_back(Spec(pl));
  auto futures = p->SubmitBatch(specs);
  ASSERT_EQ(futures.size(), 3u);
  std::vector<JobId> seen;
  while (seen.size() < 3) {
    auto msg = broker.Next();
    ASSERT_TRUE(msg);
    ASSERT_EQ(msg->kind, wire::Body::Submit);
    broker.Accept(msg->ids);
    broker.Results(msg->ids, wire::ResultStatus::Ok, "done");
    seen.insert(seen.end(), msg->ids.begin(), msg->ids.end());
  }
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    JobOutcome o = f.get();
    EXPECT_EQ(o.kind, JobOutcome::Kind::kCompleted);
    EXPECT_EQ(o.output, "done");
    EXPECT_NE(std::find(seen.begin(), seen.end(), o.id), seen.end());
  }
}

TEST_F(ProducerTest, AcceptedIdsRidingInResultsCount) {
  FakeBroker broker(ctx_);
  Outcomes outcomes;  // outlives the producer, whose Close calls back
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  JobId a = p->Submit(Spec("a"), outcomes.Callback());
  auto first = broker.Next();
  ASSERT_TRUE(first);
  JobId b = p->Submit(Spec("b"), outcomes.Callback());
  auto second = broker.Next();
  ASSERT_TRUE(second);
  broker.Accept({a});
  // b's ack rides in the message that carries a's result.
  BlobBatch batch;
  Writer w;
  batch.AddResult(
      w.EncodeResult(a, wire::ResultStatus::Ok, AsBytes("x"), "", 1, 1));
  std::vector<JobId> acked = {b};
  broker.Send(batch.FinishResults(acked));
  ASSERT_EQ(outcomes.WaitFor(1).size(), 1u);
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (p->counters().accepted < 2 && MonoMillis() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(p->counters().accepted, 2u);
  EXPECT_EQ(p->counters().resent, 0u);
}

TEST_F(ProducerTest, DuplicateResultsDeliverOnce) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  std::atomic<int> calls{0};
  JobId id = p->Submit(Spec(), [&](const JobOutcome&) { ++calls; });
  auto msg = broker.Next();
  ASSERT_TRUE(msg);
  broker.Accept({id});
  broker.Results({id, id});  // two in one message
  broker.Results({id});      // and a later one
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (p->counters().duplicates < 2 && MonoMillis() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(p->counters().duplicates, 2u);
  EXPECT_EQ(p->counters().completed, 1u);
}

TEST_F(ProducerTest, NoResultTimesOut) {
  FakeBroker broker(ctx_);
  // Only the job's own 150 ms can time it out within the test's wait.
  ProducerOptions o = Options();
  o.default_timeout_ms = kNeverMs;
  auto p = Make({broker.endpoint()}, o);
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback(), /*timeout_ms=*/150);
  auto msg = broker.Next();
  ASSERT_TRUE(msg);
  broker.Accept({id});
  const int64_t start = MonoMillis();
  // Keep the broker alive (heartbeats) while the job waits for its result.
  while (outcomes.size() == 0 && MonoMillis() - start < kWaitMs) broker.Poll(5);
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kTimedOut);
  EXPECT_EQ(got[0].error.rfind("no result within ", 0), 0u) << got[0].error;
  EXPECT_GE(got[0].latency_us, 150'000);
  EXPECT_EQ(p->counters().timed_out, 1u);
  EXPECT_TRUE(p->Flush(kWaitMs));
  EXPECT_EQ(p->counters().in_flight, 0u);
  // A late result is dropped and counted.
  broker.Results({id});
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (p->counters().duplicates < 1 && MonoMillis() < deadline)
    broker.Poll(5);
  EXPECT_EQ(p->counters().duplicates, 1u);
  EXPECT_EQ(outcomes.size(), 1u);
}

TEST_F(ProducerTest, FutureApi) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  std::future<JobOutcome> f = p->Submit(Spec("abc"));
  auto msg = broker.Next();
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->ids.size(), 1u);
  broker.Accept(msg->ids);
  broker.Results(msg->ids, wire::ResultStatus::Ok, "cba");
  ASSERT_EQ(f.wait_for(milliseconds(kWaitMs)), std::future_status::ready);
  JobOutcome o = f.get();
  EXPECT_EQ(o.kind, JobOutcome::Kind::kCompleted);
  EXPECT_EQ(o.id, msg->ids[0]);
  EXPECT_EQ(o.output, "cba");
}

TEST_F(ProducerTest, PushIsCounted) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  JobSpec s = Spec();
  s.id = JobId::Random();
  JobId id = p->Push(s);
  EXPECT_EQ(id, s.id);  // a caller-chosen id is kept
  for (int i = 0; i < 4; ++i) p->Push(Spec());
  size_t n = 0;
  while (n < 5) {
    auto msg = broker.Next();
    ASSERT_TRUE(msg);
    broker.Accept(msg->ids);
    broker.Results(msg->ids);
    n += msg->ids.size();
  }
  EXPECT_TRUE(p->Flush(kWaitMs));
  ProducerCounters c = p->counters();
  EXPECT_EQ(c.submitted, 5u);
  EXPECT_EQ(c.accepted, 5u);
  EXPECT_EQ(c.completed, 5u);
  EXPECT_EQ(c.in_flight, 0u);
}

TEST_F(ProducerTest, OversizePayloadIsRejectedAtSubmit) {
  FakeBroker broker(ctx_);
  ProducerOptions o = Options();
  o.limits.max_payload_bytes = 100;
  auto p = Make({broker.endpoint()}, o);
  broker.Pump(100);
  Outcomes outcomes;
  std::string big(101, 'b');
  p->Submit(Spec(big), outcomes.Callback());
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kRejected);
  EXPECT_NE(got[0].error.find("exceeds"), std::string::npos) << got[0].error;
  EXPECT_EQ(p->counters().rejected, 1u);
  EXPECT_FALSE(broker.Next(200).has_value());  // nothing was sent

  JobSpec no_task = Spec();
  no_task.task = "";
  auto f = p->Submit(no_task);
  ASSERT_EQ(f.wait_for(milliseconds(kWaitMs)), std::future_status::ready);
  EXPECT_EQ(f.get().kind, JobOutcome::Kind::kRejected);
}

TEST_F(ProducerTest, TooLargeErrorWithIdsRejects) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  Outcomes outcomes;
  JobId id = p->Submit(Spec(), outcomes.Callback());
  ASSERT_TRUE(broker.Next());
  broker.Error(wire::ErrorCode::TooLarge, {id}, 0, "payload too big here");
  auto got = outcomes.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, JobOutcome::Kind::kRejected);
  EXPECT_NE(got[0].error.find("payload too big here"), std::string::npos);
  // An error that names no job is counted, not fatal.
  broker.Error(wire::ErrorCode::BadFrame, {}, 0, "garbage");
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (p->counters().errors < 1 && MonoMillis() < deadline) broker.Poll(5);
  EXPECT_EQ(p->counters().errors, 1u);
}

TEST_F(ProducerTest, FlushTimesOutAndCloseTimesOutTheRest) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  Outcomes outcomes;
  p->Submit(Spec(), outcomes.Callback());
  p->Submit(Spec(), outcomes.Callback());
  EXPECT_FALSE(p->Flush(50));
  p->Close();
  auto got = outcomes.WaitFor(2, 0);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& o : got) EXPECT_EQ(o.kind, JobOutcome::Kind::kTimedOut);
  EXPECT_TRUE(p->Flush(0));
  // Submitting after Close: an immediate outcome, never a hang.
  auto f = p->Submit(Spec());
  ASSERT_EQ(f.wait_for(milliseconds(kWaitMs)), std::future_status::ready);
  EXPECT_EQ(f.get().kind, JobOutcome::Kind::kTimedOut);
  EXPECT_EQ(p->counters().in_flight, 0u);
}

TEST_F(ProducerTest, ManyThreadsSubmit) {
  FakeBroker broker(ctx_);
  auto p = Make({broker.endpoint()});
  broker.Pump(100);
  constexpr int kThreads = 4, kPerThread = 2500;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        p->Submit(Spec(), [&](const JobOutcome& o) {
          if (o.kind == JobOutcome::Kind::kCompleted) ++done;
        });
      }
    });
  }
  size_t n = 0;
  const int64_t deadline = MonoMillis() + kWaitMs;
  while (n < kThreads * kPerThread && MonoMillis() < deadline) {
    auto msg = broker.Next(100);
    if (!msg) continue;
    broker.Accept(msg->ids);
    broker.Results(msg->ids);
    n += msg->ids.size();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(n, static_cast<size_t>(kThreads * kPerThread));
  EXPECT_TRUE(p->Flush(kWaitMs));
  EXPECT_EQ(done.load(), kThreads * kPerThread);
  EXPECT_EQ(p->counters().resent, 0u);
}

}  // namespace
}  // namespace yard
