// Messages that are legal FlatBuffers (they verify) but built to be
// expensive: many offsets to one object, huge lists, misaligned nested
// blobs. Decode must refuse each before anything walks or copies it.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "schemas/codec.h"
#include "testing/hostile_messages.h"

namespace yard {
namespace {

using testing::JobWithSharedTags;
using testing::SharedBlobSubmit;
using testing::SharedNamesReady;
TEST(CodecLimitsTest, ReadyWithAMillionOffsetsToOneStringIsRefused) {
  const std::string frame = SharedNamesReady(1'000'000, 1 << 20);
  ASSERT_LT(frame.size(), Limits().max_frame_bytes);  // small on the wire
  Decoded d = Decode(AsBytes(frame), Limits());
  EXPECT_EQ(d.error, wire::ErrorCode::TooLarge);
  EXPECT_NE(d.message.find("tasks of 1000000 entries"), std::string::npos)
      << d.message;
}

TEST(CodecLimitsTest, NamesAreCountedOncePerReference) {
  // Within the entry limit, but 200 references to one 250-byte name are
  // 50,000 bytes, and 100 more in tags pass the 64 KiB total.
  Decoded d = Decode(AsBytes(SharedNamesReady(200, 250, 100)), Limits());
  EXPECT_EQ(d.error, wire::ErrorCode::TooLarge);
  EXPECT_NE(d.message.find("once per reference"), std::string::npos)
      << d.message;
  // 200 and 50 references fit (62,500 bytes).
  d = Decode(AsBytes(SharedNamesReady(200, 250, 50)), Limits());
  EXPECT_TRUE(d.ok()) << d.message;
}

TEST(CodecLimitsTest, OverlongWorkerTagIsRefused) {
  Decoded d = Decode(AsBytes(SharedNamesReady(1, kMaxKeyBytes + 1)), Limits());
  EXPECT_EQ(d.error, wire::ErrorCode::TooLarge);
  EXPECT_TRUE(
      Decode(AsBytes(SharedNamesReady(1, kMaxKeyBytes)), Limits()).ok());
}

TEST(CodecLimitsTest, SubmitOfOneSharedJobWithMillionsOfTagsIsRefused) {
  // 4,096 blobs that are one 8 MB job with two million tags: a 9 MB frame
  // that would take 8 billion tag checks to verify blob by blob.
  const std::string job = JobWithSharedTags(2'000'000);
  const std::string frame = SharedBlobSubmit(job, Limits().max_batch);
  ASSERT_LT(frame.size(), Limits().max_frame_bytes);
  auto start = std::chrono::steady_clock::now();
  Decoded d = Decode(AsBytes(frame), Limits());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(d.error, wire::ErrorCode::TooLarge);
  EXPECT_NE(d.message.find("once per reference"), std::string::npos)
      << d.message;
  // Refused by counting, not by walking: not a speed bound, a sanity one
  // (walking would take minutes).
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(CodecLimitsTest, JobWithTooManyTagsIsRefusedAlone) {
  // One blob, one reference: it decodes, and CheckJob refuses the job
  // (by id) for its tag count.
  const std::string job = JobWithSharedTags(Limits().max_list_entries + 1);
  std::string frame = SharedBlobSubmit(job, 1);
  Decoded d = Decode(AsBytes(frame), Limits());
  ASSERT_TRUE(d.ok()) << d.message;
  std::string why;
  const auto* parsed =
      d.envelope->body_as_Submit()->jobs()->Get(0)->data_nested_root();
  EXPECT_EQ(CheckJob(*parsed, Limits(), &why), wire::ErrorCode::TooLarge);
  EXPECT_NE(why.find("tags of 257 entries"), std::string::npos) << why;

  const std::string fine = JobWithSharedTags(Limits().max_list_entries);
  frame = SharedBlobSubmit(fine, 1);
  d = Decode(AsBytes(frame), Limits());
  ASSERT_TRUE(d.ok()) << d.message;
  parsed = d.envelope->body_as_Submit()->jobs()->Get(0)->data_nested_root();
  EXPECT_EQ(CheckJob(*parsed, Limits(), &why), wire::ErrorCode::None) << why;
}

TEST(CodecLimitsTest, AMillionOffsetsToOneJobBlobTableAreRefused) {
  Decoded d = Decode(AsBytes(testing::SharedTableSubmit(1'000'000)), Limits());
  EXPECT_FALSE(d.ok());
  // The same shape within the batch limit is a valid (if odd) message.
  EXPECT_TRUE(Decode(AsBytes(testing::SharedTableSubmit(16)), Limits()).ok());
}

TEST(CodecLimitsTest, NestedBlobAtFourModEightIsRefusedNotRead) {
  const std::string frame = testing::MisalignedBlobSubmit();
  const auto* env = flatbuffers::GetRoot<wire::Envelope>(frame.data());
  const uint8_t* at = env->body_as_Submit()->jobs()->Get(0)->data()->data();
  ASSERT_EQ(reinterpret_cast<uintptr_t>(at) % 8, 4u)
      << "the test did not build the shape it means to";
  Decoded d = Decode(AsBytes(frame), Limits());
  EXPECT_EQ(d.error, wire::ErrorCode::BadFrame);
  EXPECT_NE(d.message.find("not 8-aligned"), std::string::npos) << d.message;
}

TEST(CodecLimitsTest, IdVectorAtFourModEightIsRefusedNotRead) {
  const std::string frame = testing::MisalignedIdsCancel(3);
  const auto* env = flatbuffers::GetRoot<wire::Envelope>(frame.data());
  const auto* ids = env->body_as_Cancel()->ids();
  ASSERT_EQ(reinterpret_cast<uintptr_t>(ids->Data()) % 8, 4u)
      << "the test did not build the shape it means to";
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(frame.data()),
                                 frame.size());
  ASSERT_TRUE(verifier.VerifyBuffer<wire::Envelope>(nullptr))
      << "the Verifier alone accepts it: Decode must refuse it";
  Decoded d = Decode(AsBytes(frame), Limits());
  EXPECT_EQ(d.error, wire::ErrorCode::BadFrame);
  EXPECT_NE(d.message.find("not 8-aligned"), std::string::npos) << d.message;
}

TEST(CodecLimitsTest, EveryIdListIsBounded) {
  Limits limits;
  limits.max_batch = 8;
  std::vector<JobId> ids(9, JobId{1, 1});
  Writer w;
  EXPECT_EQ(Decode(w.EncodeCancel(ids), limits).error,
            wire::ErrorCode::TooLarge);
  EXPECT_EQ(Decode(w.EncodeAccepted(ids), limits).error,
            wire::ErrorCode::TooLarge);
  EXPECT_EQ(
      Decode(w.EncodeError(wire::ErrorCode::Busy, "x", ids), limits).error,
      wire::ErrorCode::TooLarge);
  ids.resize(8);
  EXPECT_TRUE(Decode(w.EncodeCancel(ids), limits).ok());
  EXPECT_TRUE(Decode(w.EncodeAccepted(ids), limits).ok());
}

TEST(CodecLimitsTest, TextIsBounded) {
  Limits limits;
  limits.max_text_bytes = 100;
  Writer w;
  EXPECT_EQ(Decode(w.EncodeDisconnect(std::string(101, 'r')), limits).error,
            wire::ErrorCode::TooLarge);
  EXPECT_EQ(Decode(w.EncodeError(wire::ErrorCode::Busy, std::string(101, 'm')),
                   limits)
                .error,
            wire::ErrorCode::TooLarge);
  EXPECT_TRUE(Decode(w.EncodeDisconnect(std::string(100, 'r')), limits).ok());
}

}  // namespace
}  // namespace yard
