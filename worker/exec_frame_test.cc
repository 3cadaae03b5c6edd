#include "worker/exec_frame.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace yard::exec {
namespace {

TEST(ExecFrameTest, JobFrameMatchesTheDocumentedBytes) {
  std::string head;
  EncodeJobHead(JobId{0, 1}, 1, "echo", 2, &head);
  const std::string frame = head + "hi";
  const std::string want = std::string("\x1a\0\0\0", 4) +
                           std::string(15, '\0') + "\x01" +
                           std::string("\x01\0\x04\0", 4) + "echohi";
  EXPECT_EQ(frame, want);
  auto job = DecodeJob(std::string_view(frame).substr(kLengthBytes));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->id, (JobId{0, 1}));
  EXPECT_EQ(job->attempt, 1);
  EXPECT_EQ(job->task, "echo");
  EXPECT_EQ(job->payload, "hi");
}

TEST(ExecFrameTest, ResultRoundTripsThroughAReaderByteByByte) {
  const JobId id{0x0102030405060708ULL, 0x1112131415161718ULL};
  std::string a, b;
  EncodeResult(id, ResultCode::kOk, std::string("out\0put", 7), &a);
  EncodeResult(id, ResultCode::kError, "boom", &b);
  EXPECT_EQ(a.substr(4, 2), "\x01\x02");  // ids are big-endian
  FrameReader reader(1024);
  std::vector<std::string> bodies;
  for (char ch : a + b) {
    reader.Append(std::string_view(&ch, 1));
    std::string_view body;
    auto got = reader.Next(&body);
    ASSERT_TRUE(got.ok());
    if (*got) bodies.emplace_back(body);
  }
  ASSERT_EQ(bodies.size(), 2u);
  auto r1 = DecodeResult(bodies[0]);
  auto r2 = DecodeResult(bodies[1]);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->id, id);
  EXPECT_EQ(r1->code, ResultCode::kOk);
  EXPECT_EQ(r1->data, std::string("out\0put", 7));
  EXPECT_EQ(r2->code, ResultCode::kError);
  EXPECT_EQ(r2->data, "boom");
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(ExecFrameTest, RefusesMalformedAndOversizedFrames) {
  EXPECT_FALSE(DecodeJob(std::string(19, '\0')).ok());
  std::string bad_task(20, '\0');
  bad_task[18] = 5;  // a 5-byte task in a frame with no room for it
  EXPECT_FALSE(DecodeJob(bad_task).ok());
  EXPECT_FALSE(DecodeResult(std::string(16, '\0')).ok());
  std::string bad_status(17, '\0');
  bad_status[16] = 4;  // 0-2 end a job, 3 is progress
  EXPECT_FALSE(DecodeResult(bad_status).ok());

  FrameReader reader(8);
  reader.Append(std::string("\x09\0\0\0", 4));
  std::string_view body;
  EXPECT_FALSE(reader.Next(&body).ok());
}

TEST(ExecFrameTest, ReadsAFrameLargerThanOneChunkFromAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string frame;
  const std::string big(200000, 'z');
  EncodeResult(JobId{1, 2}, ResultCode::kOk, big, &frame);
  std::thread writer([&] {
    size_t off = 0;
    while (off < frame.size()) {
      ssize_t n = write(fds[1], frame.data() + off, frame.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fds[1]);
  });
  FrameReader reader(1 << 20);
  std::string_view body;
  bool got = false;
  for (int i = 0; i < 1000 && !got; ++i) {
    ASSERT_GT(reader.ReadFrom(fds[0]), 0);
    auto r = reader.Next(&body);
    ASSERT_TRUE(r.ok());
    got = *r;
  }
  writer.join();
  close(fds[0]);
  ASSERT_TRUE(got);
  auto r = DecodeResult(body);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, big);
}

TEST(ExecFrameTest, ProgressFramesRoundTripAndBadOnesAreRefused) {
  std::string frame;
  EncodeProgress(JobId{3, 4}, 0.25f, "a quarter", &frame);
  FrameReader reader(1 << 10);
  reader.Append(frame);
  std::string_view body;
  auto got = reader.Next(&body);
  ASSERT_TRUE(got.ok() && *got);
  auto r = DecodeResult(body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, (JobId{3, 4}));
  EXPECT_EQ(r->code, ResultCode::kProgress);
  auto p = DecodeProgress(r->data);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FLOAT_EQ(p->fraction, 0.25f);
  EXPECT_EQ(p->message, "a quarter");
  // What Python's struct.pack("<f", 0.5) writes: 00 00 00 3f.
  auto half = DecodeProgress(std::string("\x00\x00\x00\x3f", 4));
  ASSERT_TRUE(half.ok());
  EXPECT_FLOAT_EQ(half->fraction, 0.5f);
  EXPECT_TRUE(half->message.empty());
  EXPECT_FALSE(DecodeProgress("abc").ok());  // no room for the fraction
  // NaN (7f c0 00 00, little-endian) is refused.
  EXPECT_FALSE(DecodeProgress(std::string("\x00\x00\xc0\x7f", 4)).ok());
}

}  // namespace
}  // namespace yard::exec
