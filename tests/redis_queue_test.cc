// The durable DurableQueue (queue/redis_queue.cc) against a real redis-server:
// every operation and Functions step, through the DurableQueue interface the
// broker uses, with two queue instances standing for two brokers.
#include <gtest/gtest.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "registry/registry.h"
#include "testing/log_capture.h"
#include "testing/process.h"
#include "testing/redis_fixture.h"
#include "testing/redis_server.h"

namespace yard {
namespace {

using std::chrono::milliseconds;

// Longer than any test runs: a child "broker" serves until it is killed.
constexpr int64_t kForeverMs = 600000;

const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// What one queue instance (one "broker") has seen.
struct Seen {
  std::vector<ClaimedJob> claimed;  // views copied into `blobs`
  std::vector<std::string> blobs;
  std::vector<std::pair<std::string, std::string>> results;  // route, blob
};

class RedisQueueTest : public RedisFixture {
 protected:
  RedisQueueOptions Options(const std::string& name) {
    RedisQueueOptions o;
    o.url = server_->url();
    o.consumer = name;
    o.lease_ms = 600;
    return o;
  }

  DurableQueue* Make(const std::string& name) { return Make(Options(name)); }
  DurableQueue* Make(const RedisQueueOptions& o) {
    auto q = NewRedisQueue(o);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    if (!q.ok()) return nullptr;
    DurableQueue* raw = q->get();
    want_[raw] = 64;
    Seen* seen = &seen_[raw];
    raw->SetResultSink([seen](std::string_view route, Bytes result) {
      seen->results.emplace_back(
          std::string(route),
          std::string(reinterpret_cast<const char*>(result.data()),
                      result.size()));
    });
    queues_.push_back(std::move(q).value());
    return raw;
  }

  // Turns every queue's loop until `until()` or the timeout; each turn
  // claims up to want_[queue] jobs from each queue and records them.
  bool Pump(const std::function<bool()>& until, int64_t timeout_ms = 10000) {
    const int64_t deadline = MonoMillis() + timeout_ms;
    while (!until()) {
      if (MonoMillis() >= deadline) return false;
      std::vector<zmq_pollitem_t> items(8 * queues_.size());
      std::vector<int> counts;
      int total = 0;
      for (auto& q : queues_) {
        int n = q->PollItems(items.data() + total, 8);
        counts.push_back(n);
        total += n;
      }
      zmq_poll(items.data(), total, 20);
      int at = 0;
      for (size_t i = 0; i < queues_.size(); ++i) {
        DurableQueue* q = queues_[i].get();
        q->OnPollEvents(items.data() + at, counts[i]);
        at += counts[i];
        const size_t want = want_[q];
        q->Want(want);
        if (want && claim_) {
          Seen& s = seen_[q];
          q->Claim(want, [&](std::span<const ClaimedJob> jobs) {
            for (const ClaimedJob& j : jobs) {
              s.blobs.emplace_back(reinterpret_cast<const char*>(j.blob.data()),
                                   j.blob.size());
              s.claimed.push_back(j);
              s.claimed.back().route = {};
            }
          });
        }
        q->Tick(MonoMillis());
      }
    }
    return true;
  }

  // A Job blob as a producer makes it.
  std::string JobBlob(const JobId& id, JobSpec spec = {}) {
    spec.id = id;
    if (spec.task.empty()) spec.task = "echo";
    Bytes b = writer_.EncodeJob(spec);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }

  std::string ResultBlob(const JobId& id, wire::ResultStatus status,
                         std::string_view output, std::string_view error) {
    Bytes b = writer_.EncodeResult(
        id, status,
        {reinterpret_cast<const uint8_t*>(output.data()), output.size()}, error,
        1, 10);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }

