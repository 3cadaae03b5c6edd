// The isolate pool end to end: real `yard` broker and worker processes on
// 127.0.0.1, jobs from the client library with every outcome checked.
//   - `--isolate process`: a job that burns CPU, one that eats memory and
//     one that crashes each fail with their reason while echo jobs beside
//     them complete; the worker lives on with a small RSS.
//   - `--exec` handlers in Python and Node (examples/exec): many jobs with
//     correct outputs while a handler process is SIGKILLed; its job is
//     retried and none is lost.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client/producer.h"
#include "tests/cluster.h"
#include "worker/isolate_pool.h"

namespace yard {
namespace {

const std::string kExamples = std::string(YARD_SOURCE_DIR) + "/examples/exec";

std::unique_ptr<Producer> MakeProducer(const BrokerHandle& broker) {
  ProducerOptions po;
  po.brokers = {broker.frontend};
  po.default_timeout_ms = 120000;
  auto p = Producer::Create(po);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : nullptr;
}

// The worker's direct children (every thread's), from /proc.
std::set<pid_t> ChildrenOf(pid_t pid) {
  std::set<pid_t> out;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream in(t.path() / "children");
    pid_t child = 0;
    while (in >> child) out.insert(child);
  }
  return out;
}

std::string CommandLineOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(in)),
                std::istreambuf_iterator<char>());
  for (auto& ch : s) {
    if (ch == '\0') ch = ' ';
  }
  return s;
}

// The spec keeps views: `task` and `payload` must outlive its Submit.
JobSpec Spec(std::string_view task, std::string_view payload,
             uint16_t max_attempts = 1) {
  JobSpec s;
  s.task = task;
  s.payload = AsBytes(payload);
  s.max_attempts = max_attempts;
  return s;
}

#if defined(__SANITIZE_ADDRESS__)
// ASan reserves terabytes of address space for its shadow memory, so a
// child under RLIMIT_AS cannot even start: the ASan build leaves the memory
// limit (and the job that needs it) to the plain build, which runs it.
constexpr bool kAddressLimitWorks = false;
constexpr int64_t kWorkerRssBoundKb = 512 * 1024;
#else
constexpr bool kAddressLimitWorks = true;
constexpr int64_t kWorkerRssBoundKb = 128 * 1024;
#endif

TEST(IsolateTest, LimitsAndCrashesCostOnlyTheirOwnJob) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  std::vector<std::string> flags = {"--heartbeat-ms",
                                    "200",
                                    "--isolate",
                                    "process",
                                    "--misbehaving-handlers",
                                    "--job-cpu-seconds",
                                    "1"};
  if (kAddressLimitWorks) {
    flags.insert(flags.end(), {"--job-memory-mb", "256"});
  }
  Process* worker = c.StartWorker(broker->backend, 2, flags);
  ASSERT_TRUE(worker);
  auto producer = MakeProducer(*broker);
  ASSERT_TRUE(producer);

  auto spin = producer->Submit(Spec("spin", ""));
  std::future<JobOutcome> alloc;
  if (kAddressLimitWorks) alloc = producer->Submit(Spec("alloc", ""));
  auto segv = producer->Submit(Spec("segv", ""));
  constexpr int kEchoes = 200;
  std::vector<std::string> payloads;
  std::vector<std::future<JobOutcome>> echoes;
  for (int i = 0; i < kEchoes; ++i) {
    payloads.push_back("echo payload " + std::to_string(i));
    echoes.push_back(producer->Submit(Spec("echo", payloads.back())));
  }
  struct Want {
    std::future<JobOutcome>* outcome;
    const char* reason;
  } wants[] = {{&spin, "cpu limit"},
               {&alloc, "memory limit"},
               {&segv, "crashed: SIGSEGV"}};
  for (auto& w : wants) {
    if (!w.outcome->valid()) continue;  // not submitted in this build
    JobOutcome o = w.outcome->get();
    EXPECT_EQ(o.kind, JobOutcome::Kind::kFailed) << w.reason;
    EXPECT_EQ(o.status, wire::ResultStatus::Failed) << w.reason;
    EXPECT_EQ(o.error, w.reason);
  }
  for (int i = 0; i < kEchoes; ++i) {
    JobOutcome o = echoes[i].get();
    ASSERT_EQ(o.kind, JobOutcome::Kind::kCompleted) << i << ": " << o.error;
    EXPECT_EQ(o.output, payloads[i]);
  }
  EXPECT_TRUE(worker->Running()) << c.Describe();
  // The worker stays small: 256 MiB went to a child, not to it.
  const int64_t rss = ResidentKb(worker->pid());
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, kWorkerRssBoundKb) << "worker RSS " << rss << " KiB";
  // Every slot has a child again.
  EXPECT_TRUE(PollUntil([&] { return ChildrenOf(worker->pid()).size() == 2; },
                        Millis(5000)))
      << ChildrenOf(worker->pid()).size() << " children";
}

