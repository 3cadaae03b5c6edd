// The broker in-process, driven by raw DEALER sockets that play producer and
// worker, so each protocol rule can be checked message by message.
#include "broker/broker.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"

namespace yard {
namespace {

using namespace std::chrono_literals;

class Peer {
 public:
  Peer(zmq::context_t& ctx, const std::string& ep)
      : s_(ctx, zmq::socket_type::dealer) {
    ConfigureSocket(s_, Limits{}, 0);
    EXPECT_TRUE(Connect(s_, ep).ok());
  }
  void Send(Bytes b) { ASSERT_TRUE(SendDealer(s_, b).ok()); }
  void SendRaw(std::vector<std::string> frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      s_.send(zmq::buffer(frames[i]), i + 1 < frames.size()
                                          ? zmq::send_flags::sndmore
                                          : zmq::send_flags::none);
    }
  }
  // Next decoded envelope, skipping heartbeats; nullopt after the timeout
  // (generous by default: a wait ends as soon as the message is there).
  std::optional<std::string> Recv(std::chrono::milliseconds timeout = 10000ms,
                                  bool skip_heartbeats = true) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{s_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      DealerMessage m;
      while (RecvDealer(s_, &m)) {
        std::string body(AsString(m.bytes()));
        Decoded d = Decode(AsBytes(body), Limits{});
        if (!d.ok()) return body;
        if (skip_heartbeats && d.kind() == wire::Body::Heartbeat) continue;
        return body;
      }
    }
    return std::nullopt;
  }
  zmq::socket_t& socket() { return s_; }

 private:
  zmq::socket_t s_;
};

// Counters are published once per loop turn, possibly after the replies
// went out: wait for them (up to 20 s) instead of reading once.
template <typename Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

const wire::Envelope* Env(const std::string& body) {
  Decoded d = Decode(AsBytes(body), Limits{});
  EXPECT_TRUE(d.ok()) << d.message;
  return d.envelope;
}

// Sorts a producer's replies to one Submit: accepted ids and Busy errors.
struct Replies {
  size_t accepted = 0, busy = 0;
  uint32_t retry_after_ms = 0;
};
Replies ReadReplies(Peer& p, size_t jobs) {
  Replies r;
  while (r.accepted + r.busy < jobs) {
    auto m = p.Recv();
    if (!m) break;
    const auto* env = Env(*m);
    if (env->body_type() == wire::Body::Accepted) {
      r.accepted += env->body_as_Accepted()->ids()->size();
    } else if (env->body_type() == wire::Body::Error &&
               env->body_as_Error()->code() == wire::ErrorCode::Busy) {
      r.busy += env->body_as_Error()->ids()->size();
      r.retry_after_ms = env->body_as_Error()->retry_after_ms();
    } else {
      ADD_FAILURE() << "unexpected reply "
                    << wire::EnumNameBody(env->body_type());
      break;
    }
  }
  return r;
}

std::vector<JobId> RandomIds(size_t n) {
  std::vector<JobId> ids(n);
  for (JobId& id : ids) id = JobId::Random();
  return ids;
}

class BrokerTest : public ::testing::Test {
 protected:
  void Start(BrokerOptions o = {}) {
    o.frontend = "inproc://front";
    o.backend = "inproc://back";
    o.context = &ctx_;
    if (o.heartbeat_ms == 1000) o.heartbeat_ms = 500;
    if (o.drain_timeout_ms == 10000) o.drain_timeout_ms = 200;
    auto b = Broker::Create(o);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    broker_ = std::move(b).value();
    thread_ = std::thread([this] { EXPECT_TRUE(broker_->Run().ok()); });
  }
  void TearDown() override {
    if (broker_) {
      broker_->Stop();
      thread_.join();
    }
  }
  std::string Submit(Peer& p, std::vector<JobId> ids, std::string task = "echo",
                     uint16_t max_attempts = 1) {
    BlobBatch batch;
    for (const JobId& id : ids) {
      JobSpec j;
      j.id = id;
      j.task = task;
      std::string payload = "payload-" + id.ToString();
      j.payload = AsBytes(payload);
      j.max_attempts = max_attempts;
      std::string blob(AsString(w_.EncodeJob(j)));
      batch.AddJob(AsBytes(blob));
    }
    std::string frame(AsString(batch.FinishSubmit()));
    p.Send(AsBytes(frame));
    return frame;
  }
  void Ready(Peer& worker, uint32_t credit) {
    ReadyInfo info;
    info.credit = credit;
    info.capacity = credit;
    info.name = "fake";
    worker.Send(w_.EncodeReady(info));
  }
  // Answers a Dispatch with results echoing the ids; returns the ids.
  std::vector<JobId> AnswerDispatch(
      Peer& worker, const std::string& body,
      wire::ResultStatus status = wire::ResultStatus::Ok) {
    const auto* env = Env(body);
    EXPECT_EQ(env->body_type(), wire::Body::Dispatch);
    std::vector<JobId> ids;
    BlobBatch results;
    for (const auto* b : *env->body_as_Dispatch()->jobs()) {
      JobId id = FromWire(b->data_nested_root()->id());
      ids.push_back(id);
      std::string r(AsString(
          w_.EncodeResult(id, status, AsBytes("out"), "err", b->attempt(), 1)));
      results.AddResult(AsBytes(r));
    }
    worker.Send(results.FinishResults());
    return ids;
  }

  // Submits `n` jobs from `producer` and answers every Dispatch `worker`
  // gets for them Ok (defined after RecvKind).
  void SubmitAndAnswer(Peer& producer, Peer& worker, size_t n);

  // Submits `n` jobs from `p` as one message; every one must be accepted.
  void ExpectAllAccepted(Peer& p, size_t n) {
    Submit(p, RandomIds(n));
    Replies all = ReadReplies(p, n);
    EXPECT_EQ(all.accepted, n);
    EXPECT_EQ(all.busy, 0u);
  }

  zmq::context_t ctx_;
  std::unique_ptr<Broker> broker_;
  std::thread thread_;
  Writer w_;
};

TEST_F(BrokerTest, SubmitDispatchResultRoundTrip) {
  Start();
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 10);
  std::vector<JobId> ids = {JobId::Random(), JobId::Random(), JobId::Random()};
  Submit(producer, ids);
  auto acc = producer.Recv();
  ASSERT_TRUE(acc);
  ASSERT_EQ(Env(*acc)->body_type(), wire::Body::Accepted);
  EXPECT_EQ(Env(*acc)->body_as_Accepted()->ids()->size(), 3u);
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  auto got = AnswerDispatch(worker, *disp);
  EXPECT_EQ(got, ids);
  auto res = producer.Recv();
  ASSERT_TRUE(res);
  ASSERT_EQ(Env(*res)->body_type(), wire::Body::Results);
  EXPECT_EQ(Env(*res)->body_as_Results()->results()->size(), 3u);
}

TEST_F(BrokerTest, NeverSendsMoreThanTheCreditGranted) {
  Start();
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 2);
  std::vector<JobId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(JobId::Random());
  Submit(producer, ids);
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(Env(*disp)->body_as_Dispatch()->jobs()->size(), 2u);
  EXPECT_FALSE(worker.Recv(300ms)) << "dispatched beyond the credit";
  worker.Send(w_.EncodeCredit(1));
  disp = worker.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(Env(*disp)->body_as_Dispatch()->jobs()->size(), 1u);
  EXPECT_FALSE(worker.Recv(300ms));
}