  // Pushes jobs (blobs kept alive by `keep`) and waits for the outcomes.
  std::vector<PushOutcome> Push(DurableQueue* q, std::vector<std::string> blobs,
                                const std::string& route = "producer-1",
                                Status* status = nullptr, bool resend = false,
                                const std::string& owner = "") {
    auto keep = std::make_shared<std::vector<std::string>>(std::move(blobs));
    std::vector<NewJob> jobs;
    for (const std::string& b : *keep) {
      const auto* job = flatbuffers::GetRoot<wire::Job>(b.data());
      NewJob j;
      j.id = FromWire(job->id());
      j.blob.owner = keep;
      j.blob.bytes = {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
      j.priority = job->priority();
      j.not_before_ms = job->not_before_ms();
      j.route = route;
      j.owner = owner;
      j.resend = resend;
      jobs.push_back(j);
    }
    std::vector<PushOutcome> out;
    bool done = false;
    q->Push(jobs, [&](Status s, std::span<const PushOutcome> o) {
      if (status) *status = s;
      out.assign(o.begin(), o.end());
      done = true;
    });
    EXPECT_TRUE(Pump([&] { return done; }));
    return out;
  }

  int64_t Integer(std::vector<std::string> args) {
    auto r = RedisCall(*admin_, std::move(args));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->integer : -1;
  }

  // q's counter `name` (DescribeStats: durable.counters); -1 if missing.
  static int64_t Counter(const DurableQueue* q, const char* name) {
    nlohmann::json j;
    q->DescribeStats(&j);
    return j["durable"]["counters"].value(name, int64_t{-1});
  }

  static bool Leads(const DurableQueue* q) {
    nlohmann::json j;
    q->DescribeStats(&j);
    return j["durable"]["leader"].get<bool>();
  }

  // Another broker, in a child process: queue `o` pushes `blobs` (one
  // record), claims them, says so, and then keeps its leases and its
  // registry record fresh until the test SIGKILLs it (Kill()): a real
  // kill -9, after which nothing of it runs (no destructor, no resign, no
  // registry clean-up). Null (and a test failure) if it did not get there.
  std::unique_ptr<Process> BrokerInAChild(const RedisQueueOptions& o,
                                          std::vector<std::string> blobs) {
    auto child = Process::Fork(o.consumer, [this, o, blobs]() -> int {
      // Its stdout says how far it got: its logs go to stderr.
      spdlog::set_default_logger(spdlog::stderr_logger_st("child"));
      // The parent's queues and their connections are not the child's:
      // leave them alone (no destructor may run them here).
      for (auto& q : queues_) (void)q.release();
      queues_.clear();
      seen_.clear();
      want_.clear();
      DurableQueue* q = Make(o);
      if (q == nullptr || Push(q, blobs).size() != blobs.size()) return 1;
      Seen& seen = seen_[q];
      if (!Pump([&] { return seen.claimed.size() == blobs.size(); })) return 1;
      std::printf("claimed\n");
      std::fflush(stdout);
      Pump([] { return false; }, kForeverMs);
      return 0;
    });
    EXPECT_TRUE(child.ok()) << child.status().ToString();
    if (!child.ok()) return nullptr;
    auto line = (*child)->ReadLine(milliseconds(20000));
    EXPECT_EQ(line.value_or("(none)"), "claimed");
    if (line != "claimed") return nullptr;
    return std::move(child).value();
  }

  // The consumer of each entry in `stream`'s pending list (the leases).
  std::vector<std::string> PendingOwners(const std::string& stream) {
    std::vector<std::string> owners;
    auto r =
        RedisCall(*admin_, {"XPENDING", stream, kRedisGroup, "-", "+", "100"});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return owners;
    for (const RedisReply& e : r->elements) {
      if (e.elements.size() >= 2) owners.push_back(e.elements[1].str);
    }
    return owners;
  }

  // Ready + running jobs in the three streams.
  int64_t InStreams(const QueueKeys& k) {
    int64_t n = 0;
    for (const auto& s : k.stream) n += Integer({"XLEN", s});
    return n;
  }

  LogCapture log_;  // what the queues log
  std::vector<std::unique_ptr<DurableQueue>> queues_;
  std::map<DurableQueue*, Seen> seen_;
  std::map<DurableQueue*, size_t> want_;
  bool claim_ = true;
  Writer writer_;
  const QueueKeys keys_{"default"};
};

TEST_F(RedisQueueTest, PushClaimCompleteStoresTheResult) {
  DurableQueue* q = Make("b1");
  JobId a = JobId::Random(), b = JobId::Random();
  auto out = Push(q, {JobBlob(a), JobBlob(b)});
  ASSERT_EQ(out, (std::vector<PushOutcome>{PushOutcome::kAccepted,
                                           PushOutcome::kAccepted}));
  EXPECT_EQ(InStreams(keys_), 1);  // one record holds the batch
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  EXPECT_EQ(s.claimed[0].id, a);
  EXPECT_EQ(s.claimed[0].attempt, 1);
  EXPECT_TRUE(s.claimed[0].local);
  EXPECT_EQ(q->Stats().leased, 2u);
  std::string ra = ResultBlob(a, wire::ResultStatus::Ok, "out-a", "");
  q->Complete(a, {reinterpret_cast<const uint8_t*>(ra.data()), ra.size()});
  q->Complete(b, {});
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0 && q->Drained(); }));
  EXPECT_FALSE(FindResult(*admin_, keys_, b).ok());  // no result given
  auto stored = FindResult(*admin_, keys_, a);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, ra);
  auto buckets =
      RedisCall(*admin_, {"ZRANGE", keys_.result_buckets, "0", "-1"});
  ASSERT_TRUE(buckets.ok());
  ASSERT_EQ(buckets->elements.size(), 1u);
  EXPECT_GT(Integer({"TTL",
                     keys_.ResultKey(std::stoll(buckets->elements[0].str), a)}),
            0);  // expires
  auto pending = RedisCall(*admin_, {"XPENDING", keys_.stream[1], kRedisGroup});
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->elements.at(0).integer, 0);
}

TEST_F(RedisQueueTest, HigherPriorityIsClaimedFirst) {
  DurableQueue* q = Make("b1");
  std::vector<std::string> blobs;
  std::vector<JobId> ids;
  for (uint8_t p : {0, 1, 2, 0, 2}) {
    JobSpec spec;
    spec.priority = p;
    ids.push_back(JobId::Random());
    blobs.push_back(JobBlob(ids.back(), spec));
  }
  // Buffer all five (claimed from Redis), then dispatch in one go.
  claim_ = false;
  Push(q, blobs);
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return q->Stats().ready == 5; }));
  q->Claim(5, [&](std::span<const ClaimedJob> jobs) {
    for (const ClaimedJob& j : jobs) s.claimed.push_back(j);
  });
  ASSERT_EQ(s.claimed.size(), 5u);
  EXPECT_EQ(s.claimed[0].id, ids[2]);
  EXPECT_EQ(s.claimed[1].id, ids[4]);
  EXPECT_EQ(s.claimed[2].id, ids[1]);
  EXPECT_EQ(s.claimed[3].id, ids[0]);
  EXPECT_EQ(s.claimed[4].id, ids[3]);
}

// Draining gives back only records none of whose jobs started here: a
// half-finished batch stays, so its finished half does not run again.
TEST_F(RedisQueueTest, DrainKeepsAHalfFinishedRecord) {
  DurableQueue* q = Make("b1");
  claim_ = false;
  JobId a = JobId::Random(), b = JobId::Random();
  Push(q, {JobBlob(a), JobBlob(b)});  // one record of two jobs
  ASSERT_TRUE(Pump([&] { return q->Stats().ready == 2; }));
  std::vector<JobId> got;
  auto take = [&](std::span<const ClaimedJob> jobs) {
    for (const ClaimedJob& j : jobs) got.push_back(j.id);
  };
  q->Claim(1, take);
  ASSERT_EQ(got.size(), 1u);
  q->Complete(got[0], {});
  q->BeginDrain();
  EXPECT_EQ(q->Stats().ready, 1u);  // the other half is still here
  q->Claim(1, take);
  ASSERT_EQ(got.size(), 2u);
  q->Complete(got[1], {});
  ASSERT_TRUE(Pump([&] { return q->Drained(); }));
  EXPECT_EQ(InStreams(keys_), 0);  // acked, not given back
}