TEST(IsolateTest, RunTimeoutKillsTheChild) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Process* worker = c.StartWorker(broker->backend, 1,
                                  {"--heartbeat-ms", "200", "--isolate",
                                   "process", "--run-timeout-ms", "500"});
  ASSERT_TRUE(worker);
  auto producer = MakeProducer(*broker);
  ASSERT_TRUE(producer);
  JobOutcome slow = producer->Submit(Spec("sleep", "60000")).get();
  EXPECT_EQ(slow.status, wire::ResultStatus::Failed);
  EXPECT_EQ(slow.error, "timed out");
  // The one slot has a fresh child that answers.
  JobOutcome after = producer->Submit(Spec("echo", "still here")).get();
  EXPECT_EQ(after.kind, JobOutcome::Kind::kCompleted) << after.error;
  EXPECT_EQ(after.output, "still here");
}

// The pool as a library, in this process, with real `yard worker-child`
// children.
JobContext Context(std::string_view task, std::string_view payload) {
  JobContext ctx;
  ctx.id = JobId{7, 7};
  ctx.task = task;
  ctx.payload = AsBytes(payload);
  return ctx;
}

// CPU seconds a process has used, from /proc/PID/stat; -1 when unreadable.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // Fields 3.. after the command: utime and stime are the 14th and 15th.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

TEST(IsolatePoolTest, CpuLimitIsPerJobNotPerChild) {
  IsolateOptions o;
  o.cpu_seconds = 1;
  o.self_exe = YardBinary();
  o.misbehaving_handlers = true;
  IsolatePool pool(o);
  Handler run = pool.AddBuiltin().handler;
  ASSERT_TRUE(pool.Start().ok());
  const std::set<pid_t> children = ChildrenOf(getpid());
  ASSERT_EQ(children.size(), 1u);
  const pid_t child = *children.begin();
  // Jobs of 600 ms of spinning until the child has used well over its
  // one-second limit in total: none may fail, and it stays the same child.
  const std::string ms = "600";
  int jobs = 0;
  for (; jobs < 30 && CpuSeconds(child) < 2.5; ++jobs) {
    try {
      run(Context("spin", ms));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "job " << jobs << " at " << CpuSeconds(child)
                    << " CPU seconds: " << e.what();
    }
  }
  EXPECT_GE(CpuSeconds(child), 2.5) << jobs << " jobs";
  EXPECT_EQ(ChildrenOf(getpid()), children);
  EXPECT_EQ(pool.counters().replaced, 0u);
}

TEST(IsolatePoolTest, CancelKillsTheChildAfterTheGrace) {
  IsolateOptions o;
  o.cancel_grace_ms = 200;
  o.self_exe = YardBinary();
  IsolatePool pool(o);
  Handler run = pool.AddBuiltin().handler;
  ASSERT_TRUE(pool.Start().ok());
  std::atomic<bool> cancel{false};
  JobContext ctx = Context("sleep", "60000");
  ctx.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(Millis(100));
    cancel.store(true);
  });
  try {
    run(ctx);
    ADD_FAILURE() << "a cancelled sleep returned";
  } catch (const JobFailure& e) {
    EXPECT_EQ(e.status(), wire::ResultStatus::Cancelled);
    EXPECT_STREQ(e.what(), "cancelled");
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a JobFailure: " << e.what();
  }
  canceller.join();
  EXPECT_EQ(run(Context("echo", "next")), "next");
  EXPECT_EQ(pool.counters().replaced, 1u);
}

