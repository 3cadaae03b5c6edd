// Malformed and unexpected input on both broker sockets, sent from raw ZeroMQ
// DEALER sockets. The broker must answer every refused message with an Error
// naming the right code (frontend), or with an Error or a Disconnect
// (backend, where the sender is an unregistered peer), and keep serving: each
// test ends with a normal `yard push` that must fully succeed.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "schemas/codec.h"
#include "testing/hostile_messages.h"
#include "tests/cluster.h"

namespace yard {
namespace wire {
// gtest prints error codes by name.
void PrintTo(ErrorCode c, std::ostream* os) { *os << EnumNameErrorCode(c); }
void PrintTo(Body k, std::ostream* os) { *os << EnumNameBody(k); }
}  // namespace wire
namespace {

using std::chrono::steady_clock;

constexpr Millis kReplyTimeout{5000};

std::string Str(Bytes b) { return std::string(AsString(b)); }

const char* CodeName(wire::ErrorCode c) { return wire::EnumNameErrorCode(c); }
const char* KindName(wire::Body k) {
  const char* n = wire::EnumNameBody(k);
  return n && *n ? n : "(unknown kind)";
}

// One reply from the broker: the envelope bytes (kept in a vector, whose
// heap buffer is aligned and does not move) and what Decode made of them.
struct Reply {
  std::vector<uint8_t> bytes;
  wire::Body kind = wire::Body::NONE;
  const wire::Envelope* env = nullptr;

  wire::ErrorCode error_code() const {
    return kind == wire::Body::Error ? env->body_as_Error()->code()
                                     : wire::ErrorCode::None;
  }
  std::string error_message() const {
    return kind == wire::Body::Error
               ? std::string(AsString(env->body_as_Error()->message()))
               : std::string();
  }
  std::string Describe() const {
    std::string s = KindName(kind);
    if (kind == wire::Body::Error) {
      s += std::string("{") + CodeName(error_code()) + ", '" + error_message() +
           "'}";
    }
    return s;
  }
};

// A raw DEALER peer of the broker.
class RawPeer {
 public:
  RawPeer(zmq::context_t& ctx, const std::string& endpoint)
      : socket_(ctx, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndtimeo, 5000);
    socket_.connect(endpoint);
  }

  // Sends `frames` as one multipart message, exactly as given.
  bool SendFrames(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore
                                         : zmq::send_flags::none;
      if (!socket_.send(zmq::buffer(frames[i]), flags)) return false;
    }
    return true;
  }
  bool SendEnvelope(const std::string& env) { return SendFrames({"", env}); }

  // The next reply within `timeout`, skipping Heartbeats unless asked for
  // them. A reply that is not [""][valid envelope] is a test failure
  // (nullopt).
  std::optional<Reply> Next(Millis timeout, bool skip_heartbeats = true) {
    auto deadline = steady_clock::now() + timeout;
    for (int turns = 0; turns < 1000; ++turns) {
      auto left =
          std::chrono::duration_cast<Millis>(deadline - steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, left) == 0) return std::nullopt;
      std::vector<zmq::message_t> frames;
      for (int i = 0; i < 16; ++i) {
        zmq::message_t m;
        (void)socket_.recv(m, zmq::recv_flags::none);
        bool more = m.more();
        frames.push_back(std::move(m));
        if (!more) break;
      }
      if (frames.size() != 2 || frames[0].size() != 0) {
        ADD_FAILURE() << "broker reply is not [\"\"][envelope] ("
                      << frames.size() << " frames)";
        return std::nullopt;
      }
      Reply r;
      r.bytes.assign(frames[1].data<uint8_t>(),
                     frames[1].data<uint8_t>() + frames[1].size());
      Decoded d = Decode(Bytes(r.bytes.data(), r.bytes.size()), Limits{});
      if (!d.ok()) {
        ADD_FAILURE() << "broker reply does not decode: " << d.message;
        return std::nullopt;
      }
      r.env = d.envelope;
      r.kind = d.kind();
      if (skip_heartbeats && r.kind == wire::Body::Heartbeat) continue;
      return r;
    }
    return std::nullopt;
  }

 private:
  zmq::socket_t socket_;
};