TEST_F(BrokerTest, FullQueueAnswersBusyWithRetryAfter) {
  BrokerOptions o;
  o.max_queue = 2;
  o.busy_retry_after_ms = 77;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  std::vector<JobId> ids = {JobId::Random(), JobId::Random(), JobId::Random()};
  Submit(producer, ids);
  bool saw_busy = false, saw_accepted = false;
  for (int i = 0; i < 2; ++i) {
    auto m = producer.Recv();
    ASSERT_TRUE(m);
    const auto* env = Env(*m);
    if (env->body_type() == wire::Body::Error) {
      EXPECT_EQ(env->body_as_Error()->code(), wire::ErrorCode::Busy);
      EXPECT_EQ(env->body_as_Error()->retry_after_ms(), 77u);
      ASSERT_EQ(env->body_as_Error()->ids()->size(), 1u);
      EXPECT_EQ(FromWire(*env->body_as_Error()->ids()->Get(0)), ids[2]);
      saw_busy = true;
    } else {
      EXPECT_EQ(env->body_as_Accepted()->ids()->size(), 2u);
      saw_accepted = true;
    }
  }
  EXPECT_TRUE(saw_busy && saw_accepted);
}

TEST_F(BrokerTest, DeadWorkersJobsGoToAnotherWorker) {
  BrokerOptions o;
  // A worker is dead after 3 silent heartbeats (1.5 s): the healthy one,
  // which beats every 100 ms, stays alive even if the test stalls for a
  // second.
  o.heartbeat_ms = 500;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  auto silent = std::make_unique<Peer>(ctx_, "inproc://back");
  Ready(*silent, 10);
  std::vector<JobId> ids = {JobId::Random(), JobId::Random()};
  Submit(producer, ids);
  ASSERT_TRUE(silent->Recv());  // got the jobs, then falls silent
  Peer healthy(ctx_, "inproc://back");
  Ready(healthy, 10);
  // Keep the healthy one beating while the silent one expires; the next
  // message it gets must be the silent one's jobs.
  std::optional<std::string> disp;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!disp && std::chrono::steady_clock::now() < deadline) {
    healthy.Send(w_.EncodeHeartbeat());
    disp = healthy.Recv(100ms);
  }
  ASSERT_TRUE(disp) << "the silent worker's jobs never moved";
  const auto* env = Env(*disp);
  ASSERT_NE(env, nullptr);
  ASSERT_EQ(env->body_type(), wire::Body::Dispatch)
      << wire::EnumNameBody(env->body_type());
  ASSERT_EQ(env->body_as_Dispatch()->jobs()->size(), 2u);
  EXPECT_EQ(env->body_as_Dispatch()->jobs()->Get(0)->attempt(), 2);
  AnswerDispatch(healthy, *disp);
  std::optional<std::string> res;
  for (int i = 0; i < 5 && !res; ++i) {
    auto m = producer.Recv();
    if (m && Env(*m)->body_type() == wire::Body::Results) res = m;
  }
  ASSERT_TRUE(res);
  EXPECT_EQ(Env(*res)->body_as_Results()->results()->size(), 2u);
  EXPECT_TRUE(Eventually([&] {
    return broker_->counters().redispatched == 2u;
  })) << broker_->counters().redispatched;
}

// A job whose workers keep dying while running it (a poison job) fails for
// good after max_worker_deaths, with the reason, instead of killing every
// worker in turn.
TEST_F(BrokerTest, PoisonJobFailsAfterMaxWorkerDeaths) {
  BrokerOptions o;
  o.heartbeat_ms = 100;
  o.retry.max_worker_deaths = 2;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  const JobId id = JobId::Random();
  Submit(producer, {id});
  for (uint64_t death = 1; death <= 2; ++death) {
    Peer doomed(ctx_, "inproc://back");
    Ready(doomed, 10);
    auto disp = doomed.Recv();  // takes the job, then never answers
    ASSERT_TRUE(disp) << "death " << death;
    ASSERT_EQ(Env(*disp)->body_type(), wire::Body::Dispatch);
    ASSERT_TRUE(Eventually([&] {
      return broker_->counters().workers_expired == death;
    })) << broker_->counters().workers_expired;
  }
  std::optional<std::string> res;
  for (int i = 0; i < 10 && !res; ++i) {
    auto m = producer.Recv();
    if (m && Env(*m)->body_type() == wire::Body::Results) res = m;
  }
  ASSERT_TRUE(res);
  const auto* r =
      Env(*res)->body_as_Results()->results()->Get(0)->data_nested_root();
  EXPECT_EQ(FromWire(r->id()), id);
  EXPECT_EQ(r->status(), wire::ResultStatus::Failed);
  EXPECT_NE(r->error()->str().find("worker died 2 times"), std::string::npos)
      << r->error()->str();
  EXPECT_EQ(broker_->counters().poisoned, 1u);
  EXPECT_EQ(broker_->counters().redispatched, 1u);  // after the first death
}

TEST_F(BrokerTest, FailedAttemptsAreRetriedUpToMaxAttempts) {
  BrokerOptions o;
  o.retry.base_ms = 10;
  Start(o);
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 10);
  std::vector<JobId> ids = {JobId::Random()};
  Submit(producer, ids, "flaky", 3);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto disp = worker.Recv();
    ASSERT_TRUE(disp) << attempt;
    EXPECT_EQ(Env(*disp)->body_as_Dispatch()->jobs()->Get(0)->attempt(),
              attempt);
    AnswerDispatch(worker, *disp, wire::ResultStatus::Failed);
  }
  std::optional<std::string> res;
  for (int i = 0; i < 5 && !res; ++i) {
    auto m = producer.Recv();
    if (m && Env(*m)->body_type() == wire::Body::Results) res = m;
  }
  ASSERT_TRUE(res);
  const auto* r =
      Env(*res)->body_as_Results()->results()->Get(0)->data_nested_root();
  EXPECT_EQ(r->status(), wire::ResultStatus::Failed);
  EXPECT_EQ(r->attempt(), 3);
  EXPECT_TRUE(Eventually([&] { return broker_->counters().retried == 2u; }))
      << broker_->counters().retried;
}

TEST_F(BrokerTest, BadInputGetsAnErrorAndTheBrokerGoesOn) {
  Start();
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  auto expect_error = [&](Peer& p, wire::ErrorCode code) {
    auto m = p.Recv();
    ASSERT_TRUE(m);
    const auto* env = Env(*m);
    ASSERT_EQ(env->body_type(), wire::Body::Error);
    EXPECT_EQ(env->body_as_Error()->code(), code)
        << AsString(env->body_as_Error()->message());
  };
  producer.SendRaw({"", "garbage bytes that are not a flatbuffer"});
  expect_error(producer, wire::ErrorCode::BadFrame);
  producer.SendRaw({"no delimiter"});
  expect_error(producer, wire::ErrorCode::BadFrame);
  producer.SendRaw({"", "a", "b"});
  expect_error(producer, wire::ErrorCode::BadFrame);
  producer.Send(w_.EncodeCredit(5));  // valid, but not for the frontend
  expect_error(producer, wire::ErrorCode::Unexpected);
  worker.SendRaw({"", "junk"});
  expect_error(worker, wire::ErrorCode::BadFrame);
  // Still serving.
  Ready(worker, 4);
  Submit(producer, {JobId::Random()});
  ASSERT_TRUE(producer.Recv());
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  AnswerDispatch(worker, *disp);
  auto res = producer.Recv();
  ASSERT_TRUE(res);
  EXPECT_EQ(Env(*res)->body_type(), wire::Body::Results);
  EXPECT_TRUE(Eventually([&] { return broker_->counters().bad_frames >= 4u; }))
      << broker_->counters().bad_frames;
}

