#include "testing/queue_driver.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "common/clock.h"
#include "schemas/codec.h"

namespace yard {
namespace {

constexpr int64_t kLongMs = 600'000;
constexpr int64_t kPumpMs = 10'000;

}  // namespace

std::unique_ptr<TestBroker> StartTestBroker(const std::string& redis_url,
                                            const std::string& name,
                                            int shards) {
  RedisQueueOptions o;
  o.url = redis_url;
  o.consumer = name;
  o.shards = shards;
  o.lease_ms = kLongMs;
  o.registry_ttl_ms = kLongMs;
  auto q = NewRedisQueue(o);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  if (!q.ok()) return nullptr;
  auto broker = std::make_unique<TestBroker>();
  broker->queue = std::move(q).value();
  return broker;
}

bool PumpQueue(TestBroker& b, const std::function<bool()>& until) {
  const int64_t deadline = MonoMillis() + kPumpMs;
  while (!until()) {
    if (MonoMillis() >= deadline) return false;
    std::vector<zmq_pollitem_t> items(64);
    const int n = b.queue->PollItems(items.data(), 64);
    zmq_poll(items.data(), n, 20);
    b.queue->OnPollEvents(items.data(), n);
    b.queue->Want(b.want);
    if (b.want > 0) {
      b.queue->Claim(b.want, [&](std::span<const ClaimedJob> jobs) {
        for (const ClaimedJob& j : jobs) b.claimed.push_back(j.id);
      });
    }
    b.queue->Tick(MonoMillis());
  }
  return true;
}

void PushJobs(TestBroker& b, const std::vector<TestJob>& jobs) {
  Writer writer;
  auto blobs = std::make_shared<std::vector<std::string>>();
  for (const TestJob& t : jobs) {
    JobSpec spec;
    spec.id = t.id;
    spec.task = t.task;
    spec.payload = AsBytes(std::string_view("12345"));
    spec.priority = static_cast<uint8_t>(t.priority);
    spec.max_attempts = static_cast<uint16_t>(t.max_attempts);
    blobs->emplace_back(AsString(writer.EncodeJob(spec)));
  }
  std::vector<NewJob> batch;
  for (size_t i = 0; i < jobs.size(); ++i) {
    NewJob j;
    j.id = jobs[i].id;
    j.blob.owner = blobs;
    j.blob.bytes = AsBytes((*blobs)[i]);
    j.priority = static_cast<uint8_t>(jobs[i].priority);
    j.route = "producer-1";
    batch.push_back(j);
  }
  bool done = false;
  b.queue->Push(batch, [&](Status s, std::span<const PushOutcome> out) {
    EXPECT_TRUE(s.ok()) << s.ToString();
    for (PushOutcome o : out) EXPECT_EQ(o, PushOutcome::kAccepted);
    done = true;
  });
  EXPECT_TRUE(PumpQueue(b, [&] { return done; })) << "the push was not done";
}

}  // namespace yard