TEST_F(RedisQueueTest, FailRetriesWithBackoffThenDeadLetters) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  spec.max_attempts = 2;
  JobId id = JobId::Random();
  Push(q, {JobBlob(id, spec)});
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  std::string r1 = ResultBlob(id, wire::ResultStatus::Failed, "", "boom 1");
  q->Fail(id, UnixMillis() + 300,
          {reinterpret_cast<const uint8_t*>(r1.data()), r1.size()});
  ASSERT_TRUE(Pump([&] { return Integer({"ZCARD", keys_.delayed}) == 1; }));
  // The leader promotes it when due; it comes back as attempt 2.
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  EXPECT_EQ(s.claimed[1].id, id);
  EXPECT_EQ(s.claimed[1].attempt, 2);
  std::string r2 = ResultBlob(id, wire::ResultStatus::Failed, "", "boom 2");
  q->Fail(id, 0, {reinterpret_cast<const uint8_t*>(r2.data()), r2.size()});
  ASSERT_TRUE(Pump([&] { return Integer({"XLEN", keys_.dead}) == 1; }));
  auto dead = RedisCall(*admin_, {"XRANGE", keys_.dead, "-", "+"});
  ASSERT_TRUE(dead.ok());
  const RedisReply& fields = dead->elements[0].elements[1];
  std::map<std::string, std::string> f;
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    f[fields.elements[i].str] = fields.elements[i + 1].str;
  }
  EXPECT_EQ(f["j"], id.ToString());
  EXPECT_EQ(f["why"], "failed");
  EXPECT_EQ(f["err"], "boom 2");
  EXPECT_EQ(f["a"], "2");
  // The final failure's result is kept too.
  EXPECT_TRUE(FindResult(*admin_, keys_, id).ok());
  // Requeue from the dead letters: it runs again with fresh attempts.
  auto args = keys_.Fcall("yard_requeue_dead");
  args.push_back("100");
  EXPECT_EQ(Integer(args), 1);
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 3; }));
  EXPECT_EQ(s.claimed[2].attempt, 1);
}

TEST_F(RedisQueueTest, DelayedJobWaitsForItsTime) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  const int64_t due = UnixMillis() + 700;
  spec.not_before_ms = due;
  JobId id = JobId::Random();
  Push(q, {JobBlob(id, spec)});
  EXPECT_EQ(Integer({"ZCARD", keys_.delayed}), 1);
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  EXPECT_GE(UnixMillis(), due);
}