TEST_F(BrokerTest, ResubmittedIdIsAcknowledgedNotQueuedTwice) {
  Start();
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  JobId id = JobId::Random();
  Submit(producer, {id});
  Submit(producer, {id});
  // Both submits are acknowledged; acks read in one loop turn share a message.
  size_t acked = 0;
  while (acked < 2) {
    auto m = producer.Recv();
    ASSERT_TRUE(m) << "acked " << acked;
    ASSERT_EQ(Env(*m)->body_type(), wire::Body::Accepted);
    for (const auto* a : *Env(*m)->body_as_Accepted()->ids()) {
      EXPECT_EQ(FromWire(*a), id);
      ++acked;
    }
  }
  Ready(worker, 10);
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(Env(*disp)->body_as_Dispatch()->jobs()->size(), 1u);
  EXPECT_FALSE(worker.Recv(300ms));
  EXPECT_TRUE(Eventually([&] { return broker_->counters().duplicates == 1u; }))
      << broker_->counters().duplicates;
}

TEST_F(BrokerTest, DrainingHandsBackWhatIsLeft) {
  BrokerOptions o;
  o.drain_timeout_ms = 300;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  std::vector<JobId> ids = {JobId::Random(), JobId::Random()};
  Submit(producer, ids);
  ASSERT_TRUE(producer.Recv());  // Accepted; no worker will ever come
  broker_->Stop();
  auto m = producer.Recv();
  ASSERT_TRUE(m);
  const auto* env = Env(*m);
  ASSERT_EQ(env->body_type(), wire::Body::Error);
  EXPECT_EQ(env->body_as_Error()->code(), wire::ErrorCode::Unavailable);
  EXPECT_EQ(env->body_as_Error()->ids()->size(), 2u);
  thread_.join();
  broker_.reset();
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// Reads the two answers to a Submit of two jobs: an Error `code` naming
// only `refused`, and an Accepted naming only `accepted`, in either order.
// Returns the error's message.
std::string ExpectOneRefusedAlone(Peer& producer, wire::ErrorCode code,
                                  const JobId& refused, const JobId& accepted) {
  std::string why;
  bool saw_error = false, saw_accepted = false;
  for (int i = 0; i < 2; ++i) {
    auto m = producer.Recv();
    EXPECT_TRUE(m);
    if (!m) break;
    const auto* env = Env(*m);
    if (env->body_type() == wire::Body::Error) {
      const auto* e = env->body_as_Error();
      EXPECT_EQ(e->code(), code);
      EXPECT_EQ(e->ids()->size(), 1u);
      if (e->ids()->size() > 0) {
        EXPECT_EQ(FromWire(*e->ids()->Get(0)), refused);
      }
      why = e->message() ? e->message()->str() : "";
      saw_error = true;
    } else {
      EXPECT_EQ(env->body_type(), wire::Body::Accepted);
      if (env->body_type() != wire::Body::Accepted) continue;
      const auto* ids = env->body_as_Accepted()->ids();
      EXPECT_EQ(ids->size(), 1u);
      if (ids->size() > 0) {
        EXPECT_EQ(FromWire(*ids->Get(0)), accepted);
      }
      saw_accepted = true;
    }
  }
  EXPECT_TRUE(saw_error && saw_accepted);
  return why;
}

TEST_F(BrokerTest, OneOversizedJobIsRefusedAloneByItsId) {
  BrokerOptions o;
  o.limits.max_payload_bytes = 40;  // "payload-<32 hex>" is 40 bytes
  Start(o);
  Peer producer(ctx_, "inproc://front");
  BlobBatch batch;
  JobId good = JobId::Random(), big = JobId::Random();
  for (const JobId& id : {good, big}) {
    JobSpec j;
    j.id = id;
    j.task = "echo";
    std::string payload =
        id == big ? std::string(41, 'x') : std::string(40, 'y');
    j.payload = AsBytes(payload);
    std::string blob(AsString(w_.EncodeJob(j)));
    batch.AddJob(AsBytes(blob));
  }
  producer.Send(batch.FinishSubmit());
  ExpectOneRefusedAlone(producer, wire::ErrorCode::TooLarge, big, good);
  EXPECT_TRUE(Eventually([&] { return broker_->counters().invalid == 1u; }))
      << broker_->counters().invalid;
}

TEST_F(BrokerTest, ANotBeforeBeyondMaxDelayIsRefusedAlone) {
  BrokerOptions o;
  o.max_delay_s = 3600;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  BlobBatch batch;
  const JobId soon = JobId::Random(), late = JobId::Random();
  const int64_t now = UnixMillis();
  for (const JobId& id : {soon, late}) {
    JobSpec j;
    j.id = id;
    j.task = "echo";
    // Within the cap by a minute, and beyond it by a minute.
    j.not_before_ms = now + 3600 * 1000 + (id == late ? 60000 : -60000);
    std::string blob(AsString(w_.EncodeJob(j)));
    batch.AddJob(AsBytes(blob));
  }
  producer.Send(batch.FinishSubmit());
  const std::string why =
      ExpectOneRefusedAlone(producer, wire::ErrorCode::BadBatch, late, soon);
  EXPECT_NE(why.find("--max-delay"), std::string::npos) << why;
}

// A Results message answering `id` with `output`, as any peer may send it.
std::string ResultFor(Writer& w, const JobId& id, std::string_view output) {
  std::string r(AsString(
      w.EncodeResult(id, wire::ResultStatus::Ok, AsBytes(output), "", 1, 1)));
  BlobBatch results;
  results.AddResult(AsBytes(r));
  return std::string(AsString(results.FinishResults()));
}

TEST_F(BrokerTest, OnlyTheWorkerAJobWentToMayAnswerForIt) {
  Start();
  Peer producer(ctx_, "inproc://front"), holder(ctx_, "inproc://back"),
      other(ctx_, "inproc://back"), stranger(ctx_, "inproc://back");
  Ready(holder, 1);
  JobId id = JobId::Random();
  Submit(producer, {id});
  ASSERT_TRUE(producer.Recv());  // Accepted
  auto disp = holder.Recv();
  ASSERT_TRUE(disp);
  // Another registered worker (no credit, so it is handed nothing) and an
  // unregistered peer both answer for the job first.
  Ready(other, 0);
  ASSERT_TRUE(Eventually([&] {
    return nlohmann::json::parse(broker_->StatsJson())["workers"].size() == 2;
  }));
  other.Send(AsBytes(ResultFor(w_, id, "forged by a worker")));
  stranger.Send(AsBytes(ResultFor(w_, id, "forged by a stranger")));
  ASSERT_TRUE(Eventually([&] {
    return broker_->counters().results_foreign == 2u;
  })) << broker_->counters().results_foreign;
  EXPECT_FALSE(producer.Recv(200ms)) << "a forged result reached the producer";
  holder.Send(AsBytes(ResultFor(w_, id, "the real one")));
  auto res = producer.Recv();
  ASSERT_TRUE(res);
  const auto* results = Env(*res)->body_as_Results();
  ASSERT_NE(results, nullptr);
  ASSERT_EQ(results->results()->size(), 1u);
  EXPECT_EQ(AsString(results->results()->Get(0)->data_nested_root()->output()),
            "the real one");
  EXPECT_TRUE(Eventually([&] { return broker_->counters().completed == 1u; }));
}

TEST_F(BrokerTest, OnlyTheSubmitterMayCancelAJob) {
  Start();
  Peer owner(ctx_, "inproc://front"), other(ctx_, "inproc://front");
  JobId id = JobId::Random();
  Submit(owner, {id});
  ASSERT_TRUE(owner.Recv());  // Accepted; no worker: the job waits
  other.Send(w_.EncodeCancel({&id, 1}));
  auto m = other.Recv();
  ASSERT_TRUE(m);
  ASSERT_EQ(Env(*m)->body_type(), wire::Body::Error);
  EXPECT_EQ(Env(*m)->body_as_Error()->code(), wire::ErrorCode::Forbidden);
  ASSERT_EQ(Env(*m)->body_as_Error()->ids()->size(), 1u);
  EXPECT_TRUE(
      Eventually([&] { return broker_->counters().cancels_refused == 1u; }));
  // Still queued: its owner cancels it and hears so.
  owner.Send(w_.EncodeCancel({&id, 1}));
  auto res = owner.Recv();
  ASSERT_TRUE(res);
  ASSERT_EQ(Env(*res)->body_type(), wire::Body::Results);
  const auto* r = Env(*res)->body_as_Results()->results()->Get(0);
  EXPECT_EQ(r->data_nested_root()->status(), wire::ResultStatus::Cancelled);
  EXPECT_EQ(FromWire(r->data_nested_root()->id()), id);
}

TEST_F(BrokerTest, EachProducerHasItsOwnRateLimit) {
  BrokerOptions o;
  o.quotas.rate = 10;  // one job's token every 100 ms
  o.quotas.burst = 10;
  Start(o);
  Peer flood(ctx_, "inproc://front"), calm(ctx_, "inproc://front");
  Submit(flood, RandomIds(30));
  Replies r = ReadReplies(flood, 30);
  EXPECT_EQ(r.accepted, 10u);
  EXPECT_EQ(r.busy, 20u);
  EXPECT_GE(r.retry_after_ms, 50u);  // about 100 ms: the next token
  EXPECT_LE(r.retry_after_ms, 100u);
  EXPECT_TRUE(
      Eventually([&] { return broker_->counters().busy_quota == 20u; }));
  // Inproc peers have no address: each connection is a producer here.
  ExpectAllAccepted(calm, 5);
}

TEST_F(BrokerTest, AProducersUnfinishedJobsAreCapped) {
  BrokerOptions o;
  o.quotas.max_queued = 5;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  Submit(producer, RandomIds(8));
  Replies r = ReadReplies(producer, 8);
  EXPECT_EQ(r.accepted, 5u);
  EXPECT_EQ(r.busy, 3u);
  // A worker finishes them: their results count back, and 5 more go in.
  Peer worker(ctx_, "inproc://back");
  Ready(worker, 10);
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(AnswerDispatch(worker, *disp).size(), 5u);
  auto res = producer.Recv();
  ASSERT_TRUE(res);
  ASSERT_EQ(Env(*res)->body_type(), wire::Body::Results);
  ExpectAllAccepted(producer, 5);
}

TEST_F(BrokerTest, WorkersBeyondTheLimitAreRefusedBusy) {
  BrokerOptions o;
  o.max_workers = 1;
  Start(o);
  Peer producer(ctx_, "inproc://front"), first(ctx_, "inproc://back"),
      second(ctx_, "inproc://back");
  Ready(first, 0);
  ASSERT_TRUE(Eventually([&] {
    return nlohmann::json::parse(broker_->StatsJson())["workers"].size() == 1;
  }));
  Ready(second, 100);
  auto m = second.Recv();
  ASSERT_TRUE(m);
  ASSERT_EQ(Env(*m)->body_type(), wire::Body::Error);
  EXPECT_EQ(Env(*m)->body_as_Error()->code(), wire::ErrorCode::Busy);
  EXPECT_TRUE(
      Eventually([&] { return broker_->counters().workers_refused == 1u; }));
  // The refused worker's credit was not taken: a job waits for the first.
  Submit(producer, {JobId::Random()});
  EXPECT_FALSE(second.Recv(300ms));
  Ready(first, 1);
  auto disp = first.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(Env(*disp)->body_type(), wire::Body::Dispatch);
}

TEST_F(BrokerTest, BytesHeldAreBoundedAndCountedBack) {
  BrokerOptions o;
  o.limits.max_frame_bytes = 64 << 10;
  o.max_queue_bytes = 64 << 10;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  // One job of ~20 KB per message, no worker: the fourth frame passes the
  // 64 KiB of held bytes and its job is refused Busy.
  std::vector<JobId> ids;
  size_t busy = 0, accepted = 0;
  for (int i = 0; i < 6; ++i) {
    JobSpec j;
    j.id = JobId::Random();
    j.task = "echo";
    std::string payload(20000, 'p');
    j.payload = AsBytes(payload);
    std::string blob(AsString(w_.EncodeJob(j)));
    BlobBatch batch;
    batch.AddJob(AsBytes(blob));
    producer.Send(batch.FinishSubmit());
    auto m = producer.Recv();
    ASSERT_TRUE(m);
    if (Env(*m)->body_type() == wire::Body::Error) {
      EXPECT_EQ(Env(*m)->body_as_Error()->code(), wire::ErrorCode::Busy);
      ++busy;
    } else {
      ASSERT_EQ(Env(*m)->body_type(), wire::Body::Accepted);
      ids.push_back(j.id);
      ++accepted;
    }
  }
  EXPECT_EQ(accepted, 3u);
  EXPECT_EQ(busy, 3u);
  EXPECT_TRUE(Eventually([&] { return broker_->counters().busy_bytes == 3u; }));
  auto held = [&] {
    return nlohmann::json::parse(broker_->StatsJson())["memory"]["bytes"]
        .get<size_t>();
  };
  EXPECT_GT(held(), 60000u);
  // A worker runs them: every byte is counted back, and submits go in again.
  Peer worker(ctx_, "inproc://back");
  Ready(worker, 10);
  auto disp = worker.Recv();
  ASSERT_TRUE(disp);
  EXPECT_EQ(AnswerDispatch(worker, *disp), ids);
  EXPECT_TRUE(Eventually([&] { return held() == 0; })) << held();
  Submit(producer, {JobId::Random()});
  bool accepted_again = false;
  for (int i = 0; i < 3 && !accepted_again; ++i) {
    auto m = producer.Recv();
    ASSERT_TRUE(m);
    accepted_again = Env(*m)->body_type() == wire::Body::Accepted;
  }
  EXPECT_TRUE(accepted_again);
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

TEST_F(BrokerTest, ABurstIsSharedAmongWorkersWithRoom) {
  Start();
  Peer producer(ctx_, "inproc://front");
  Peer a(ctx_, "inproc://back"), b(ctx_, "inproc://back");
  Ready(a, 100);
  Ready(b, 100);
  // Both registered before the burst arrives (asked over the wire: the
  // broker's state belongs to its thread).
  ASSERT_TRUE(Eventually([&] {
    producer.Send(w_.EncodeStatsRequest());
    auto m = producer.Recv();
    if (!m || Env(*m)->body_type() != wire::Body::Stats) return false;
    auto stats =
        nlohmann::json::parse(AsString(Env(*m)->body_as_Stats()->json()));
    return stats["workers"].size() == 2;
  }));
  std::vector<JobId> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(JobId::Random());
  Submit(producer, ids);
  auto da = a.Recv(), db = b.Recv();
  ASSERT_TRUE(da && db);
  EXPECT_EQ(Env(*da)->body_as_Dispatch()->jobs()->size(), 5u);
  EXPECT_EQ(Env(*db)->body_as_Dispatch()->jobs()->size(), 5u);
}

// Issue 5, placement: tags and taints on workers, required tags and
// tolerations on jobs. A job no live worker may take waits (and is shown as
// waiting) until one registers; an invalid selector is refused at submit.
class PlacementTest : public BrokerTest {
 protected:
  // The fake workers do not beat: a heartbeat long enough for a test.
  static BrokerOptions QuietWorkers() {
    BrokerOptions o;
    o.heartbeat_ms = 5000;
    return o;
  }
  void ReadyLabeled(Peer& worker, const std::string& name,
                    std::vector<std::string> tags,
                    std::vector<std::string> taints) {
    ReadyInfo info;
    info.credit = 10;
    info.capacity = 10;
    info.name = name;
    info.tags = std::move(tags);
    info.taints = std::move(taints);
    worker.Send(w_.EncodeReady(info));
  }
  void ReadyTasks(Peer& worker, const std::string& name,
                  std::vector<std::string> tasks, uint32_t credit = 10) {
    ReadyInfo info;
    info.credit = credit;
    info.capacity = credit;
    info.name = name;
    info.tasks = std::move(tasks);
    worker.Send(w_.EncodeReady(info));
  }
  JobId SubmitOne(Peer& p, JobSpec j) {
    j.id = JobId::Random();
    if (j.task.empty()) j.task = "echo";
    BlobBatch batch;
    std::string blob(AsString(w_.EncodeJob(j)));
    batch.AddJob(AsBytes(blob));
    p.Send(batch.FinishSubmit());
    return j.id;
  }
  // The ids in the next Dispatch `worker` gets (empty: none within 1 s).
  std::vector<JobId> NextDispatch(Peer& worker) {
    std::vector<JobId> ids;
    auto m = worker.Recv(1000ms);
    if (!m || Env(*m)->body_type() != wire::Body::Dispatch) return ids;
    for (const auto* b : *Env(*m)->body_as_Dispatch()->jobs()) {
      ids.push_back(FromWire(b->data_nested_root()->id()));
    }
    return ids;
  }
  JobId SubmitTask(Peer& p, std::string task) {
    JobSpec j;
    j.task = std::move(task);
    return SubmitOne(p, std::move(j));
  }
  // The ids of the next `n` jobs `worker` is sent (fewer: none came
  // within 1 s).
  std::unordered_set<JobId, JobIdHash> Dispatched(Peer& worker, size_t n) {
    std::unordered_set<JobId, JobIdHash> ids;
    while (ids.size() < n) {
      std::vector<JobId> got = NextDispatch(worker);
      if (got.empty()) break;
      ids.insert(got.begin(), got.end());
    }
    return ids;
  }
  // Whether the broker soon says it has `n` workers.
  bool HasWorkers(Peer& producer, size_t n) {
    return Eventually([&] {
      auto s = Stats(producer);
      return s.is_object() && s["workers"].size() == n;
    });
  }
  nlohmann::json Stats(Peer& producer) {
    producer.Send(w_.EncodeStatsRequest());
    for (int i = 0; i < 10; ++i) {
      auto m = producer.Recv();
      if (m && Env(*m)->body_type() == wire::Body::Stats) {
        return nlohmann::json::parse(
            AsString(Env(*m)->body_as_Stats()->json()));
      }
    }
    return nullptr;
  }
};

TEST_F(PlacementTest, JobsGoWhereTheirSelectorAllowsAndWaitOtherwise) {
  Start(QuietWorkers());
  Peer producer(ctx_, "inproc://front");
  Peer cpu(ctx_, "inproc://back"), gpu(ctx_, "inproc://back");
  ReadyLabeled(cpu, "cpu", {}, {});
  ReadyLabeled(gpu, "gpu", {"gpu", "zone=us"}, {"dedicated=gpu"});
  ASSERT_TRUE(HasWorkers(producer, 2));
  // No selector: not to the tainted worker.
  JobSpec plain;
  JobId a = SubmitOne(producer, plain);
  EXPECT_EQ(NextDispatch(cpu), std::vector<JobId>{a});
  // Needs the gpu tag and tolerates the taint (key only: any value).
  JobSpec on_gpu;
  on_gpu.tags = {"gpu"};
  on_gpu.tolerations = {"dedicated"};
  JobId b = SubmitOne(producer, on_gpu);
  EXPECT_EQ(NextDispatch(gpu), std::vector<JobId>{b});
  // The gpu tag without the toleration, and a zone nobody is in: no worker
  // may take them. They wait.
  JobSpec intolerant;
  intolerant.tags = {"gpu"};
  SubmitOne(producer, intolerant);
  JobSpec in_eu;
  in_eu.tags = {"zone=eu"};
  JobId d = SubmitOne(producer, in_eu);
  EXPECT_TRUE(NextDispatch(cpu).empty());
  EXPECT_TRUE(NextDispatch(gpu).empty());
  ASSERT_TRUE(Eventually([&] {
    auto s = Stats(producer);
    return s.is_object() && s["waiting"]["no_worker"] == 2;
  }));
  // A worker in zone eu joins: the eu job goes there; the other still waits.
  Peer eu(ctx_, "inproc://back");
  ReadyLabeled(eu, "eu", {"zone=eu"}, {});
  EXPECT_EQ(NextDispatch(eu), std::vector<JobId>{d});
  ASSERT_TRUE(Eventually([&] {
    auto s = Stats(producer);
    return s.is_object() && s["waiting"]["no_worker"] == 1;
  }));
  // An invalid selector is refused at submit, by id, with the reason.
  JobSpec bad;
  bad.tags = {"gpu!"};
  JobId e = SubmitOne(producer, bad);
  std::optional<std::string> err;
  for (int i = 0; i < 10 && !err; ++i) {
    auto m = producer.Recv();
    if (m && Env(*m)->body_type() == wire::Body::Error) err = m;
  }
  ASSERT_TRUE(err);
  const auto* error = Env(*err)->body_as_Error();
  EXPECT_EQ(error->code(), wire::ErrorCode::BadBatch);
  EXPECT_NE(AsString(error->message()).find("gpu!"), std::string_view::npos)
      << AsString(error->message());
  ASSERT_EQ(error->ids()->size(), 1u);
  EXPECT_EQ(FromWire(error->ids()->Get(0)), e);
}

// Routing by task: a worker that lists tasks gets only jobs of those tasks;
// one that lists none takes any.
TEST_F(PlacementTest, JobsGoOnlyToWorkersThatRunTheirTask) {
  Start(QuietWorkers());
  Peer producer(ctx_, "inproc://front");
  Peer resize(ctx_, "inproc://back"), mail(ctx_, "inproc://back");
  ReadyTasks(resize, "resize", {"resize"});
  ReadyTasks(mail, "mail", {"mail", "digest"});
  ASSERT_TRUE(HasWorkers(producer, 2));
  std::unordered_set<JobId, JobIdHash> resizes, mails;
  for (int i = 0; i < 5; ++i) {
    resizes.insert(SubmitTask(producer, "resize"));
    mails.insert(SubmitTask(producer, "mail"));
  }
  EXPECT_EQ(Dispatched(resize, resizes.size()), resizes);
  EXPECT_EQ(Dispatched(mail, mails.size()), mails);
  // A task nobody runs waits (and goes to neither).
  JobId report = SubmitTask(producer, "report");
  ASSERT_TRUE(Eventually([&] {
    auto s = Stats(producer);
    return s.is_object() && s["waiting"]["no_worker"] == 1;
  }));
  EXPECT_TRUE(NextDispatch(resize).empty());
  EXPECT_TRUE(NextDispatch(mail).empty());
  // A worker that lists no tasks runs them all: it gets the report.
  Peer any(ctx_, "inproc://back");
  ReadyTasks(any, "any", {});
  EXPECT_EQ(NextDispatch(any), std::vector<JobId>{report});
}

// A job whose task no live worker runs fails after the unroutable timeout,
// with the reason; one whose task is run, but whose selector no worker
// admits, keeps waiting as before.
TEST_F(PlacementTest, AJobNoWorkerRunsFailsAfterTheUnroutableTimeout) {
  BrokerOptions o = QuietWorkers();
  o.unroutable_timeout_ms = 300;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  Peer resize(ctx_, "inproc://back");
  ReadyTasks(resize, "resize", {"resize"});
  ASSERT_TRUE(HasWorkers(producer, 1));
  JobSpec in_eu;
  in_eu.task = "resize";
  in_eu.tags = {"zone=eu"};
  SubmitOne(producer, in_eu);
  JobId typo = SubmitTask(producer, "resise");
  std::optional<std::string> failed;
  for (int i = 0; i < 20 && !failed; ++i) {
    auto m = producer.Recv();
    if (m && Env(*m)->body_type() == wire::Body::Results) failed = m;
  }
  ASSERT_TRUE(failed);
  const auto* results = Env(*failed)->body_as_Results()->results();
  ASSERT_EQ(results->size(), 1u);
  const wire::JobResult* r = results->Get(0)->data_nested_root();
  EXPECT_EQ(FromWire(r->id()), typo);
  EXPECT_EQ(r->status(), wire::ResultStatus::UnknownTask);
  EXPECT_EQ(AsString(r->error()), "no worker runs task resise");
  auto s = Stats(producer);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["counters"]["failed_no_worker"], 1);
  EXPECT_EQ(s["waiting"]["no_worker"], 1);  // the eu job, past its time too
  // The worker still gets its own task.
  JobId ok = SubmitTask(producer, "resize");
  EXPECT_EQ(NextDispatch(resize), std::vector<JobId>{ok});
}

// Jobs no worker may take are held in the broker, but they do not stop it
// claiming the jobs behind them that have a worker.
TEST_F(PlacementTest, UnroutableJobsDoNotStopTheClaimsOfOthers) {
  Start(QuietWorkers());
  Peer producer(ctx_, "inproc://front");
  Peer echo(ctx_, "inproc://back");
  ReadyTasks(echo, "echo", {"echo"}, 100);
  ASSERT_TRUE(HasWorkers(producer, 1));
  // More than the broker holds for workers that are busy (10,000).
  for (int i = 0; i < 11; ++i) {
    Submit(producer, RandomIds(1000), "nobody-runs-this");
    Replies r = ReadReplies(producer, 1000);
    ASSERT_EQ(r.accepted, 1000u);
  }
  std::vector<JobId> wanted = RandomIds(20);
  Submit(producer, wanted, "echo");
  ASSERT_EQ(ReadReplies(producer, wanted.size()).accepted, wanted.size());
  const std::unordered_set<JobId, JobIdHash> want(wanted.begin(), wanted.end());
  EXPECT_EQ(Dispatched(echo, wanted.size()), want);
  auto s = Stats(producer);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["waiting"]["no_worker"], 11000);
}

