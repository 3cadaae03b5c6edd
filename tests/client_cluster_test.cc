// Output correctness through the client library (yard push reports counts,
// not outputs): a Producer submits sha256 and echo jobs to a real broker with
// real workers and checks every output: sha256 against known digests, and
// against a locally computed value for random payloads.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "client/producer.h"
#include "tests/cluster.h"

namespace yard {
namespace {

using std::chrono::steady_clock;

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(
      EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr), 1);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 0xf];
  }
  return hex;
}

// Random binary payloads, including the SHA-256 padding edges (55/56/64
// bytes) and the empty payload.
std::vector<std::string> MakePayloads(size_t n, uint32_t seed,
                                      size_t max_size) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> size_dist(0, max_size);
  std::uniform_int_distribution<int> byte_dist(0, 255);
  const size_t kEdges[] = {0, 1, 55, 56, 63, 64, 65, 119, 120, 1000};
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    size_t size = i < std::size(kEdges) ? kEdges[i] : size_dist(rng);
    std::string p(size, '\0');
    for (auto& ch : p) ch = static_cast<char>(byte_dist(rng));
    out.push_back(std::move(p));
  }
  return out;
}

struct Pending {
  std::string task;
  std::string payload;
  std::future<JobOutcome> outcome;
  std::string want;  // the output; empty: computed here
};

// FIPS 180-2's SHA-256 examples (and the empty message): the workers'
// sha256 must give these, whatever this test's own hashing says.
const std::pair<const char*, const char*> kSha256Vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
};

const char* KindName(JobOutcome::Kind k) {
  switch (k) {
    case JobOutcome::Kind::kCompleted:
      return "completed";
    case JobOutcome::Kind::kFailed:
      return "failed";
    case JobOutcome::Kind::kTimedOut:
      return "timed out";
    case JobOutcome::Kind::kRejected:
      return "rejected";
  }
  return "?";
}

TEST(ClientClusterTest, Sha256AndEchoOutputsAreCorrect) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 2));
  ASSERT_TRUE(c.StartWorker(broker->backend, 2));

  ProducerOptions opts;
  opts.brokers = {broker->frontend};
  auto created = Producer::Create(std::move(opts));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Producer> producer = std::move(created).value();

  constexpr int64_t kJobTimeoutMs = 30000;
  std::vector<Pending> jobs;
  for (const auto& [message, digest] : kSha256Vectors) {
    jobs.push_back({"sha256", message, {}, digest});
  }
  for (auto& p : MakePayloads(2000, 1, 4096)) {
    jobs.push_back({"sha256", std::move(p), {}, ""});
  }
  for (auto& p : MakePayloads(1000, 2, 8192)) {
    jobs.push_back({"echo", std::move(p), {}, ""});
  }
  for (auto& job : jobs) {
    JobSpec spec;
    spec.task = job.task;
    spec.payload = AsBytes(job.payload);
    job.outcome = producer->Submit(spec, kJobTimeoutMs);
  }

  auto deadline = steady_clock::now() + Millis(kJobTimeoutMs + 15000);
  size_t checked = 0, wrong = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto& job = jobs[i];
    ASSERT_EQ(job.outcome.wait_until(deadline), std::future_status::ready)
        << "no outcome for job " << i << " (" << job.task
        << ") by the deadline";
    JobOutcome out = job.outcome.get();
    ASSERT_EQ(out.kind, JobOutcome::Kind::kCompleted)
        << "job " << i << " (" << job.task << ", " << job.payload.size()
        << " bytes): " << KindName(out.kind) << ": " << out.error;
    EXPECT_FALSE(out.id.IsZero());
    std::string want = !job.want.empty()      ? job.want
                       : job.task == "sha256" ? Sha256Hex(job.payload)
                                              : job.payload;
    if (out.output != want) {
      // Report the first few mismatches in full, count the rest.
      if (++wrong <= 5) {
        ADD_FAILURE() << "job " << i << " (" << job.task << ", "
                      << job.payload.size() << " bytes): output of "
                      << out.output.size() << " bytes differs"
                      << (job.task == "sha256" ? ": got '" + out.output +
                                                     "', want '" + want + "'"
                                               : std::string());
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, jobs.size());
  EXPECT_EQ(wrong, 0u);

  // A future is ready just before the producer counts its outcome; Flush
  // waits until every outcome is delivered and counted.
  EXPECT_TRUE(producer->Flush(5000));
  ProducerCounters counters = producer->counters();
  EXPECT_EQ(counters.completed, jobs.size());
  EXPECT_EQ(counters.failed, 0u);
  EXPECT_EQ(counters.timed_out, 0u);
  EXPECT_EQ(counters.in_flight, 0u);
}

// The failure paths of a result: a handler that throws (fail) and a task no
// worker runs (UnknownTask, once the broker stops waiting for a worker that
// runs it), each delivered to the caller as kFailed.
TEST(ClientClusterTest, FailedAndUnknownTaskOutcomes) {
  Cluster c;
  auto broker = c.StartBroker({"--unroutable-timeout-ms", "500"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 2));

  ProducerOptions opts;
  opts.brokers = {broker->frontend};
  auto created = Producer::Create(std::move(opts));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Producer> producer = std::move(created).value();

  JobSpec fail;
  fail.task = "fail";
  fail.payload = AsBytes("x");
  JobSpec unknown;
  unknown.task = "no-such-task";
  unknown.payload = AsBytes("y");
  JobSpec echo;
  echo.task = "echo";
  echo.payload = AsBytes("still works");
  auto f1 = producer->Submit(fail, 20000);
  auto f2 = producer->Submit(unknown, 20000);
  auto f3 = producer->Submit(echo, 20000);

  auto deadline = steady_clock::now() + Millis(30000);
  ASSERT_EQ(f1.wait_until(deadline), std::future_status::ready);
  ASSERT_EQ(f2.wait_until(deadline), std::future_status::ready);
  ASSERT_EQ(f3.wait_until(deadline), std::future_status::ready);
  JobOutcome o1 = f1.get(), o2 = f2.get(), o3 = f3.get();
  EXPECT_EQ(o1.kind, JobOutcome::Kind::kFailed) << KindName(o1.kind);
  EXPECT_EQ(o1.status, wire::ResultStatus::Failed);
  EXPECT_FALSE(o1.error.empty());
  EXPECT_EQ(o2.kind, JobOutcome::Kind::kFailed) << KindName(o2.kind);
  EXPECT_EQ(o2.status, wire::ResultStatus::UnknownTask);
  EXPECT_EQ(o2.error, "no worker runs task no-such-task");
  EXPECT_EQ(o3.kind, JobOutcome::Kind::kCompleted) << KindName(o3.kind);
  EXPECT_EQ(o3.output, "still works");
}

}  // namespace
}  // namespace yard