// ---- message builders ----

std::string HeartbeatEnvelope() { return Str(Writer().EncodeHeartbeat()); }

std::string SubmitOf(const std::vector<JobSpec>& jobs) {
  Writer w;
  BlobBatch batch;
  for (const auto& j : jobs) batch.AddJob(w.EncodeJob(j));
  return Str(batch.FinishSubmit());
}

JobSpec EchoJob(std::string_view task = "echo") {
  JobSpec j;
  j.id = JobId::Random();
  j.task = task;
  j.payload = AsBytes("hello");
  return j;
}

std::string EnvelopeWithVersion(uint16_t version) {
  flatbuffers::FlatBufferBuilder fbb;
  auto hb = wire::CreateHeartbeat(fbb);
  fbb.Finish(
      wire::CreateEnvelope(fbb, version, wire::Body::Heartbeat, hb.Union()));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

std::string EnvelopeWithKind(uint8_t kind) {
  flatbuffers::FlatBufferBuilder fbb;
  auto hb = wire::CreateHeartbeat(fbb);
  fbb.Finish(wire::CreateEnvelope(fbb, kProtocolVersion,
                                  static_cast<wire::Body>(kind), hb.Union()));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

std::string EmptySubmit() {
  flatbuffers::FlatBufferBuilder fbb;
  auto jobs =
      fbb.CreateVector(std::vector<flatbuffers::Offset<wire::JobBlob>>{});
  auto submit = wire::CreateSubmit(fbb, jobs);
  fbb.Finish(wire::CreateEnvelope(fbb, kProtocolVersion, wire::Body::Submit,
                                  submit.Union()));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

std::string OversizedSubmit() {
  std::vector<JobSpec> jobs;
  for (size_t i = 0; i < Limits{}.max_batch + 1; ++i) jobs.push_back(EchoJob());
  return SubmitOf(jobs);
}

std::string DispatchOfOne() {
  Writer w;
  BlobBatch batch;
  batch.AddJob(w.EncodeJob(EchoJob()), 1);
  return Str(batch.FinishDispatch());
}

std::string ResultsOfOne() {
  Writer w;
  BlobBatch batch;
  batch.AddResult(w.EncodeResult(JobId::Random(), wire::ResultStatus::Ok,
                                 AsBytes("out"), "", 1, 10));
  return Str(batch.FinishResults());
}

std::string ReadyEnvelope() {
  ReadyInfo info;
  info.credit = 0;
  info.capacity = 1;
  info.name = "malformed-test";
  return Str(Writer().EncodeReady(info));
}

// What the broker must make of one message.
struct Case {
  std::string name;
  std::vector<std::string> frames;  // as the DEALER sends them
  wire::ErrorCode code;
};

// Messages every broker socket must refuse. For the ones that reach Decode
// the test first checks that Decode itself gives the expected code, so a
// wrong reply is the broker's doing, not a badly built test message.
std::vector<Case> RefusedEverywhere() {
  std::string hb = HeartbeatEnvelope();
  std::string submit = SubmitOf({EchoJob(), EchoJob()});
  std::vector<Case> cases = {
      {"garbage without delimiter",
       {"\x07garbage, not a message"},
       wire::ErrorCode::BadFrame},
      {"garbage after delimiter",
       {"", "this is not a flatbuffer envelope at all, just text"},
       wire::ErrorCode::BadFrame},
      {"lone empty frame", {""}, wire::ErrorCode::BadFrame},
      {"empty envelope frame", {"", ""}, wire::ErrorCode::BadFrame},
      {"valid envelope without delimiter", {hb}, wire::ErrorCode::BadFrame},
      {"too many frames", {"", hb, hb}, wire::ErrorCode::BadFrame},
      {"two delimiters", {"", "", hb}, wire::ErrorCode::BadFrame},
      {"truncated envelope",
       {"", submit.substr(0, submit.size() / 2)},
       wire::ErrorCode::BadFrame},
      {"frame over max_frame_bytes",
       {"", std::string(Limits{}.max_frame_bytes + 4096, 'x')},
       wire::ErrorCode::TooLarge},
      {"unknown protocol version 99",
       {"", EnvelopeWithVersion(99)},
       wire::ErrorCode::BadVersion},
      {"unknown body kind 200",
       {"", EnvelopeWithKind(200)},
       wire::ErrorCode::UnknownKind},
      {"empty submit batch", {"", EmptySubmit()}, wire::ErrorCode::BadBatch},
      {"submit batch over max_batch",
       {"", OversizedSubmit()},
       wire::ErrorCode::TooLarge},
  };
  return cases;
}

// Decode must give `c.code` for an [""][envelope] case (framing cases skip);
// for an Unexpected case the message must decode fine (the refusal is about
// direction, not form).
void CheckDecodeAgrees(const Case& c) {
  if (c.frames.size() != 2 || !c.frames[0].empty()) return;
  // Copy into a vector: aligned like a received frame.
  std::vector<uint8_t> buf(c.frames[1].begin(), c.frames[1].end());
  Decoded d = Decode(Bytes(buf.data(), buf.size()), Limits{});
  wire::ErrorCode want =
      c.code == wire::ErrorCode::Unexpected ? wire::ErrorCode::None : c.code;
  EXPECT_EQ(d.error, want) << c.name << ": the test message decodes as "
                           << CodeName(d.error) << " (" << d.message << ")";
}

// The broker still serves: Heartbeat on the frontend is answered, a normal
// push of 2,000 echo jobs fully succeeds, and broker and worker still run.
void ExpectStillServing(Cluster& c, const BrokerHandle& broker, Process* worker,
                        zmq::context_t& ctx) {
  RawPeer probe(ctx, broker.frontend);
  ASSERT_TRUE(probe.SendEnvelope(HeartbeatEnvelope()));
  auto reply = probe.Next(kReplyTimeout, /*skip_heartbeats=*/false);
  ASSERT_TRUE(reply) << "no answer to a Heartbeat on the frontend";
  EXPECT_EQ(reply->kind, wire::Body::Heartbeat) << reply->Describe();
  PushRun run =
      c.RunPush({"--connect", broker.frontend, "--task", "echo", "--count",
                 "2000", "--size", "64", "--timeout", "30"},
                Millis(45000));
  ExpectPushSucceeded(run, 2000);
  EXPECT_TRUE(broker.process->Running()) << "broker died";
  EXPECT_TRUE(worker->Running()) << "worker died";
}

class MalformedInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = cluster_.StartBroker(
        {"--heartbeat-ms", "200", "--unroutable-timeout-ms", "500"});
    ASSERT_TRUE(b);
    broker_ = *b;
    worker_ =
        cluster_.StartWorker(broker_.backend, 2, {"--heartbeat-ms", "200"});
    ASSERT_TRUE(worker_);
  }

  zmq::context_t ctx_;
  Cluster cluster_;
  BrokerHandle broker_;
  Process* worker_ = nullptr;
};

TEST_F(MalformedInputTest, FrontendAnswersEachWithTheRightError) {
  for (const Case& c : RefusedEverywhere()) {
    SCOPED_TRACE(c.name);
    CheckDecodeAgrees(c);
    RawPeer peer(ctx_, broker_.frontend);
    ASSERT_TRUE(peer.SendFrames(c.frames));
    auto reply = peer.Next(kReplyTimeout);
    ASSERT_TRUE(reply) << "no reply within " << kReplyTimeout.count() << " ms";
    ASSERT_EQ(reply->kind, wire::Body::Error) << reply->Describe();
    EXPECT_EQ(reply->error_code(), c.code)
        << "want " << CodeName(c.code) << ", got " << reply->Describe();
    EXPECT_FALSE(reply->error_message().empty());
    ASSERT_TRUE(broker_.process->Running()) << "broker died";
  }
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

TEST_F(MalformedInputTest, FrontendRefusesWorkerAndBrokerMessages) {
  const std::vector<Case> cases = {
      {"Dispatch to the frontend",
       {"", DispatchOfOne()},
       wire::ErrorCode::Unexpected},
      {"Ready to the frontend",
       {"", ReadyEnvelope()},
       wire::ErrorCode::Unexpected},
      {"Results to the frontend",
       {"", ResultsOfOne()},
       wire::ErrorCode::Unexpected},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CheckDecodeAgrees(c);
    EXPECT_EQ(Decode(AsBytes(c.frames[1]), Limits{}).error,
              wire::ErrorCode::None);
    RawPeer peer(ctx_, broker_.frontend);
    ASSERT_TRUE(peer.SendFrames(c.frames));
    auto reply = peer.Next(kReplyTimeout);
    ASSERT_TRUE(reply) << "no reply within " << kReplyTimeout.count() << " ms";
    ASSERT_EQ(reply->kind, wire::Body::Error) << reply->Describe();
    EXPECT_EQ(reply->error_code(), wire::ErrorCode::Unexpected)
        << reply->Describe();
  }
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

// A job for a task no worker runs is valid input: accepted, held while no
// worker runs its task, then answered with an UnknownTask result.
TEST_F(MalformedInputTest, UnknownTaskIsAcceptedAndAnsweredUnknownTask) {
  JobSpec job = EchoJob("no-such-task");
  RawPeer peer(ctx_, broker_.frontend);
  ASSERT_TRUE(peer.SendEnvelope(SubmitOf({job})));
  bool accepted = false;
  bool answered = false;
  auto deadline = steady_clock::now() + Millis(15000);
  for (int i = 0; i < 100 && !answered; ++i) {
    auto left =
        std::chrono::duration_cast<Millis>(deadline - steady_clock::now());
    ASSERT_GT(left.count(), 0)
        << "accepted=" << accepted << ", no result in time";
    auto reply = peer.Next(left);
    ASSERT_TRUE(reply) << "accepted=" << accepted << ", no result in time";
    if (reply->kind == wire::Body::Accepted) {
      for (const auto* id : *reply->env->body_as_Accepted()->ids()) {
        if (FromWire(*id) == job.id) accepted = true;
      }
      continue;
    }
    ASSERT_EQ(reply->kind, wire::Body::Results) << reply->Describe();
    for (const auto* blob : *reply->env->body_as_Results()->results()) {
      const wire::JobResult* r = blob->data_nested_root();
      ASSERT_EQ(FromWire(r->id()), job.id) << "a result for a job never sent";
      EXPECT_EQ(r->status(), wire::ResultStatus::UnknownTask)
          << wire::EnumNameResultStatus(r->status());
      EXPECT_EQ(r->error() ? r->error()->string_view() : "",
                "no worker runs task no-such-task");
      answered = true;
    }
  }
  EXPECT_TRUE(accepted) << "the result came without an Accepted first";
  EXPECT_TRUE(answered);
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

// On the backend the sender is an unregistered peer: the broker may answer
// Disconnect (register first) or the Error a registered worker would get; it
// must answer something, and it must keep serving.
TEST_F(MalformedInputTest, BackendAnswersErrorOrDisconnect) {
  std::vector<Case> cases = RefusedEverywhere();
  cases.push_back({"Submit to the backend",
                   {"", SubmitOf({EchoJob()})},
                   wire::ErrorCode::Unexpected});
  cases.push_back(
      {"Accepted to the backend",
       {"", Str(Writer().EncodeAccepted(std::vector<JobId>{JobId::Random()}))},
       wire::ErrorCode::Unexpected});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CheckDecodeAgrees(c);
    RawPeer peer(ctx_, broker_.backend);
    ASSERT_TRUE(peer.SendFrames(c.frames));
    auto reply = peer.Next(kReplyTimeout);
    ASSERT_TRUE(reply) << "no reply within " << kReplyTimeout.count() << " ms";
    // Which of the accepted answers the broker gave, for the log.
    std::cout << "[ backend  ] " << c.name << " -> " << reply->Describe()
              << "\n";
    if (reply->kind == wire::Body::Error) {
      EXPECT_EQ(reply->error_code(), c.code)
          << "want " << CodeName(c.code) << " (or Disconnect), got "
          << reply->Describe();
    } else {
      EXPECT_EQ(reply->kind, wire::Body::Disconnect) << reply->Describe();
    }
    ASSERT_TRUE(broker_.process->Running()) << "broker died";
  }
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

// A worker message from a peer the broker does not know (as after a broker
// restart) is answered with Disconnect, which tells a worker to send Ready.
TEST_F(MalformedInputTest, BackendTellsUnknownWorkerToRegister) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Credit from an unregistered peer", Str(Writer().EncodeCredit(5))},
      {"Heartbeat from an unregistered peer", HeartbeatEnvelope()},
  };
  for (const auto& [name, env] : cases) {
    SCOPED_TRACE(name);
    RawPeer peer(ctx_, broker_.backend);
    ASSERT_TRUE(peer.SendEnvelope(env));
    auto reply = peer.Next(kReplyTimeout, /*skip_heartbeats=*/false);
    ASSERT_TRUE(reply) << "no reply within " << kReplyTimeout.count() << " ms";
    EXPECT_EQ(reply->kind, wire::Body::Disconnect) << reply->Describe();
  }
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

// Legal messages built to be expensive (many offsets to one object): each is
// refused as too large before the broker walks or copies it, its memory does
// not grow, and the registered worker never misses its liveness window.
TEST_F(MalformedInputTest, ExpensiveLegalMessagesAreRefusedCheaply) {
  const std::string ready = testing::SharedNamesReady(1'000'000, 1 << 20);
  const std::string submit = testing::SharedBlobSubmit(
      testing::JobWithSharedTags(2'000'000), Limits().max_batch);
  ASSERT_TRUE(PollUntil(
      [&] { return BrokerStats(broker_.frontend)["workers"].size() == 1; },
      Millis(10000)));
  const int64_t before_kb = ResidentKb(broker_.process->pid());
  ASSERT_GT(before_kb, 0);
  for (int round = 0; round < 3; ++round) {
    RawPeer worker(ctx_, broker_.backend), producer(ctx_, broker_.frontend);
    ASSERT_TRUE(worker.SendEnvelope(ready));
    ASSERT_TRUE(producer.SendEnvelope(submit));
    for (RawPeer* peer : {&worker, &producer}) {
      auto reply = peer->Next(kReplyTimeout);
      ASSERT_TRUE(reply) << "no reply in round " << round;
      EXPECT_EQ(reply->error_code(), wire::ErrorCode::TooLarge)
          << reply->Describe();
    }
  }
  const int64_t after_kb = ResidentKb(broker_.process->pid());
  EXPECT_LT(after_kb - before_kb, 64 << 10)
      << "broker grew from " << before_kb << " kB to " << after_kb << " kB";
  nlohmann::json stats = BrokerStats(broker_.frontend);
  EXPECT_EQ(stats["counters"]["workers_expired"], 0) << stats.dump();
  EXPECT_EQ(stats["counters"]["bad_frames"], 6) << stats.dump();
  EXPECT_EQ(stats["workers"].size(), 1u) << stats.dump();
  ExpectStillServing(cluster_, broker_, worker_, ctx_);
}

}  // namespace
}  // namespace yard