TEST_F(PlacementTest, AffinityKeepsAKeyOnOneWorker) {
  BrokerOptions o;
  o.balancer = "affinity";
  o.heartbeat_ms = 5000;
  Start(o);
  Peer producer(ctx_, "inproc://front");
  Peer a(ctx_, "inproc://back"), b(ctx_, "inproc://back");
  ReadyLabeled(a, "worker-a", {}, {});
  ReadyLabeled(b, "worker-b", {}, {});
  ASSERT_TRUE(HasWorkers(producer, 2));
  // Eight keys, three rounds: each key's jobs all land on one worker.
  std::map<std::string, std::set<std::string>> where;
  for (int round = 0; round < 3; ++round) {
    std::unordered_map<JobId, std::string, JobIdHash> key_of;
    std::vector<std::string> keys;
    for (int k = 0; k < 8; ++k) keys.push_back("customer-" + std::to_string(k));
    for (const std::string& key : keys) {
      JobSpec j;
      j.affinity_key = key;
      key_of[SubmitOne(producer, j)] = key;
    }
    size_t seen = 0;
    for (auto [peer, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
      for (int i = 0; i < 8 && seen < 8; ++i) {
        std::vector<JobId> ids = NextDispatch(*peer);
        if (ids.empty()) break;
        BlobBatch results;  // answered, so the credit comes back
        for (const JobId& id : ids) {
          where[key_of[id]].insert(name);
          std::string r(AsString(w_.EncodeResult(id, wire::ResultStatus::Ok,
                                                 AsBytes("x"), "", 1, 1)));
          results.AddResult(AsBytes(r));
        }
        peer->Send(results.FinishResults());
        seen += ids.size();
      }
    }
    ASSERT_EQ(seen, 8u) << "round " << round;
  }
  std::set<std::string> used;
  for (const auto& [key, workers] : where) {
    EXPECT_EQ(workers.size(), 1u) << key;
    used.insert(workers.begin(), workers.end());
  }
  EXPECT_EQ(used.size(), 2u) << "eight keys, all on one of two workers";
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// The next message of a kind, skipping others (heartbeats are skipped by
// Recv); nullopt when none comes in time.
std::optional<std::string> RecvKind(Peer& p, wire::Body kind, int tries = 20) {
  for (int i = 0; i < tries; ++i) {
    auto m = p.Recv(500ms);
    if (m && Env(*m)->body_type() == kind) return m;
  }
  return std::nullopt;
}

void BrokerTest::SubmitAndAnswer(Peer& producer, Peer& worker, size_t n) {
  Submit(producer, RandomIds(n));
  for (size_t got = 0; got < n;) {
    auto disp = RecvKind(worker, wire::Body::Dispatch);
    ASSERT_TRUE(disp);
    got += AnswerDispatch(worker, *disp).size();
  }
}

std::string ResultOfAttempt(Writer& w, const JobId& id, uint16_t attempt,
                            std::string_view output) {
  std::string r(AsString(w.EncodeResult(id, wire::ResultStatus::Ok,
                                        AsBytes(output), "", attempt, 1)));
  BlobBatch results;
  results.AddResult(AsBytes(r));
  return std::string(AsString(results.FinishResults()));
}

nlohmann::json WorkerStats(Broker& b, size_t i) {
  return nlohmann::json::parse(b.StatsJson())["workers"][i];
}

TEST_F(BrokerTest, RunTimeoutCancelsRetriesAndIgnoresTheLateResult) {
  BrokerOptions o;
  o.run_timeout_ms = 2000;  // attempt 2 is answered well within it
  o.heartbeat_ms = 3000;    // the worker here sends no heartbeats
  o.retry.base_ms = 10;
  Start(o);
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 10);
  const JobId id = JobId::Random();
  Submit(producer, {id}, "echo", 2);
  ASSERT_TRUE(RecvKind(producer, wire::Body::Accepted));
  auto first = RecvKind(worker, wire::Body::Dispatch);
  ASSERT_TRUE(first);
  EXPECT_EQ(Env(*first)->body_as_Dispatch()->jobs()->Get(0)->attempt(), 1);
  // Not answered: past 2 s the broker sends Cancel{id} ...
  auto cancel = RecvKind(worker, wire::Body::Cancel, 10);
  ASSERT_TRUE(cancel);
  const auto* ids = Env(*cancel)->body_as_Cancel()->ids();
  ASSERT_EQ(ids->size(), 1u);
  EXPECT_EQ(FromWire(*ids->Get(0)), id);
  // ... and dispatches the job again as attempt 2; the taken-back attempt
  // still holds its slot (10 granted, 2 in use).
  auto second = RecvKind(worker, wire::Body::Dispatch);
  ASSERT_TRUE(second);
  EXPECT_EQ(Env(*second)->body_as_Dispatch()->jobs()->Get(0)->attempt(), 2);
  EXPECT_TRUE(Eventually([&] {
    return WorkerStats(*broker_, 0)["outstanding"] == 2 &&
           WorkerStats(*broker_, 0)["credit"] == 8;
  })) << broker_->StatsJson();
  // Attempt 1's result comes late: ignored (not forwarded), but its slot
  // comes back.
  worker.Send(AsBytes(ResultOfAttempt(w_, id, 1, "late")));
  ASSERT_TRUE(
      Eventually([&] { return broker_->counters().results_late == 1u; }));
  if (auto m = RecvKind(producer, wire::Body::Results, 1)) {
    const auto* r =
        Env(*m)->body_as_Results()->results()->Get(0)->data_nested_root();
    ADD_FAILURE() << "a result reached the producer: " << AsString(r->output())
                  << " " << AsString(r->error()) << " attempt " << r->attempt();
  }
  EXPECT_TRUE(
      Eventually([&] { return WorkerStats(*broker_, 0)["credit"] == 9; }));
  // A second late copy is not taken again, nor is it this attempt's result.
  worker.Send(AsBytes(ResultOfAttempt(w_, id, 1, "late again")));
  worker.Send(AsBytes(ResultOfAttempt(w_, id, 2, "on time")));
  auto res = RecvKind(producer, wire::Body::Results);
  ASSERT_TRUE(res);
  const auto* r =
      Env(*res)->body_as_Results()->results()->Get(0)->data_nested_root();
  EXPECT_EQ(AsString(r->output()), "on time");
  EXPECT_EQ(r->attempt(), 2);
  EXPECT_TRUE(
      Eventually([&] { return broker_->counters().results_late == 2u; }));
  // The broker counts a routed result after it has sent it: the producer
  // may read it first.
  EXPECT_TRUE(Eventually([&] { return broker_->counters().completed == 1u; }))
      << broker_->StatsJson();
  const BrokerCounters c = broker_->counters();
  EXPECT_EQ(c.timed_out, 1u);
  EXPECT_EQ(c.retried, 1u);
  EXPECT_EQ(c.completed, 1u);
  EXPECT_TRUE(Eventually([&] {
    return WorkerStats(*broker_, 0)["credit"] == 10 &&
           WorkerStats(*broker_, 0)["outstanding"] == 0;
  })) << broker_->StatsJson();
}

TEST_F(BrokerTest, JobsAnsweredInTimeNeverTimeOut) {
  BrokerOptions o;
  o.run_timeout_ms = 300;
  Start(o);
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 1000);
  size_t answered = 0;
  for (int round = 0; round < 5; ++round) {
    ASSERT_NO_FATAL_FAILURE(SubmitAndAnswer(producer, worker, 200));
    answered += 200;
  }
  ASSERT_TRUE(
      Eventually([&] { return broker_->counters().completed == answered; }));
  std::this_thread::sleep_for(600ms);  // every deadline has passed
  EXPECT_EQ(broker_->counters().timed_out, 0u);
  EXPECT_FALSE(RecvKind(worker, wire::Body::Cancel, 1));
}