TEST_F(RedisQueueTest, IdempotencyKeyReturnsTheFirstJobsResult) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  spec.idempotency_key = "order-42";
  JobId first = JobId::Random(), second = JobId::Random();
  EXPECT_EQ(Push(q, {JobBlob(first, spec)}),
            std::vector<PushOutcome>{PushOutcome::kAccepted});
  EXPECT_EQ(Push(q, {JobBlob(second, spec)}, "producer-2"),
            std::vector<PushOutcome>{PushOutcome::kDuplicate});
  EXPECT_EQ(InStreams(keys_), 1);  // queued once
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  std::string r = ResultBlob(first, wire::ResultStatus::Ok, "charged", "");
  q->Complete(first, {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
  ASSERT_TRUE(Pump([&] { return s.results.size() == 1; }));
  EXPECT_EQ(s.results[0].first, "producer-2");
  const auto* res =
      flatbuffers::GetRoot<wire::JobResult>(s.results[0].second.data());
  EXPECT_EQ(FromWire(res->id()), second);
  ASSERT_NE(res->duplicate_of(), nullptr);
  EXPECT_EQ(FromWire(res->duplicate_of()), first);
  EXPECT_EQ(std::string(res->output()->begin(), res->output()->end()),
            "charged");
}

// Issue 5: a producer resends a job whose ack it did not get to another
// broker, with the same id. With --dedupe-ids the resend is not queued
// again; it is answered with the first copy's result.
TEST_F(RedisQueueTest, ResendOfAQueuedIdIsNotQueuedAgain) {
  RedisQueueOptions o = Options("a");
  o.dedupe_ids_ttl_s = 60;
  DurableQueue* a = Make(o);
  o.consumer = "b";
  DurableQueue* b = Make(o);
  want_[b] = 0;  // only a runs jobs
  JobId id = JobId::Random();
  EXPECT_EQ(Push(a, {JobBlob(id)}),
            std::vector<PushOutcome>{PushOutcome::kAccepted});
  EXPECT_EQ(Push(b, {JobBlob(id)}, "producer-1@b", nullptr, /*resend=*/true),
            std::vector<PushOutcome>{PushOutcome::kDuplicate});
  EXPECT_EQ(InStreams(keys_), 1);  // queued once
  // A resend of an id nobody queued (the first copy never arrived) is.
  JobId other = JobId::Random();
  EXPECT_EQ(Push(b, {JobBlob(other)}, "producer-1@b", nullptr, true),
            std::vector<PushOutcome>{PushOutcome::kAccepted});
  EXPECT_EQ(InStreams(keys_), 2);
  Seen& s = seen_[a];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  std::string r = ResultBlob(id, wire::ResultStatus::Ok, "done-once", "");
  a->Complete(id, {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
  // The resend's producer, at b, gets the first copy's result.
  Seen& sb = seen_[b];
  ASSERT_TRUE(Pump([&] { return sb.results.size() == 1; }));
  EXPECT_EQ(sb.results[0].first, "producer-1@b");
  const auto* res =
      flatbuffers::GetRoot<wire::JobResult>(sb.results[0].second.data());
  EXPECT_EQ(FromWire(res->id()), id);
  EXPECT_EQ(std::string(res->output()->begin(), res->output()->end()),
            "done-once");
  // Without the option a resend is queued again (at-least-once).
  RedisQueueOptions plain = Options("c");
  DurableQueue* c = Make(plain);
  want_[c] = 0;
  JobId twice = JobId::Random();
  Push(c, {JobBlob(twice)});
  EXPECT_EQ(Push(c, {JobBlob(twice)}, "producer-1", nullptr, true),
            std::vector<PushOutcome>{PushOutcome::kAccepted});
}

// Cancels recorded in Redis (yard_cancel) by a broker that does not hold
// the jobs: the record's owner key (o) decides. A delayed job of another
// key is refused at once; the owner's goes to its ready stream, and the
// broker that claims it finishes it Cancelled (result stored). A waiting job
// cancelled by another key is refused where it is claimed, and runs; a
// retry keeps its owner key.
TEST_F(RedisQueueTest, RecordedCancelsFinishOnlyTheOwnersJobs) {
  DurableQueue* holder = Make("b1");
  DurableQueue* other = Make("b2");
  want_[holder] = 0;
  want_[other] = 0;
  JobSpec later;
  later.max_attempts = 3;
  later.not_before_ms = UnixMillis() + 600000;
  JobSpec now;
  now.max_attempts = 3;
  const JobId delayed = JobId::Random(), waiting = JobId::Random();
  Push(holder, {JobBlob(delayed, later)}, "p", nullptr, false, "key-one");
  Push(holder, {JobBlob(waiting, now)}, "p", nullptr, false, "key-one");
  auto ask = [&](const JobId& id, const std::string& key) {
    std::optional<QueueEvents::CancelAnswer> got;
    QueueEvents::Canceller who;
    who.key = key;
    who.route = "canceller";
    other->RequestCancel({&id, 1}, who,
                         [&](std::span<const QueueEvents::CancelAnswer> a) {
                           if (a.size() == 1) got = a[0];
                         });
    EXPECT_TRUE(Pump([&] { return got.has_value(); }));
    return got.value_or(QueueEvents::CancelAnswer::kUnavailable);
  };
  EXPECT_EQ(ask(delayed, "key-two"), QueueEvents::CancelAnswer::kForbidden);
  EXPECT_EQ(Integer({"ZCARD", keys_.delayed}), 1);
  EXPECT_EQ(ask(waiting, "key-two"), QueueEvents::CancelAnswer::kRequested);
  EXPECT_EQ(ask(delayed, "key-one"), QueueEvents::CancelAnswer::kRequested);
  EXPECT_EQ(Integer({"ZCARD", keys_.delayed}), 0);  // moved to be claimed
  EXPECT_EQ(Integer({"HLEN", keys_.prefix + "cx"}), 2);
  // The broker's part: a claimed job is dispatched at once, so a hit finds
  // it dispatched; the broker recalls it and completes it Cancelled.
  std::vector<JobId> recalled;
  holder->SetCancelSink([&](const JobId& id) {
    recalled.push_back(id);
    std::string r = ResultBlob(id, wire::ResultStatus::Cancelled, "", "");
    holder->Complete(id,
                     {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
    return true;
  });
  want_[holder] = 64;
  Seen& s = seen_[holder];
  ASSERT_TRUE(Pump([&] {
    return Counter(holder, "recorded_cancels_done") == 1 &&
           Counter(holder, "recorded_cancels_refused") == 1 &&
           Integer({"HLEN", keys_.prefix + "cx"}) == 0;
  }));
  // The owner's cancel: stored as its result.
  EXPECT_EQ(recalled, std::vector<JobId>{delayed});
  auto stored = FindResult(*admin_, keys_, delayed, 2000);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  const auto* r = VerifiedRoot<wire::JobResult>(*stored);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->status(), wire::ResultStatus::Cancelled);
  // The other key's cancel changed nothing: the job runs; its retry keeps
  // its owner.
  ASSERT_EQ(s.claimed.size(), 2u);
  std::string failed = ResultBlob(waiting, wire::ResultStatus::Failed, "", "x");
  holder->Fail(
      waiting, UnixMillis() + 600000,
      {reinterpret_cast<const uint8_t*>(failed.data()), failed.size()});
  ASSERT_TRUE(Pump([&] { return Integer({"ZCARD", keys_.delayed}) == 1; }));
  auto packed =
      RedisCall(*admin_, {"HGET", keys_.delayed_jobs, waiting.ToString()});
  ASSERT_TRUE(packed.ok());
  EXPECT_NE(packed->str.find("key-one"), std::string::npos);
}

// A cancel recorded for a job that then finishes leaves no record behind
// (else every claim and lease renewal would read P cx until it expires); a
// job that goes back to wait for a retry keeps its record, so that the
// claim of its next attempt finds it.
TEST_F(RedisQueueTest, AFinishedJobTakesItsCancelRecordWithIt) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  spec.max_attempts = 3;
  const JobId done = JobId::Random(), retried = JobId::Random();
  Push(q, {JobBlob(done, spec)});
  Push(q, {JobBlob(retried, spec)});
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  QueueEvents::Canceller admin;
  admin.admin = true;
  std::vector<QueueEvents::CancelAnswer> answers;
  q->RequestCancel(std::vector<JobId>{done, retried}, admin,
                   [&](std::span<const QueueEvents::CancelAnswer> a) {
                     answers.assign(a.begin(), a.end());
                   });
  // Both attempts end before the records come back to be checked.
  std::string ok = ResultBlob(done, wire::ResultStatus::Ok, "out", "");
  q->Complete(done, {reinterpret_cast<const uint8_t*>(ok.data()), ok.size()});
  std::string failed = ResultBlob(retried, wire::ResultStatus::Failed, "", "x");
  q->Fail(retried, UnixMillis() + 600000,
          {reinterpret_cast<const uint8_t*>(failed.data()), failed.size()});
  ASSERT_TRUE(Pump([&] {
    return answers.size() == 2 && Integer({"ZCARD", keys_.delayed}) == 1;
  }));
  EXPECT_EQ(answers, std::vector<QueueEvents::CancelAnswer>(
                         2, QueueEvents::CancelAnswer::kRequested));
  EXPECT_EQ(Integer({"HEXISTS", keys_.cancels, done.ToString()}), 0);
  EXPECT_EQ(Integer({"HEXISTS", keys_.cancels, retried.ToString()}), 1);
}

// A broker whose lease was taken from it (cut off longer than its lease;
// the leader reclaimed the entry and the job runs again elsewhere) must not
// queue a retry or a dead letter of the job when its attempt fails late:
// yard_fail writes only for entries still pending for the caller.
TEST_F(RedisQueueTest, AFailAfterTheLeaseWasTakenWritesNothing) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  spec.max_attempts = 3;
  JobId kept = JobId::Random(), taken = JobId::Random();
  Push(q, {JobBlob(kept, spec)});
  Push(q, {JobBlob(taken, spec)});
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  // The second record's entry goes to another consumer (as XAUTOCLAIM
  // would give it to the leader).
  auto pending = RedisCall(
      *admin_, {"XPENDING", keys_.stream[1], kRedisGroup, "-", "+", "10"});
  ASSERT_TRUE(pending.ok() && pending->elements.size() == 2);
  const std::string second = pending->elements[1].elements[0].str;
  auto moved = RedisCall(*admin_, {"XCLAIM", keys_.stream[1], kRedisGroup,
                                   "thief", "0", second, "JUSTID"});
  ASSERT_TRUE(moved.ok() && moved->elements.size() == 1);
  std::string r = ResultBlob(taken, wire::ResultStatus::Failed, "", "late");
  q->Fail(taken, UnixMillis() + 60000,
          {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
  std::string r2 = ResultBlob(kept, wire::ResultStatus::Failed, "", "boom");
  q->Fail(kept, UnixMillis() + 60000,
          {reinterpret_cast<const uint8_t*>(r2.data()), r2.size()});
  // One write batch: the job still leased to this broker is retried; the
  // other is not.
  ASSERT_TRUE(Pump([&] { return Integer({"ZCARD", keys_.delayed}) >= 1; }));
  EXPECT_EQ(Integer({"ZCARD", keys_.delayed}), 1);
  auto retried = RedisCall(*admin_, {"ZRANGE", keys_.delayed, "0", "-1"});
  ASSERT_TRUE(retried.ok() && retried->elements.size() == 1);
  EXPECT_EQ(retried->elements[0].str, kept.ToString());
  auto fenced = RedisCall(*admin_, {"HGET", keys_.stats, "fails_fenced"});
  ASSERT_TRUE(fenced.ok());
  EXPECT_EQ(fenced->str, "1");
}

TEST_F(RedisQueueTest, LockKeyRunsOneJobAtATime) {
  DurableQueue* q = Make("b1");
  JobSpec spec;
  spec.lock_key = "account-7";
  JobId a = JobId::Random(), b = JobId::Random();
  Push(q, {JobBlob(a, spec), JobBlob(b, spec)});
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  // The second is parked behind the first: not claimable.
  EXPECT_FALSE(Pump([&] { return s.claimed.size() > 1; }, 500));
  EXPECT_EQ(Integer({"LLEN", keys_.prefix + "mxw:account-7"}), 1);
  q->Complete(s.claimed[0].id, {});
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 2; }));
  EXPECT_NE(s.claimed[0].id, s.claimed[1].id);
  q->Complete(s.claimed[1].id, {});
  ASSERT_TRUE(Pump([&] {
    return Integer({"EXISTS", keys_.prefix + "mx:account-7"}) == 0;
  }));
  EXPECT_EQ(InStreams(keys_), 0);
}

// With the queue's number for a key (P ctl kc:<key>, yard queue
// concurrency), that many jobs hold the key at once: the string slot and
// members of mxz:<key>; the rest are parked and each release wakes one. A
// holder whose lease ran out (a dead broker's) holds no slot.
TEST_F(RedisQueueTest, LockKeyRunsNJobsAtATime) {
  DurableQueue* q = Make("b1");
  ASSERT_EQ(Integer({"HSET", keys_.control, "kc:account-7", "3"}), 1);
  const std::string mx = keys_.prefix + "mx:account-7",
                    mxz = keys_.prefix + "mxz:account-7",
                    mxw = keys_.prefix + "mxw:account-7";
  ASSERT_EQ(Integer({"ZADD", mxz, "1", "dead-broker|0-1"}), 1);
  JobSpec spec;
  spec.lock_key = "account-7";
  std::vector<std::string> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(JobBlob(JobId::Random(), spec));
  Push(q, jobs);
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 3; }));
  EXPECT_FALSE(Pump([&] { return s.claimed.size() > 3; }, 500));
  EXPECT_EQ(Integer({"EXISTS", mx}), 1);
  EXPECT_EQ(Integer({"ZCARD", mxz}), 2);  // the stale holder was dropped
  EXPECT_EQ(Integer({"LLEN", mxw}), 2);
  // One release, one more runs; never a fourth at once.
  q->Complete(s.claimed[0].id, {});
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 4; }));
  EXPECT_FALSE(Pump([&] { return s.claimed.size() > 4; }, 300));
  q->Complete(s.claimed[1].id, {});
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 5; }));
  for (size_t i = 2; i < 5; ++i) q->Complete(s.claimed[i].id, {});
  ASSERT_TRUE(Pump([&] {
    return Integer({"EXISTS", mx}) == 0 && Integer({"EXISTS", mxz}) == 0;
  }));
  EXPECT_EQ(Integer({"LLEN", mxw}), 0);
  EXPECT_EQ(InStreams(keys_), 0);
}