// Pipelining: a batch written to one child at once, each job answered,
// timed and limited on its own.
struct BatchJob {
  std::string task;
  std::string payload;
};

struct Answered {
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string data;
  int calls = 0;
};

// Runs `jobs` as one batch of `pool`'s builtin group (ids 7:0, 7:1, ...);
// `flags[i]`, when given, is job i's cancel flag. The answers, by job.
std::vector<Answered> RunAsBatch(
    const BatchHandler& batch, const std::vector<BatchJob>& jobs,
    std::vector<std::atomic<bool>>* flags = nullptr,
    std::vector<ProgressSink*> sinks = {}) {
  std::vector<JobContext> contexts;
  for (size_t i = 0; i < jobs.size(); ++i) {
    contexts.push_back(Context(jobs[i].task, jobs[i].payload));
    contexts.back().id = JobId{7, i};
    if (flags) contexts.back().cancel = &(*flags)[i];
    if (i < sinks.size()) contexts.back().progress = sinks[i];
  }
  std::vector<const JobContext*> pointers;
  for (const auto& c : contexts) pointers.push_back(&c);
  std::vector<Answered> answers(jobs.size());
  size_t expected = 0;
  batch.run(pointers, [&](size_t i, const JobAnswer& a) {
    EXPECT_EQ(i, expected++) << "answers out of order";
    answers[i].status = a.status;
    answers[i].data.assign(a.data);
    ++answers[i].calls;
  });
  return answers;
}

void ExpectEchoed(const std::vector<BatchJob>& jobs,
                  const std::vector<Answered>& answers) {
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(answers[i].calls, 1) << i;
    if (jobs[i].task != "echo") continue;
    EXPECT_EQ(answers[i].status, wire::ResultStatus::Ok)
        << i << ": " << answers[i].data;
    EXPECT_EQ(answers[i].data, jobs[i].payload) << i;
  }
}

// Ten echo jobs, the job `task` (which fails with `reason`), ten more: in
// one batch, the job fails alone and the jobs behind it run on the
// replacement child. Written twice: all of them, then those behind.
void ExpectOnlyTheMiddleJobFails(IsolatePool& pool, const BatchHandler& batch,
                                 std::vector<BatchJob> before, BatchJob middle,
                                 const std::string& reason) {
  std::vector<BatchJob> jobs = std::move(before);
  for (int i = 0; i < 10; ++i)
    jobs.push_back({"echo", "a" + std::to_string(i)});
  const size_t bad = jobs.size();
  jobs.push_back(std::move(middle));
  for (int i = 0; i < 10; ++i)
    jobs.push_back({"echo", "b" + std::to_string(i)});
  const std::vector<Answered> answers = RunAsBatch(batch, jobs);
  ExpectEchoed(jobs, answers);
  for (size_t i = 0; i < bad; ++i) {
    EXPECT_EQ(answers[i].status, wire::ResultStatus::Ok) << answers[i].data;
  }
  EXPECT_EQ(answers[bad].status, wire::ResultStatus::Failed);
  EXPECT_EQ(answers[bad].data, reason);
  const IsolateCounters c = pool.counters();
  EXPECT_EQ(c.replaced, 1u);
  EXPECT_EQ(c.writes, 2u);
  EXPECT_EQ(c.jobs_written, jobs.size() + 10);
}

// A started pool of `yard worker-child` children (self_exe set here), and
// its handlers.
struct BuiltinPool {
  explicit BuiltinPool(IsolateOptions o)
      : pool(WithYard(std::move(o))), handlers(pool.AddBuiltin()) {
    started = pool.Start().ok();
  }
  static IsolateOptions WithYard(IsolateOptions o) {
    o.self_exe = YardBinary();
    return o;
  }
  IsolatePool pool;
  IsolateHandlers handlers;
  bool started = false;
};

TEST(IsolatePoolTest, PipelinedJobHitsItsCpuLimitAlone) {
  IsolateOptions o;
  o.cpu_seconds = 1;
  o.misbehaving_handlers = true;
  BuiltinPool p(o);
  ASSERT_TRUE(p.started);
  // Spinning jobs of 600 ms before it: each under the limit, which is
  // re-armed as each answer arrives.
  ExpectOnlyTheMiddleJobFails(p.pool, *p.handlers.batch,
                              {{"spin", "600"}, {"spin", "600"}}, {"spin", ""},
                              "cpu limit");
}

