#include "schemas/codec.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace yard {
namespace {

std::string CopyOf(Bytes b) { return std::string(AsString(b)); }

JobSpec EchoJob(JobId id, std::string_view payload) {
  JobSpec j;
  j.id = id;
  j.task = "echo";
  j.payload = AsBytes(payload);
  return j;
}

TEST(CodecTest, SubmitRoundTripsAllJobFields) {
  Writer w;
  JobSpec j = EchoJob(JobId{1, 2}, "hello");
  j.queue = "emails";
  j.priority = 2;
  j.max_attempts = 5;
  j.deadline_ms = 1234;
  j.not_before_ms = 99;
  j.idempotency_key = "k1";
  j.affinity_key = "user-7";
  j.tags = {"gpu"};
  j.tolerations = {"spot"};
  j.trace_id = JobId{3, 4};
  j.created_ms = 42;
  j.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string blob = CopyOf(w.EncodeJob(j));

  BlobBatch batch;
  batch.AddJob(AsBytes(blob));
  batch.AddJob(AsBytes(blob));
  std::string frame = CopyOf(batch.FinishSubmit());

  Decoded d = Decode(AsBytes(frame), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  ASSERT_EQ(d.kind(), wire::Body::Submit);
  const auto* jobs = d.envelope->body_as_Submit()->jobs();
  ASSERT_EQ(jobs->size(), 2u);
  const wire::Job* job = jobs->Get(1)->data_nested_root();
  EXPECT_EQ(FromWire(job->id()), (JobId{1, 2}));
  EXPECT_EQ(AsString(job->task()), "echo");
  EXPECT_EQ(AsString(job->queue()), "emails");
  EXPECT_EQ(AsString(job->payload()), "hello");
  EXPECT_EQ(job->priority(), 2);
  EXPECT_EQ(job->max_attempts(), 5);
  EXPECT_EQ(job->deadline_ms(), 1234);
  EXPECT_EQ(job->not_before_ms(), 99);
  EXPECT_EQ(AsString(job->idempotency_key()), "k1");
  EXPECT_EQ(AsString(job->affinity_key()), "user-7");
  EXPECT_EQ(job->tags()->Get(0)->str(), "gpu");
  EXPECT_EQ(job->tolerations()->Get(0)->str(), "spot");
  EXPECT_EQ(FromWire(job->trace_id()), (JobId{3, 4}));
  EXPECT_EQ(job->created_ms(), 42);
  EXPECT_EQ(AsString(job->traceparent()), j.traceparent);
  // The blob inside the message is the producer's bytes, unchanged.
  EXPECT_EQ(AsString(jobs->Get(0)->data()), blob);
}

// `sends` (the producer's count) and `attempt` (the broker's delivery
// count) are separate fields; a Submit mirrors sends into attempt for
// brokers that predate `sends`, and SendsOf reads either producer.
TEST(CodecTest, SendsAndAttemptAreSeparateCounters) {
  Writer w;
  JobSpec j;
  j.id = JobId{1, 2};
  j.task = "t";
  std::string blob = CopyOf(w.EncodeJob(j));

  BlobBatch submit;
  submit.AddSubmission(AsBytes(blob), 3);
  std::string frame = CopyOf(submit.FinishSubmit());
  Decoded d = Decode(AsBytes(frame), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  const wire::JobBlob* sent = d.envelope->body_as_Submit()->jobs()->Get(0);
  EXPECT_EQ(sent->sends(), 3);
  EXPECT_EQ(sent->attempt(), 3);  // what a version-1 broker reads
  EXPECT_EQ(SendsOf(*sent), 3);

  // A producer that predates `sends` set only `attempt`.
  BlobBatch old_producer;
  old_producer.AddJob(AsBytes(blob), 2);
  frame = CopyOf(old_producer.FinishSubmit());
  d = Decode(AsBytes(frame), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  sent = d.envelope->body_as_Submit()->jobs()->Get(0);
  EXPECT_EQ(sent->sends(), 0);
  EXPECT_EQ(SendsOf(*sent), 2);

  // Dispatch: the delivery attempt alone.
  BlobBatch dispatch;
  dispatch.AddJob(AsBytes(blob), 4);
  frame = CopyOf(dispatch.FinishDispatch());
  d = Decode(AsBytes(frame), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  const wire::JobBlob* out = d.envelope->body_as_Dispatch()->jobs()->Get(0);
  EXPECT_EQ(out->attempt(), 4);
  EXPECT_EQ(out->sends(), 0);
}

TEST(CodecTest, ResultsAndControlMessagesRoundTrip) {
  Writer w;
  std::string r = CopyOf(w.EncodeResult(JobId{5, 6}, wire::ResultStatus::Failed,
                                        AsBytes("out"), "boom", 2, 77));
  BlobBatch batch;
  batch.AddResult(AsBytes(r));
  std::string frame = CopyOf(batch.FinishResults());
  Decoded d = Decode(AsBytes(frame), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  const auto* res =
      d.envelope->body_as_Results()->results()->Get(0)->data_nested_root();
  EXPECT_EQ(FromWire(res->id()), (JobId{5, 6}));
  EXPECT_EQ(res->status(), wire::ResultStatus::Failed);
  EXPECT_EQ(AsString(res->error()), "boom");
  EXPECT_EQ(res->attempt(), 2);

  std::vector<JobId> ids = {{1, 1}, {2, 2}};
  // Accepted ids may ride in a Results message.
  BlobBatch both;
  both.AddResult(AsBytes(r));
  std::string merged = CopyOf(both.FinishResults(ids));
  d = Decode(AsBytes(merged), Limits{});
  ASSERT_TRUE(d.ok()) << d.message;
  ASSERT_EQ(d.envelope->body_as_Results()->accepted()->size(), 2u);
  EXPECT_EQ(FromWire(*d.envelope->body_as_Results()->accepted()->Get(1)),
            (JobId{2, 2}));
  Limits one;
  one.max_batch = 1;
  EXPECT_EQ(Decode(AsBytes(merged), one).error, wire::ErrorCode::TooLarge);

  std::string acc = CopyOf(w.EncodeAccepted(ids));
  d = Decode(AsBytes(acc), Limits{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.envelope->body_as_Accepted()->ids()->size(), 2u);

  std::string err =
      CopyOf(w.EncodeError(wire::ErrorCode::Busy, "full", ids, 50));
  d = Decode(AsBytes(err), Limits{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.envelope->body_as_Error()->code(), wire::ErrorCode::Busy);
  EXPECT_EQ(d.envelope->body_as_Error()->retry_after_ms(), 50u);

  ReadyInfo info;
  info.credit = 10;
  info.capacity = 4;
  info.tasks = {"echo"};
  info.name = "w1";
  std::string ready = CopyOf(w.EncodeReady(info));
  d = Decode(AsBytes(ready), Limits{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.envelope->body_as_Ready()->credit(), 10u);
  EXPECT_EQ(AsString(d.envelope->body_as_Ready()->name()), "w1");
}

TEST(CodecTest, VerifierRejectsEveryTruncation) {
  Writer w;
  std::string blob = CopyOf(w.EncodeJob(EchoJob(JobId{1, 1}, "payload")));
  BlobBatch batch;
  batch.AddJob(AsBytes(blob));
  std::string frame = CopyOf(batch.FinishSubmit());
  for (size_t n = 0; n < frame.size(); ++n) {
    Decoded d = Decode(AsBytes(std::string_view(frame).substr(0, n)), Limits{});
    EXPECT_FALSE(d.ok()) << "accepted a truncation to " << n << " bytes";
  }
}

TEST(CodecTest, VerifierSurvivesRandomCorruption) {
  Writer w;
  std::string blob = CopyOf(w.EncodeJob(EchoJob(JobId{1, 1}, "payload")));
  BlobBatch batch;
  for (int i = 0; i < 4; ++i) batch.AddJob(AsBytes(blob));
  std::string frame = CopyOf(batch.FinishSubmit());
  std::mt19937 gen(1);
  int refused = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bad = frame;
    for (int k = 0; k < 3; ++k) {
      bad[gen() % bad.size()] = static_cast<char>(gen());
    }
    Decoded d = Decode(AsBytes(bad), Limits{});
    if (!d.ok()) {
      ++refused;
      EXPECT_NE(d.error, wire::ErrorCode::None);
      continue;
    }
    // Whatever passes the Verifier must be safe to read in full.
    if (d.kind() == wire::Body::Submit) {
      for (const auto* b : *d.envelope->body_as_Submit()->jobs()) {
        const auto* job = b->data_nested_root();
        (void)AsString(job->task());
        (void)AsString(job->payload());
      }
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(CodecTest, RefusesGarbageVersionKindAndLimits) {
  Limits limits;
  Decoded d = Decode(AsBytes("definitely not a flatbuffer"), limits);
  EXPECT_EQ(d.error, wire::ErrorCode::BadFrame);

  // Wrong version.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(wire::CreateEnvelope(fbb, 99, wire::Body::Heartbeat,
                                  wire::CreateHeartbeat(fbb).Union()));
  d = Decode({fbb.GetBufferPointer(), fbb.GetSize()}, limits);
  EXPECT_EQ(d.error, wire::ErrorCode::BadVersion);

  // Unknown kind: a body type beyond the union.
  fbb.Clear();
  fbb.Finish(wire::CreateEnvelope(fbb, kProtocolVersion,
                                  static_cast<wire::Body>(200),
                                  wire::CreateHeartbeat(fbb).Union()));
  d = Decode({fbb.GetBufferPointer(), fbb.GetSize()}, limits);
  EXPECT_FALSE(d.ok());

  // Empty batch.
  fbb.Clear();
  std::vector<flatbuffers::Offset<wire::JobBlob>> none;
  auto sub = wire::CreateSubmit(fbb, fbb.CreateVector(none));
  fbb.Finish(wire::CreateEnvelope(fbb, kProtocolVersion, wire::Body::Submit,
                                  sub.Union()));
  d = Decode({fbb.GetBufferPointer(), fbb.GetSize()}, limits);
  EXPECT_EQ(d.error, wire::ErrorCode::BadBatch);

  // Batch and payload over the limits.
  Writer w;
  std::string big(1000, 'x');
  std::string blob = CopyOf(w.EncodeJob(EchoJob(JobId{1, 1}, big)));
  BlobBatch batch;
  for (int i = 0; i < 5; ++i) batch.AddJob(AsBytes(blob));
  std::string frame = CopyOf(batch.FinishSubmit());
  limits.max_batch = 4;
  EXPECT_EQ(Decode(AsBytes(frame), limits).error, wire::ErrorCode::TooLarge);
  limits.max_batch = 10;
  Decoded d2 = Decode(AsBytes(frame), limits);
  ASSERT_TRUE(d2.ok());
  const wire::Job& job =
      *d2.envelope->body_as_Submit()->jobs()->Get(0)->data_nested_root();
  std::string why;
  limits.max_payload_bytes = 999;
  EXPECT_EQ(CheckJob(job, limits, &why), wire::ErrorCode::TooLarge);
  EXPECT_NE(why.find("payload of 1000 bytes"), std::string::npos);
  limits.max_payload_bytes = 1000;
  EXPECT_EQ(CheckJob(job, limits, &why), wire::ErrorCode::None);
  limits.max_frame_bytes = frame.size() - 1;
  EXPECT_EQ(Decode(AsBytes(frame), limits).error, wire::ErrorCode::TooLarge);
}

// A job's traceparent: a valid one passes CheckJob and comes back in the
// result; a malformed one is refused (BadBatch) and an oversized one is
// TooLarge, each with a reason the sender sees.
TEST(CodecTest, TraceParentIsCheckedAndCarriedByResults) {
  constexpr char kValid[] =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const std::string oversized =
      std::string(kValid) + "-" + std::string(kMaxTraceParentBytes, 'a');
  const struct {
    std::string traceparent;
    wire::ErrorCode code;
  } cases[] = {
      {"", wire::ErrorCode::None},
      {kValid, wire::ErrorCode::None},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
       wire::ErrorCode::BadBatch},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
       wire::ErrorCode::BadBatch},
      {std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0",
                   55),
       wire::ErrorCode::BadBatch},
      {oversized, wire::ErrorCode::TooLarge},
  };
  for (const auto& c : cases) {
    Writer w;
    JobSpec j = EchoJob(JobId{1, 2}, "p");
    j.traceparent = c.traceparent;
    std::string blob = CopyOf(w.EncodeJob(j));
    const wire::Job* job = VerifiedRoot<wire::Job>(blob);
    ASSERT_NE(job, nullptr);
    std::string why;
    EXPECT_EQ(CheckJob(*job, Limits{}, &why), c.code) << c.traceparent;
    if (c.code == wire::ErrorCode::None) continue;
    EXPECT_NE(why.find("traceparent"), std::string::npos) << why;
  }

  Writer w;
  std::string r =
      CopyOf(w.EncodeResult(JobId{5, 6}, wire::ResultStatus::Ok, AsBytes("out"),
                            "", 1, 7, JobId{}, kValid));
  const wire::JobResult* result = VerifiedRoot<wire::JobResult>(r);
  ASSERT_NE(result, nullptr);
  EXPECT_EQ(AsString(result->traceparent()), kValid);
  r = CopyOf(w.EncodeResult(JobId{5, 6}, wire::ResultStatus::Ok, {}, "", 1, 7));
  EXPECT_EQ(VerifiedRoot<wire::JobResult>(r)->traceparent(), nullptr);
}

}  // namespace
}  // namespace yard