TEST_F(BrokerTest, FinishedJobsDoNotPileUpInTheDeadlineHeap) {
  BrokerOptions o;
  o.run_timeout_ms = 600000;  // none comes due during the test
  Start(o);
  Peer producer(ctx_, "inproc://front"), worker(ctx_, "inproc://back");
  Ready(worker, 1000);
  size_t answered = 0;
  while (answered < 10000) {
    ASSERT_NO_FATAL_FAILURE(SubmitAndAnswer(producer, worker, 500));
    answered += 500;
  }
  ASSERT_TRUE(
      Eventually([&] { return broker_->counters().completed == answered; }));
  // Nothing runs: the heap is rebuilt once its stale entries pass 4096.
  EXPECT_TRUE(Eventually([&] {
    return nlohmann::json::parse(broker_->StatsJson())["run_deadlines"] <= 4096;
  })) << broker_->StatsJson();
}

TEST_F(BrokerTest, AWorkerWhoseJobsKeepTimingOutIsQuarantined) {
  BrokerOptions o;
  o.run_timeout_ms = 100;
  o.quarantine_after = 3;
  Start(o);
  Peer producer(ctx_, "inproc://front"), silent(ctx_, "inproc://back");
  Ready(silent, 10);
  std::vector<JobId> ids = RandomIds(3);
  Submit(producer, ids);  // one attempt each
  ASSERT_TRUE(RecvKind(producer, wire::Body::Accepted));
  ASSERT_TRUE(RecvKind(silent, wire::Body::Dispatch));
  // Out of attempts: each fails with the error "timed out".
  size_t failed = 0;
  while (failed < 3) {
    auto res = RecvKind(producer, wire::Body::Results);
    ASSERT_TRUE(res) << failed;
    for (const auto* blob : *Env(*res)->body_as_Results()->results()) {
      const auto* r = blob->data_nested_root();
      EXPECT_EQ(r->status(), wire::ResultStatus::Failed);
      EXPECT_EQ(AsString(r->error()), "timed out");
      ++failed;
    }
  }
  ASSERT_TRUE(Eventually([&] {
    auto s = nlohmann::json::parse(broker_->StatsJson());
    return s["workers_quarantined"] == 1 && s["workers"][0]["quarantined"];
  })) << broker_->StatsJson();
  // It has 7 credit left but gets nothing; a new worker gets the next job.
  const JobId next = JobId::Random();
  Submit(producer, {next});
  ASSERT_TRUE(RecvKind(producer, wire::Body::Accepted));
  Peer honest(ctx_, "inproc://back");
  Ready(honest, 10);
  auto disp = RecvKind(honest, wire::Body::Dispatch);
  ASSERT_TRUE(disp);
  AnswerDispatch(honest, *disp);
  ASSERT_TRUE(RecvKind(producer, wire::Body::Results));
  for (int i = 0; i < 3; ++i) {
    if (auto m = silent.Recv(100ms)) {
      EXPECT_NE(Env(*m)->body_type(), wire::Body::Dispatch);
    }
  }
  // Any result from it (here a late one) ends the quarantine.
  silent.Send(AsBytes(ResultOfAttempt(w_, ids[0], 1, "late")));
  EXPECT_TRUE(Eventually([&] {
    return nlohmann::json::parse(broker_->StatsJson())["workers_quarantined"] ==
           0;
  })) << broker_->StatsJson();
  EXPECT_EQ(broker_->counters().quarantines, 1u);
}