TEST(IsolatePoolTest, PipelinedJobTimesOutAlone) {
  IsolateOptions o;
  o.run_timeout_ms = 400;
  BuiltinPool p(o);
  ASSERT_TRUE(p.started);
  // Three 250 ms sleeps before it: 750 ms in all, each under the timeout,
  // which counts from when each one starts.
  ExpectOnlyTheMiddleJobFails(
      p.pool, *p.handlers.batch,
      {{"sleep", "250"}, {"sleep", "250"}, {"sleep", "250"}},
      {"sleep", "60000"}, "timed out");
}

TEST(IsolatePoolTest, CancelledJobWaitingInThePipeGetsTheGraceWhenItStarts) {
  IsolateOptions o;
  o.cancel_grace_ms = 200;
  BuiltinPool p(o);
  ASSERT_TRUE(p.started);
  const std::vector<BatchJob> jobs = {
      {"sleep", "300"}, {"hang", ""}, {"echo", "after"}};
  std::vector<std::atomic<bool>> flags(jobs.size());
  // Cancelled while the sleep runs and the hang waits in the pipe.
  std::thread canceller([&] {
    std::this_thread::sleep_for(Millis(100));
    flags[1].store(true);
  });
  const std::vector<Answered> answers =
      RunAsBatch(*p.handlers.batch, jobs, &flags);
  canceller.join();
  EXPECT_EQ(answers[0].status, wire::ResultStatus::Ok) << answers[0].data;
  EXPECT_EQ(answers[1].status, wire::ResultStatus::Cancelled);
  EXPECT_EQ(answers[1].data, "cancelled");
  ExpectEchoed(jobs, answers);
  EXPECT_EQ(p.pool.counters().replaced, 1u);
}

TEST(IsolatePoolTest, KilledChildMidBatchFailsOnlyItsRunningJob) {
  IsolateOptions o;
  BuiltinPool p(o);
  ASSERT_TRUE(p.started);
  const std::set<pid_t> children = ChildrenOf(getpid());
  ASSERT_EQ(children.size(), 1u);
  std::vector<BatchJob> jobs = {{"echo", "first"}, {"sleep", "2000"}};
  for (int i = 0; i < 20; ++i) jobs.push_back({"echo", std::to_string(i)});
  std::thread killer([&] {
    std::this_thread::sleep_for(Millis(300));
    kill(*children.begin(), SIGKILL);
  });
  const std::vector<Answered> answers = RunAsBatch(*p.handlers.batch, jobs);
  killer.join();
  ExpectEchoed(jobs, answers);
  EXPECT_EQ(answers[1].status, wire::ResultStatus::Failed);
  EXPECT_EQ(answers[1].data, "crashed: SIGKILL");
  EXPECT_EQ(p.pool.counters().replaced, 1u);
}

// Collects a job's progress reports.
struct Reports : ProgressSink {
  void Report(float fraction, std::string_view message) override {
    std::lock_guard lock(mu);
    seen.emplace_back(fraction, message);
  }
  std::mutex mu;
  std::vector<std::pair<float, std::string>> seen;
};

TEST(IsolatePoolTest, ProgressInABatchReachesItsOwnJob) {
  IsolateOptions o;
  BuiltinPool p(o);
  ASSERT_TRUE(p.started);
  const std::vector<BatchJob> jobs = {
      {"echo", "x"}, {"progress", "2"}, {"echo", "y"}, {"progress", "3"}};
  std::vector<Reports> reports(jobs.size());
  std::vector<ProgressSink*> sinks;
  for (auto& r : reports) sinks.push_back(&r);
  const std::vector<Answered> answers =
      RunAsBatch(*p.handlers.batch, jobs, nullptr, sinks);
  ExpectEchoed(jobs, answers);
  EXPECT_TRUE(reports[0].seen.empty());
  EXPECT_TRUE(reports[2].seen.empty());
  for (size_t i : {1u, 3u}) {
    EXPECT_EQ(answers[i].data, "done");
    const size_t steps = i == 1 ? 2 : 3;
    ASSERT_EQ(reports[i].seen.size(), steps) << i;
    EXPECT_EQ(reports[i].seen.back().second,
              "step " + std::to_string(steps) + " of " + std::to_string(steps));
  }
}