// A broker killed with its job leased: once the lease expires, the leader
// (the survivor, once the dead one's lock expired) requeues the job. The
// dead broker's registry record outlives the test (a minute's TTL), so
// only lease expiry can bring the job back here.
TEST_F(RedisQueueTest, DeadBrokersLeasesAreReclaimedByAnother) {
  RedisQueueOptions o = Options("dying");
  o.registry_ttl_ms = 60000;
  JobId id = JobId::Random();
  std::unique_ptr<Process> dying = BrokerInAChild(o, {JobBlob(id)});
  ASSERT_NE(dying, nullptr);
  EXPECT_TRUE(dying->Kill().KilledBy(SIGKILL));  // kill -9, for real
  // It left its lease and its registry record behind.
  EXPECT_EQ(PendingOwners(keys_.stream[1]), std::vector<std::string>{"dying"});
  EXPECT_EQ(Integer({"EXISTS", RegistryKey("dying")}), 1);
  o.consumer = "survivor";
  DurableQueue* survivor = Make(o);
  Seen& s2 = seen_[survivor];
  // The job comes back, by its lease reaper (whose answer may come after
  // the job).
  ASSERT_TRUE(Pump([&] {
    return s2.claimed.size() == 1 && Counter(survivor, "reclaimed") == 1;
  }));
  EXPECT_EQ(Counter(survivor, "dead_brokers"), 0);
  EXPECT_NE(log_.Find("expired leases: 1 records requeued"), "");
  EXPECT_EQ(s2.claimed[0].id, id);
  EXPECT_EQ(s2.claimed[0].attempt, 1);  // an expired lease is not a failure
  EXPECT_FALSE(s2.claimed[0].local);    // accepted by "dying"
  auto entry = RedisCall(*admin_, {"XRANGE", keys_.stream[1], "-", "+"});
  ASSERT_TRUE(entry.ok());
  ASSERT_EQ(entry->elements.size(), 1u);
  // The result is forwarded to the accepting broker's inbox.
  std::string r = ResultBlob(id, wire::ResultStatus::Ok, "x", "");
  survivor->Complete(id,
                     {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0; }));
  EXPECT_EQ(Integer({"XLEN", keys_.Inbox("dying")}), 1);
}

