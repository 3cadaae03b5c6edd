// A broker's durable queue driven in-process, for the tests of what reads or
// changes a queue in Redis (admin/, dashboard/): jobs pushed as a producer's
// would be, the broker's loop turned by hand, jobs claimed on request.
//
//   auto b = StartTestBroker(server_->url(), "broker-a");
//   PushJobs(*b, {TestJob{}});           // waits until the queue accepted it
//   b->want = 1;                         // claim from now on
//   PumpQueue(*b, [&] { return b->claimed.size() == 1; });
//
// Leases and the registry record last ten minutes: longer than any test, so
// jobs stay in the state a test put them in.
//
// Thread-safety: one thread (the test's).
#ifndef YARD_TESTING_QUEUE_DRIVER_H_
#define YARD_TESTING_QUEUE_DRIVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/job_id.h"
#include "queue/queue_events.h"

namespace yard {

// A job as a producer sends it.
struct TestJob {
  JobId id = JobId::Random();
  int priority = 1;
  int max_attempts = 3;
  std::string task = "echo";
};

// One broker's durable queue, and the jobs it has handed out.
struct TestBroker {
  std::unique_ptr<DurableQueue> queue;
  size_t want = 0;  // jobs claimed ahead; 0: it claims nothing
  std::vector<JobId> claimed;
};

// The queue "default" at `redis_url` as broker `name` (consumer) sees it;
// `shards` as RedisQueueOptions. nullptr (and a test failure) when it cannot
// be set up.
std::unique_ptr<TestBroker> StartTestBroker(const std::string& redis_url,
                                            const std::string& name,
                                            int shards = 0);

// Turns the broker's loop until `until()` (true) or 10 s (false); each turn
// claims what it can (up to b.want jobs).
bool PumpQueue(TestBroker& b, const std::function<bool()>& until);

// Pushes `jobs` as one batch (one record per priority, route "producer-1")
// and waits until the queue accepted them; anything else fails the test.
void PushJobs(TestBroker& b, const std::vector<TestJob>& jobs);

}  // namespace yard

#endif  // YARD_TESTING_QUEUE_DRIVER_H_