// A worker of concurrency 1 with many jobs queued: they go to its child
// several per write, and a spinning job among them costs only itself.
TEST(IsolateTest, QueuedJobsAreBatchedAndASpinningOneCostsOnlyItself) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  IsolateOptions io;
  io.cpu_seconds = 1;
  io.self_exe = YardBinary();
  io.misbehaving_handlers = true;
  IsolatePool pool(io);
  WorkerOptions wo;
  wo.brokers = {broker->backend};
  wo.concurrency = 1;
  wo.heartbeat_ms = 200;
  Worker worker(wo);
  const IsolateHandlers in_child = pool.AddBuiltin();
  for (const char* task : {"echo", "spin"}) {
    worker.Register(task, in_child.handler, in_child.batch);
  }
  ASSERT_TRUE(pool.Start().ok());
  std::thread runner([&] { EXPECT_TRUE(worker.Run().ok()); });
  auto producer = MakeProducer(*broker);
  ASSERT_TRUE(producer);

  constexpr int kJobs = 2000;
  std::vector<std::string> payloads;
  std::vector<JobSpec> specs;
  payloads.reserve(kJobs + 1);
  for (int i = 0; i < kJobs; ++i) {
    payloads.push_back("echo " + std::to_string(i));
    specs.push_back(Spec("echo", payloads.back()));  // one attempt each
    if (i == kJobs / 2) specs.push_back(Spec("spin", ""));
  }
  auto outcomes = producer->SubmitBatch(specs);
  for (size_t i = 0, echo = 0; i < specs.size(); ++i) {
    JobOutcome o = outcomes[i].get();
    if (specs[i].task == "spin") {
      EXPECT_EQ(o.status, wire::ResultStatus::Failed);
      EXPECT_EQ(o.error, "cpu limit");
      continue;
    }
    ASSERT_EQ(o.kind, JobOutcome::Kind::kCompleted) << i << ": " << o.error;
    EXPECT_EQ(o.output, payloads[echo++]);
  }
  worker.Stop();
  runner.join();
  pool.Shutdown();
  const WorkerCounters wc = worker.counters();
  const IsolateCounters ic = pool.counters();
  EXPECT_EQ(wc.jobs_ok, static_cast<uint64_t>(kJobs));
  EXPECT_EQ(ic.replaced, 1u);
  // More than one job per batch, and per write, on average.
  EXPECT_GT(wc.batched_jobs, wc.batches)
      << wc.batched_jobs << " jobs in " << wc.batches << " batches";
  EXPECT_GT(ic.jobs_written, ic.writes)
      << ic.jobs_written << " jobs in " << ic.writes << " writes";
}

// Runs `jobs` echo jobs of `task` through a worker whose handler processes
// run `command`, SIGKILLs one handler process after a fifth of them, and
// checks every output. max_attempts 3: the killed process's job runs again.
void RunExecEcho(const std::string& command, int jobs) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Process* worker = c.StartWorker(
      broker->backend, 2,
      {"--heartbeat-ms", "200", "--exec", "lang-echo=" + command});
  ASSERT_TRUE(worker);
  auto producer = MakeProducer(*broker);
  ASSERT_TRUE(producer);

  std::vector<std::string> payloads(static_cast<size_t>(jobs));
  std::vector<JobSpec> specs;
  for (int i = 0; i < jobs; ++i) {
    payloads[i] = "job " + std::to_string(i) + std::string(i % 97, 'x');
    specs.push_back(Spec("lang-echo", payloads[i], 3));
  }
  std::vector<std::future<JobOutcome>> outcomes;
  const int first = jobs / 5;
  {
    auto part = producer->SubmitBatch(std::span(specs).first(first));
    for (auto& f : part) outcomes.push_back(std::move(f));
  }
  // Kill one handler process while the rest of the jobs go through. Both
  // are up once their command lines name the command (before that they
  // may still be in exec).
  const std::string program = command.substr(0, command.find(' '));
  std::set<pid_t> before;
  ASSERT_TRUE(PollUntil(
      [&] {
        before = ChildrenOf(worker->pid());
        for (pid_t p : before) {
          if (CommandLineOf(p).find(program) == std::string::npos) {
            return false;
          }
        }
        return before.size() == 2;
      },
      Millis(10000)))
      << before.size() << " children: " << c.Describe();
  auto rest = producer->SubmitBatch(std::span(specs).subspan(first));
  for (auto& f : rest) outcomes.push_back(std::move(f));
  const pid_t victim = *before.begin();
  ASSERT_EQ(kill(victim, SIGKILL), 0);

  int completed = 0;
  for (int i = 0; i < jobs; ++i) {
    JobOutcome o = outcomes[i].get();
    ASSERT_EQ(o.kind, JobOutcome::Kind::kCompleted)
        << i << ": " << o.error << "\n"
        << c.Describe();
    ASSERT_EQ(o.output, payloads[i]) << i;
    ++completed;
  }
  EXPECT_EQ(completed, jobs);
  EXPECT_TRUE(worker->Running());
  // The killed process was replaced; its job went back through the retry
  // path (the broker's counter).
  const std::set<pid_t> after = ChildrenOf(worker->pid());
  EXPECT_EQ(after.size(), 2u);
  EXPECT_EQ(after.count(victim), 0u);
  auto stats = BrokerStats(broker->frontend);
  ASSERT_TRUE(stats.is_object());
  EXPECT_GE(stats["counters"]["retried"].get<int64_t>(), 1) << stats.dump();
  EXPECT_EQ(stats["counters"]["failed"].get<int64_t>(), 0) << stats.dump();
}