// Issue 5: a broker that drops out of the registry (its record expired or
// was removed) has its records requeued by the leader at once, not a lease
// later; the dead consumer then leaves the group.
TEST_F(RedisQueueTest, UnregisteredBrokersRecordsAreRequeuedBeforeTheLease) {
  RedisQueueOptions o = Options("survivor");
  o.lease_ms = 60000;  // the reaper alone would take a minute
  o.registry_ttl_ms = 300;
  // The survivor leads first (a killed leader's lock would take half a
  // lease to expire) and runs no job until the other broker is dead.
  DurableQueue* survivor = Make(o);
  want_[survivor] = 0;
  ASSERT_TRUE(Pump([&] { return Leads(survivor); }));
  o.consumer = "dying";
  JobId id = JobId::Random();
  std::unique_ptr<Process> dying = BrokerInAChild(o, {JobBlob(id)});
  ASSERT_NE(dying, nullptr);
  EXPECT_TRUE(dying->Kill().KilledBy(SIGKILL));  // kill -9, for real
  EXPECT_EQ(PendingOwners(keys_.stream[1]), std::vector<std::string>{"dying"});
  // Its record runs out (its TTL) and the leader requeues what it held.
  want_[survivor] = 64;
  Seen& s2 = seen_[survivor];
  ASSERT_TRUE(Pump(
      [&] {
        return s2.claimed.size() == 1 && Counter(survivor, "dead_brokers") == 1;
      },
      20000));
  EXPECT_EQ(Counter(survivor, "reclaimed"), 1);
  EXPECT_NE(log_.Find("broker dying is gone from the registry: 1 of its "
                      "records requeued"),
            "");
  EXPECT_EQ(log_.Find("expired leases:"), "");  // not by lease expiry
  EXPECT_EQ(s2.claimed[0].id, id);
  EXPECT_FALSE(s2.claimed[0].local);
  // The dead consumer left the group; the survivor is in it.
  auto consumers =
      RedisCall(*admin_, {"XINFO", "CONSUMERS", keys_.stream[1], kRedisGroup});
  ASSERT_TRUE(consumers.ok());
  for (const RedisReply& c : consumers->elements) {
    ASSERT_GE(c.elements.size(), 2u);
    EXPECT_NE(c.elements[1].str, "dying");
  }
}

TEST_F(RedisQueueTest, RegisteredBrokersRecordsAreLeftAlone) {
  RedisQueueOptions o = Options("holder");
  o.lease_ms = 60000;
  o.registry_ttl_ms = 300;
  DurableQueue* holder = Make(o);
  JobId id = JobId::Random();
  Push(holder, {JobBlob(id)});
  Seen& s1 = seen_[holder];
  ASSERT_TRUE(Pump([&] { return s1.claimed.size() == 1; }));
  o.consumer = "other";
  DurableQueue* other = Make(o);
  Seen& s2 = seen_[other];
  // The holder keeps its record fresh while it runs; nothing moves, even
  // though the holder is idle in the group for many TTLs.
  EXPECT_FALSE(Pump([] { return false; }, 2500));  // runs 2.5 s
  EXPECT_TRUE(s2.claimed.empty());
  EXPECT_EQ(s1.claimed.size(), 1u);
  EXPECT_EQ(Integer({"EXISTS", RegistryKey("holder")}), 1);
  EXPECT_EQ(Integer({"SISMEMBER", kRegistrySet, "other"}), 1);
}