// A running job: only its owner (or an admin) may cancel it; then its
// worker hears Cancel, the owner gets one Cancelled result, the worker's
// answer returns its slot and goes nowhere, and the job never runs again.
TEST_F(BrokerTest, CancelOfARunningJobReachesItsWorkerAndEndsOnce) {
  BrokerOptions o;
  o.heartbeat_ms = 3000;  // the worker here sends no heartbeats
  Start(o);
  Peer owner(ctx_, "inproc://front"), other(ctx_, "inproc://front"),
      worker(ctx_, "inproc://back");
  Ready(worker, 10);
  const JobId id = JobId::Random();
  Submit(owner, {id}, "echo", 3);  // retries allowed: a cancel must not retry
  ASSERT_TRUE(RecvKind(owner, wire::Body::Accepted));
  ASSERT_TRUE(RecvKind(worker, wire::Body::Dispatch));
  other.Send(w_.EncodeCancel({&id, 1}));
  auto refused = RecvKind(other, wire::Body::Error);
  ASSERT_TRUE(refused);
  EXPECT_EQ(Env(*refused)->body_as_Error()->code(), wire::ErrorCode::Forbidden);
  EXPECT_FALSE(RecvKind(worker, wire::Body::Cancel, 1))
      << "a stranger's Cancel reached the worker";
  owner.Send(w_.EncodeCancel({&id, 1}));
  auto cancel = RecvKind(worker, wire::Body::Cancel);
  ASSERT_TRUE(cancel);
  ASSERT_EQ(Env(*cancel)->body_as_Cancel()->ids()->size(), 1u);
  EXPECT_EQ(FromWire(*Env(*cancel)->body_as_Cancel()->ids()->Get(0)), id);
  auto res = RecvKind(owner, wire::Body::Results);
  ASSERT_TRUE(res);
  const auto* r =
      Env(*res)->body_as_Results()->results()->Get(0)->data_nested_root();
  EXPECT_EQ(FromWire(r->id()), id);
  EXPECT_EQ(r->status(), wire::ResultStatus::Cancelled);
  // The worker's answer (its handler returned anyway) is not a second
  // result; its slot comes back.
  worker.Send(AsBytes(ResultOfAttempt(w_, id, 1, "finished anyway")));
  ASSERT_TRUE(
      Eventually([&] { return broker_->counters().results_late == 1u; }));
  EXPECT_FALSE(RecvKind(owner, wire::Body::Results, 2))
      << "a second result reached the owner";
  EXPECT_FALSE(RecvKind(worker, wire::Body::Dispatch, 1))
      << "a cancelled job was dispatched again";
  EXPECT_TRUE(Eventually([&] {
    return WorkerStats(*broker_, 0)["credit"] == 10 &&
           WorkerStats(*broker_, 0)["outstanding"] == 0;
  })) << broker_->StatsJson();
  const BrokerCounters c = broker_->counters();
  EXPECT_EQ(c.cancelled, 1u);
  EXPECT_EQ(c.cancels_refused, 1u);
  EXPECT_EQ(c.retried, 0u);
  // Cancelled again, or a job never seen: this broker holds neither.
  owner.Send(w_.EncodeCancel({&id, 1}));
  auto unknown = RecvKind(owner, wire::Body::Error);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(Env(*unknown)->body_as_Error()->code(), wire::ErrorCode::NotFound);
  EXPECT_TRUE(
      Eventually([&] { return broker_->counters().cancels_unknown == 1u; }));
}