// Progress from handlers in child processes reaches the producer: a
// built-in handler under --isolate process (its ctx.Progress becomes a
// progress frame) and a Python --exec handler writing the frames itself.
TEST(IsolateTest, ProgressFromChildProcessesReachesTheProducer) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      c.StartWorker(broker->backend, 2,
                    {"--heartbeat-ms", "200", "--isolate", "process", "--exec",
                     "lang-echo=python3 " + kExamples + "/echo.py"}));
  std::mutex mu;
  std::unordered_map<JobId, std::vector<ProgressUpdate>, JobIdHash> seen;
  ProducerOptions po;
  po.brokers = {broker->frontend};
  po.default_timeout_ms = 60000;
  po.on_progress = [&](const ProgressUpdate& p) {
    std::lock_guard<std::mutex> lock(mu);
    seen[p.id].push_back(p);
  };
  auto producer = Producer::Create(po);
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  JobSpec builtin = Spec("progress", "3");
  JobSpec python = Spec("lang-echo", "steps:3");
  builtin.id = JobId::Random();
  python.id = JobId::Random();
  auto a = (*producer)->Submit(builtin);
  auto b = (*producer)->Submit(python);
  JobOutcome oa = a.get(), ob = b.get();
  ASSERT_EQ(oa.kind, JobOutcome::Kind::kCompleted) << oa.error;
  ASSERT_EQ(ob.kind, JobOutcome::Kind::kCompleted) << ob.error;
  EXPECT_EQ(ob.output, "steps:3");
  std::lock_guard<std::mutex> lock(mu);
  for (const JobId& id : {builtin.id, python.id}) {
    const auto& reports = seen[id];
    // Three steps 150 ms apart; a report read late may fall inside the
    // previous one's 100 ms window and be dropped, so at least two, in
    // order, each as the handler wrote it.
    ASSERT_GE(reports.size(), 2u) << id.ToString() << "\n" << c.Describe();
    int last = 0;
    for (const ProgressUpdate& r : reports) {
      const int step = static_cast<int>(std::lround(r.fraction * 3));
      EXPECT_GT(step, last) << r.message;
      last = step;
      EXPECT_FLOAT_EQ(r.fraction, static_cast<float>(step) / 3.0f);
      EXPECT_EQ(r.message, "step " + std::to_string(step) + " of 3");
    }
  }
}

TEST(IsolateTest, PythonExecHandlerSurvivesAKilledProcess) {
  RunExecEcho("python3 " + kExamples + "/echo.py", 10000);
}

TEST(IsolateTest, NodeExecHandlerSurvivesAKilledProcess) {
  if (system("node --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not installed (scripts/deps.sh installs it)";
  }
  RunExecEcho("node " + kExamples + "/echo.js", 10000);
}

}  // namespace
}  // namespace yard