TEST_F(RedisQueueTest, ResultReachesTheAcceptingBroker) {
  DurableQueue* accepting = Make("acc");
  DurableQueue* completing = Make("cmp");
  JobId id = JobId::Random();
  want_[accepting] = 0;  // only the completing broker has workers
  Push(accepting, {JobBlob(id)}, "the-producer");
  Seen& s = seen_[completing];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  EXPECT_FALSE(s.claimed[0].local);
  std::string r = ResultBlob(id, wire::ResultStatus::Ok, "done", "");
  completing->Complete(id,
                       {reinterpret_cast<const uint8_t*>(r.data()), r.size()});
  Seen& a = seen_[accepting];
  ASSERT_TRUE(Pump([&] { return a.results.size() == 1; }));
  EXPECT_EQ(a.results[0].first, "the-producer");
  EXPECT_EQ(a.results[0].second, r);
}

TEST_F(RedisQueueTest, UndecodableRecordIsDeadLetteredAndTheQueueGoesOn) {
  DurableQueue* q = Make("b1");
  // A record written by something else: garbage in p.
  ASSERT_TRUE(RedisCall(*admin_, {"XADD", keys_.stream[1], "*", "j",
                                  JobId::Random().ToString(), "a", "0", "x",
                                  "0", "m", "1", "k", "", "b", "x", "r", "",
                                  "p", "not a flatbuffer"})
                  .ok());
  JobId good = JobId::Random();
  Push(q, {JobBlob(good)});
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  EXPECT_EQ(s.claimed[0].id, good);
  ASSERT_TRUE(Pump([&] { return Integer({"XLEN", keys_.dead}) == 1; }));
  auto dead = RedisCall(*admin_, {"XRANGE", keys_.dead, "-", "+"});
  ASSERT_TRUE(dead.ok());
  std::string all;
  for (const auto& e : dead->elements[0].elements[1].elements)
    all += e.str + " ";
  EXPECT_NE(all.find("undecodable"), std::string::npos) << all;
}

TEST_F(RedisQueueTest, LeaderLockHasOneHolderAndFailsOver) {
  DurableQueue* a = Make("a");
  DurableQueue* b = Make("b");
  auto leaders = [&] { return (Leads(a) ? 1 : 0) + (Leads(b) ? 1 : 0); };
  ASSERT_TRUE(Pump([&] { return leaders() == 1; }));
  // Stays exactly one for a while.
  for (int i = 0; i < 10; ++i) {
    Pump([] { return false; }, 100);
    EXPECT_EQ(leaders(), 1);
  }
  nlohmann::json ja;
  a->DescribeStats(&ja);
  const bool a_leads = ja["durable"]["leader"].get<bool>();
  const int64_t fence = ja["durable"]["fence"].get<int64_t>();
  // The leader "crashes": its connections die before it can resign (the
  // destructor's resign then fails), so the lock must expire.
  DurableQueue* other = a_leads ? b : a;
  ASSERT_TRUE(
      RedisCall(*admin_, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"})
          .ok());
  for (auto& q : queues_) {
    if (q.get() == (a_leads ? a : b)) q.reset();
  }
  std::erase(queues_, nullptr);
  // The lock expires (no resign reached Redis) and the other takes over.
  const int64_t t0 = MonoMillis();
  ASSERT_TRUE(Pump([&] { return Leads(other); }));
  RecordProperty("takeover_ms", std::to_string(MonoMillis() - t0));
  nlohmann::json jo;
  other->DescribeStats(&jo);
  EXPECT_GT(jo["durable"]["fence"].get<int64_t>(), fence);
}

TEST_F(RedisQueueTest, RedisRestartKeepsAcceptedJobsAndServiceResumes) {
  DurableQueue* q = Make("b1");
  std::vector<std::string> blobs;
  for (int i = 0; i < 50; ++i) blobs.push_back(JobBlob(JobId::Random()));
  ASSERT_EQ(Push(q, blobs).size(), 50u);
  ASSERT_TRUE(server_->Shutdown().ok());
  // Down: submits are refused with Unavailable, not lost in silence.
  Pump([&] { return !q->available(); }, 3000);
  EXPECT_FALSE(q->available());
  Status st;
  Push(q, {JobBlob(JobId::Random())}, "p", &st);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  ASSERT_TRUE(server_->Start().ok());
  ASSERT_TRUE(Pump([&] { return q->available(); }, 10000));
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 50; }));
  for (const ClaimedJob& j : s.claimed) q->Complete(j.id, {});
  auto address = ParseRedisUrl(server_->url());
  admin_ = std::move(RedisClient::Connect(*address, 5000)).value();
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0; }));
}