// Progress is forwarded to the job's producer only from the worker the job
// was dispatched to, for the attempt it runs; others are refused (NotFound
// to the sender, counted) and reach no producer.
TEST_F(BrokerTest, OnlyTheWorkerRunningAJobMayReportItsProgress) {
  BrokerOptions o;
  o.heartbeat_ms = 3000;  // the workers here send no heartbeats
  Start(o);
  Peer producer(ctx_, "inproc://front"), holder(ctx_, "inproc://back"),
      other(ctx_, "inproc://back");
  Ready(holder, 1);
  const JobId id = JobId::Random();
  Submit(producer, {id});
  ASSERT_TRUE(RecvKind(producer, wire::Body::Accepted));
  ASSERT_TRUE(RecvKind(holder, wire::Body::Dispatch));
  Ready(other, 0);
  ASSERT_TRUE(Eventually([&] {
    return nlohmann::json::parse(broker_->StatsJson())["workers"].size() == 2;
  }));
  const ProgressUpdate forged[] = {{id, 1, 0.9f, "forged"}};
  other.Send(w_.EncodeProgress(forged));
  auto refused = RecvKind(other, wire::Body::Error);
  ASSERT_TRUE(refused);
  EXPECT_EQ(Env(*refused)->body_as_Error()->code(), wire::ErrorCode::NotFound);
  const ProgressUpdate wrong_attempt[] = {{id, 2, 0.8f, "attempt 2"}};
  holder.Send(w_.EncodeProgress(wrong_attempt));
  ASSERT_TRUE(RecvKind(holder, wire::Body::Error));
  ASSERT_TRUE(
      Eventually([&] { return broker_->counters().progress_refused == 2u; }));
  const ProgressUpdate real[] = {{id, 1, 0.5f, "half way"}};
  holder.Send(w_.EncodeProgress(real));
  auto m = RecvKind(producer, wire::Body::Progress);
  ASSERT_TRUE(m);
  const auto* updates = Env(*m)->body_as_Progress()->updates();
  ASSERT_EQ(updates->size(), 1u);
  EXPECT_EQ(FromWire(updates->Get(0)->id()), id);
  EXPECT_FLOAT_EQ(updates->Get(0)->fraction(), 0.5f);
  EXPECT_EQ(AsString(updates->Get(0)->message()), "half way");
  EXPECT_TRUE(Eventually([&] { return broker_->counters().progress == 1u; }));
}

}  // namespace
}  // namespace yard