// A claim whose reply is lost with the connection (Redis died after moving
// the records into this consumer's pending list) is read back after the
// reconnect, not left for the leader to reap a lease later.
TEST_F(RedisQueueTest, ClaimWhoseReplyWasLostIsReadBackAfterReconnect) {
  RedisQueueOptions o = Options("b1");
  o.lease_ms = 60000;  // the leader would reap these only after a minute
  DurableQueue* q = Make(o);
  want_[q] = 0;  // claims nothing by itself yet
  std::vector<std::string> blobs;
  for (int i = 0; i < 10; ++i) blobs.push_back(JobBlob(JobId::Random()));
  ASSERT_EQ(Push(q, blobs).size(), 10u);
  // The lost claim: the records go to b1's pending list, the reply elsewhere.
  std::vector<std::string> read = {"XREADGROUP", "GROUP", kRedisGroup, "b1",
                                   "COUNT",      "100",   "STREAMS"};
  for (const std::string& stream : keys_.stream) read.push_back(stream);
  for (size_t i = 0; i < std::size(keys_.stream); ++i) read.push_back(">");
  auto r = RedisCall(*admin_, read);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->type, RedisReply::Type::kArray);
  // Every other client's connection drops; b1 reconnects.
  ASSERT_TRUE(
      RedisCall(*admin_, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"})
          .ok());
  ASSERT_TRUE(Pump(
      [&] { return Counter(q, "reconnects") == 1 && q->available(); }, 20000));
  want_[q] = 64;
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 10; }, 20000))
      << s.claimed.size() << " of 10 claimed";
  // Read back (the one record of the batch), not reaped by a leader.
  EXPECT_NE(log_.Find("redis: 1 claimed records whose reply was lost are "
                      "back in hand"),
            "")
      << ::testing::PrintToString(log_.Lines());
  EXPECT_EQ(Counter(q, "reclaimed"), 0);
  for (const ClaimedJob& j : s.claimed) q->Complete(j.id, {});
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0; }));
}

// The read-back after a reconnect must not hand out again a job finished
// while the read was in flight (Redis read the entry before it saw the ack).
// A second record, whose claim reply was lost, comes back with the same
// read: once it is in hand, the read's reply has been handled.
TEST_F(RedisQueueTest, ReadBackDoesNotRerunAJobFinishedMeanwhile) {
  RedisQueueOptions o = Options("b1");
  o.lease_ms = 60000;
  DurableQueue* q = Make(o);
  want_[q] = 0;
  const JobId lost = JobId::Random(), held = JobId::Random();
  ASSERT_EQ(Push(q, {JobBlob(lost)}).size(), 1u);
  ASSERT_EQ(Push(q, {JobBlob(held)}).size(), 1u);
  // `lost` (the older record) goes to b1's pending list, its reply elsewhere.
  std::vector<std::string> read = {"XREADGROUP", "GROUP", kRedisGroup, "b1",
                                   "COUNT",      "1",     "STREAMS"};
  for (const std::string& stream : keys_.stream) read.push_back(stream);
  for (size_t i = 0; i < std::size(keys_.stream); ++i) read.push_back(">");
  ASSERT_TRUE(RedisCall(*admin_, read).ok());
  want_[q] = 64;
  Seen& s = seen_[q];
  ASSERT_TRUE(Pump([&] { return s.claimed.size() == 1; }));
  ASSERT_EQ(s.claimed[0].id, held);
  ASSERT_TRUE(
      RedisCall(*admin_, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"})
          .ok());
  // Back: the read-back went out in the turn that reconnected; the job
  // finishes before its reply is read.
  ASSERT_TRUE(Pump(
      [&] { return Counter(q, "reconnects") == 1 && q->available(); }, 20000));
  q->Complete(held, {});
  ASSERT_TRUE(Pump([&] { return s.claimed.size() >= 2; }, 20000))
      << "the lost claim was not read back";
  ASSERT_EQ(s.claimed.size(), 2u) << "the finished job was handed out again";
  EXPECT_EQ(s.claimed[1].id, lost);
  q->Complete(lost, {});
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0; }));
}

TEST_F(RedisQueueTest, UnreachableRedisIsUnavailableAtStart) {
  RedisQueueOptions o = Options("x");
  o.url = "redis://127.0.0.1:1";
  o.connect_timeout_ms = 500;
  auto q = NewRedisQueue(o);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), StatusCode::kUnavailable);
}

TEST_F(RedisQueueTest, RequireFsyncRefusesEverysec) {
  RedisQueueOptions o = Options("x");
  o.require_fsync = true;
  auto q = NewRedisQueue(o);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("appendfsync"), std::string::npos);
  ASSERT_TRUE(
      RedisCall(*admin_, {"CONFIG", "SET", "appendfsync", "always"}).ok());
  EXPECT_TRUE(NewRedisQueue(o).ok());
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// Entry ids are unique per stream only: the records of one batch that go to
// two priority streams in the same millisecond share an id. Each must be
// claimed at once, not the first alone with the other left pending until
// its lease expires and the leader reclaims it.
TEST_F(RedisQueueTest, RecordsSharingAnIdInTwoStreamsAreAllClaimed) {
  RedisQueueOptions o = Options("b1");
  o.lease_ms = 60000;  // a record missed would come back only after this
  DurableQueue* q = Make(o);
  ASSERT_NE(q, nullptr);
  // Make the next id of every priority stream 9999999999999-1, so the
  // three records of the batch below share it whatever the clock says.
  for (const std::string& stream : keys_.stream) {
    auto r = RedisCall(*admin_, {"XSETID", stream, "9999999999999-0"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::vector<std::string> blobs;
  for (uint8_t priority : {0, 1, 2}) {
    JobSpec spec;
    spec.priority = priority;
    blobs.push_back(JobBlob(JobId::Random(), spec));
  }
  ASSERT_EQ(Push(q, blobs).size(), 3u);
  for (const std::string& stream : keys_.stream) {
    auto r = RedisCall(*admin_, {"XRANGE", stream, "-", "+"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->elements.size(), 1u) << stream;
    ASSERT_EQ(r->elements[0].elements[0].str, "9999999999999-1") << stream;
  }
  Seen& seen = seen_[q];
  ASSERT_TRUE(Pump([&] { return seen.claimed.size() == 3; }))
      << seen.claimed.size() << " of 3 claimed";
  for (const ClaimedJob& j : seen.claimed) q->Complete(j.id, {});
  ASSERT_TRUE(Pump([&] { return InStreams(keys_) == 0; }));
}

}  // namespace
}  // namespace yard
