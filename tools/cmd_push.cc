// yard push: submits --count jobs through a Producer, at most --window in
// flight (and at --rate jobs/s if given), and reports what became of them:
// submitted, completed, failed, lost, throughput and latency (submit to
// result; with --rate, from each job's intended send time, so that a stall
// which holds sends back is not hidden). The flag names and the --json keys are
// a contract (load tests and scripts parse them).
//
//   failed = results with a non-Ok status + jobs refused for good (rejected)
//   lost   = jobs with no answer by the end of the run (--timeout), or still
//            unanswered when SIGINT/SIGTERM stopped the run
//
//   failures = failed jobs counted by kind, with the first few messages
//
// Exit: 0 when every job completed (or nothing is lost and
// --allow-failures), 1 when anything is lost or failed, 2 for a bad flag or
// value or when no broker answered within --connect-timeout.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/producer.h"
#include "common/clock.h"
#include "common/done_counter.h"
#include "common/histogram.h"
#include "common/logging.h"
#include "common/signals.h"
#include "common/trace_context.h"
#include "loadtest/loadtest.h"
#include "loadtest/report.h"
#include "tools/cli.h"
#include "tools/push_failures.h"

namespace yard {
namespace {

constexpr int64_t kProgressEveryUs = 200'000;
// How long to wait past the run's deadline for the producer to deliver the
// timeouts it fires at that deadline.
constexpr int64_t kDeadlineGraceUs = 2'000'000;

// Outcome bookkeeping. OnOutcome runs on the producer's I/O thread (the only
// writer of the histogram); the main thread reads the atomics while running
// and everything after Producer::Close() has joined that thread.
class Tally {
 public:
  // `late_us`: how long after its intended send time the job went out
  // (open loop, --rate); latency counts from the intended time, so a stall
  // that delays sending shows in the figures (no coordinated omission).
  // --traceparent: OnOutcome counts the results that came back in the same
  // trace from a worker's attempt (its own span as parent-id).
  explicit Tally(std::string_view traceparent = {})
      : traceparent_(traceparent), trace_id_(TraceIdOf(traceparent_)) {}

  void OnOutcome(const JobOutcome& o, int64_t late_us) {
    if (!trace_id_.empty() && o.traceparent != traceparent_ &&
        TraceIdOf(o.traceparent) == trace_id_) {
      traced_.fetch_add(1, std::memory_order_relaxed);
    }
    const auto latency =
        static_cast<uint64_t>(std::max<int64_t>(o.latency_us + late_us, 0));
    switch (o.kind) {
      case JobOutcome::Kind::kCompleted:
        latency_.Record(latency);
        completed_.fetch_add(1, std::memory_order_relaxed);
        last_answer_us_.store(MonoMicros(), std::memory_order_relaxed);
        break;
      case JobOutcome::Kind::kFailed:
        failures_.Add(o);
        latency_.Record(latency);
        failed_.fetch_add(1, std::memory_order_relaxed);
        last_answer_us_.store(MonoMicros(), std::memory_order_relaxed);
        break;
      case JobOutcome::Kind::kRejected:
        failures_.Add(o);
        rejected_.fetch_add(1, std::memory_order_relaxed);
        break;
      case JobOutcome::Kind::kTimedOut:
        lost_.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    done_.Add();
  }

  // Blocks until done() >= target or MonoMicros() >= deadline_us.
  void WaitDone(uint64_t target, int64_t deadline_us) {
    done_.WaitFor(target, deadline_us);
  }

  uint64_t done() const { return done_.value(); }
  uint64_t completed() const {
    return completed_.load(std::memory_order_relaxed);
  }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }
  uint64_t rejected() const {
    return rejected_.load(std::memory_order_relaxed);
  }
  uint64_t lost() const { return lost_.load(std::memory_order_relaxed); }
  uint64_t traced() const { return traced_.load(std::memory_order_relaxed); }
  std::string_view trace_id() const { return trace_id_; }
  int64_t last_answer_us() const {
    return last_answer_us_.load(std::memory_order_relaxed);
  }
  const Histogram& latency() const { return latency_; }
  const PushFailures& failures() const { return failures_; }

 private:
  DoneCounter done_;
  const std::string traceparent_;
  const std::string_view trace_id_;  // into traceparent_
  std::atomic<uint64_t> completed_{0}, failed_{0}, rejected_{0}, lost_{0};
  std::atomic<uint64_t> traced_{0};
  std::atomic<int64_t> last_answer_us_{0};
  Histogram latency_;
  PushFailures failures_;
};

// The one-line progress display on a terminal's stderr.
class Progress {
 public:
  Progress(uint64_t total, bool enabled) : total_(total), enabled_(enabled) {}

  void Maybe(int64_t now, uint64_t submitted, const Tally& t) {
    if (!enabled_ || now < next_us_) return;
    const uint64_t done = t.done();
    double rate =
        last_us_ ? (done - last_done_) * 1e6 / double(now - last_us_) : 0;
    last_us_ = now;
    last_done_ = done;
    next_us_ = now + kProgressEveryUs;
    std::fprintf(stderr,
                 "\r\x1b[K%" PRIu64 "/%" PRIu64 " done  %.0f jobs/s  %" PRIu64
                 " in flight  %" PRIu64 " failed  %" PRIu64 " lost",
                 done, total_, rate, submitted - std::min(submitted, done),
                 t.failed() + t.rejected(), t.lost());
    std::fflush(stderr);
  }
  void Clear() {
    if (enabled_ && last_us_) {
      std::fprintf(stderr, "\r\x1b[K");
      std::fflush(stderr);
    }
  }

 private:
  uint64_t total_;
  bool enabled_;
  int64_t next_us_ = 0;
  int64_t last_us_ = 0;
  uint64_t last_done_ = 0;
};

// The flags of `yard push`.
struct PushFlags {
  std::string connect, discover, task, payload_text, queue, lock_key;
  std::string traceparent;
  cli::RedisAuthFlags redis_auth;
  cli::LogFlags log{.level = "warn"};
  int64_t count = 0, size = 64, window = 1000;
  // Past the broker's default --unroutable-timeout-ms (60 s), so that a job
  // whose task no worker runs is reported failed with that reason, not lost.
  double rate = 0, timeout_s = 90, connect_timeout_s = 5;
  int priority = 1, max_attempts = 1;
  uint32_t run_timeout_ms = 0;
  int64_t ack_timeout_ms = 2000, heartbeat_ms = 1000, max_batch = 256,
          linger_us = 200;
  bool json = false;
  bool print_ids = false;
  bool allow_failures = false;
  bool show_progress = false;
  cli::CurveFlags curve;
  CLI::Option* rate_opt = nullptr;
  CLI::Option* payload_opt = nullptr;
};

// The flags that shape the load: what the jobs are and how they go out.
void AddLoadFlags(CLI::App& app, PushFlags* f) {
  app.add_option("--task", f->task,
                 "task name (echo, sleep, sha256, fail, ...)")
      ->required();
  app.add_option("--count", f->count, "number of jobs")->required();
  auto* size_opt = app.add_option("--size", f->size,
                                  "payload of this many bytes (default 64)");
  f->payload_opt = app.add_option("--payload", f->payload_text,
                                  "payload text (for sleep: milliseconds)");
  size_opt->excludes(f->payload_opt);
  f->payload_opt->excludes(size_opt);
  f->rate_opt = app.add_option(
      "--rate", f->rate,
      "jobs per second, open loop; latency counts from each job's intended "
      "send time (default: unlimited)");
  app.add_option("--window", f->window, "max jobs in flight")
      ->capture_default_str();
  app.add_flag("--json", f->json, "print one JSON object instead of a table");
  app.add_flag("--print-ids", f->print_ids,
               "print each job's id on stdout as it is submitted (before a "
               "broker accepted it; the table then goes to stderr); with "
               "--json: an `ids` array instead");
  app.add_flag("--allow-failures", f->allow_failures,
               "exit 0 when jobs failed but none was lost");
  app.add_option(
         "--timeout", f->timeout_s,
         "seconds for the whole run; jobs without a result by then are lost")
      ->capture_default_str();
  app.add_option("--priority", f->priority, "0 low, 1 normal, 2 high")
      ->check(CLI::Range(0, 2))
      ->capture_default_str();
  app.add_option("--max-attempts", f->max_attempts,
                 "attempts per job (worker-side retries)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--run-timeout-ms", f->run_timeout_ms,
                 "how long one attempt may run once dispatched (0: the "
                 "broker's --run-timeout-ms)")
      ->capture_default_str();
  app.add_option("--queue", f->queue, "queue name (default: default)");
  app.add_option("--traceparent", f->traceparent,
                 "W3C trace context every job carries (00-<32 hex>-<16 "
                 "hex>-<2 hex>); default: each job is its own trace (its id)");
  app.add_option("--lock-key", f->lock_key,
                 "durable mode: every job takes this lock key (at most one "
                 "runs at a time, or `yard queue concurrency --per-key N`)");
}

// The flags of the producer's connection to the brokers.
void AddProducerFlags(CLI::App& app, PushFlags* f) {
  app.add_option("--ack-timeout-ms", f->ack_timeout_ms,
                 "resend when not accepted within this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--connect-timeout", f->connect_timeout_s,
                 "seconds to wait for every broker to answer before the run; "
                 "none by then: an error")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", f->heartbeat_ms, "broker heartbeat interval")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-batch", f->max_batch, "max jobs per Submit message")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option(
         "--linger-us", f->linger_us,
         "while jobs stream in, wait up to this long for a fuller batch")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--show-progress", f->show_progress,
               "print each progress report of a job to stderr");
  cli::AddLogFlags(app, &f->log);
}

// The checks CLI11 cannot make: 0 when the flags are fine, else the exit
// code of a one-line usage error.
int CheckFlags(const std::string& name, const PushFlags& f) {
  if (f.task.empty()) return cli::UsageError(name, "--task: must not be empty");
  if (f.count < 1) return cli::UsageError(name, "--count: must be at least 1");
  if (f.window < 1) {
    return cli::UsageError(name, "--window: must be at least 1");
  }
  if (f.rate_opt->count() > 0 && !(f.rate > 0)) {
    return cli::UsageError(name, "--rate: must be greater than 0");
  }
  if (f.size < 0) return cli::UsageError(name, "--size: must be at least 0");
  if (!f.traceparent.empty() && !ValidTraceParent(f.traceparent)) {
    return cli::UsageError(name,
                           "--traceparent: not a W3C trace context "
                           "(00-<32 hex>-<16 hex>-<2 hex>)");
  }
  if (!(f.timeout_s > 0)) {
    return cli::UsageError(name, "--timeout: must be greater than 0");
  }
  if (!(f.connect_timeout_s > 0)) {
    return cli::UsageError(name, "--connect-timeout: must be greater than 0");
  }
  return 0;
}

// Creates the producer; 0, or the exit code of a one-line error (2 for an
// option the producer refuses, 1 otherwise).
int MakeProducer(const std::string& name, const PushFlags& f,
                 const cli::BrokerSource& source, int64_t timeout_us,
                 std::unique_ptr<Producer>* out) {
  ProducerOptions opts;
  opts.brokers = source.endpoints;
  if (int rc = cli::ResolveCurveClient(name, f.curve, source, &opts.curve)) {
    return rc;
  }
  opts.ack_timeout_ms = f.ack_timeout_ms;
  opts.heartbeat_ms = f.heartbeat_ms;
  opts.default_timeout_ms = std::max<int64_t>(1, timeout_us / 1000);
  opts.max_batch = static_cast<size_t>(f.max_batch);
  opts.linger_us = f.linger_us;
  if (f.show_progress) {
    opts.on_progress = [](const ProgressUpdate& p) {
      std::fprintf(stderr, "progress %s %.2f %s\n", p.id.ToString().c_str(),
                   static_cast<double>(p.fraction), p.message.c_str());
    };
  }
  auto created = Producer::Create(std::move(opts));
  if (!created.ok()) {
    if (created.status().code() == StatusCode::kInvalidArgument) {
      return cli::UsageError(name, created.status().message());
    }
    std::cerr << name << ": error: " << created.status().ToString() << "\n";
    return 1;
  }
  *out = std::move(created).value();
  return 0;
}

// One run: submits the jobs, waits for their outcomes, reports.
class PushRun {
 public:
  PushRun(const PushFlags& f, Producer* producer)
      : f_(f),
        producer_(producer),
        payload_(f.payload_opt->count() > 0 ? f.payload_text
                                            : TextPayload(f.size)),
        total_(static_cast<uint64_t>(f.count)),
        tally_(f.traceparent),
        progress_(total_, ::isatty(STDERR_FILENO) == 1) {
    spec_.task = f.task;
    spec_.queue = f.queue;
    spec_.payload = AsBytes(payload_);
    spec_.priority = static_cast<uint8_t>(f.priority);
    spec_.max_attempts = static_cast<uint16_t>(f.max_attempts);
    spec_.run_timeout_ms = f.run_timeout_ms;
    spec_.lock_key = f.lock_key;
    spec_.traceparent = f.traceparent;
    start_us_ = MonoMicros();
    start_unix_ms_ = UnixMillis();
    run_deadline_us_ = start_us_ + TimeoutUs(f);
  }

  static int64_t TimeoutUs(const PushFlags& f) {
    return static_cast<int64_t>(f.timeout_s * 1e6);
  }

  void SubmitAll();
  void Drain();
  // Prints the figures (after the producer closed); returns the exit code.
  int Report(const ProducerCounters& pc) const;

  Progress& progress() { return progress_; }

 private:
  // Whether the job to submit next must wait for its send time (--rate);
  // sleeps until then (at most until `tick`). *late_us: how late it is.
  bool WaitForSendTime(int64_t now, int64_t tick, int64_t* late_us);
  void SubmitOne(int64_t now, int64_t late_us);
  void FlushIds();
  void PrintTable(std::FILE* out, uint64_t completed, uint64_t failed,
                  uint64_t lost, uint64_t unsent, double jobs_per_s,
                  double elapsed_s, const ProducerCounters& pc) const;

  const PushFlags& f_;
  Producer* producer_;
  const std::string payload_;
  const uint64_t total_;
  JobSpec spec_;
  Tally tally_;
  Progress progress_;
  int64_t start_us_ = 0;
  int64_t start_unix_ms_ = 0;
  int64_t run_deadline_us_ = 0;
  int64_t first_submit_us_ = 0;
  uint64_t submitted_ = 0;
  bool stopped_ = false;
  std::vector<std::string> ids_;  // --print-ids --json
};

bool PushRun::WaitForSendTime(int64_t now, int64_t tick, int64_t* late_us) {
  *late_us = 0;
  if (!(f_.rate > 0) || submitted_ == 0) return false;
  const int64_t due_us =
      first_submit_us_ +
      static_cast<int64_t>(static_cast<double>(submitted_) * 1e6 / f_.rate);
  if (due_us > now) {
    FlushIds();
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::min(due_us, tick) - now));
    return true;
  }
  *late_us = now - due_us;
  return false;
}

// --print-ids: the ids printed so far reach a pipe before each wait, not only
// every 4 KiB or at exit (a script reads them while the jobs run).
void PushRun::FlushIds() {
  if (f_.print_ids && !f_.json) std::fflush(stdout);
}

void PushRun::SubmitOne(int64_t now, int64_t late_us) {
  spec_.id = JobId::Random();
  if (f_.print_ids && f_.json) {
    ids_.push_back(spec_.id.ToString());
  } else if (f_.print_ids) {
    std::printf("%s\n", spec_.id.ToString().c_str());
  }
  spec_.created_ms =
      start_unix_ms_ + (now - start_us_) / 1000;  // no 2nd clock read
  const int64_t job_timeout_ms =
      std::max<int64_t>(1, (run_deadline_us_ - now) / 1000);
  Tally* tally = &tally_;
  producer_->Submit(
      spec_,
      [tally, late_us](const JobOutcome& o) { tally->OnOutcome(o, late_us); },
      job_timeout_ms);
  if (submitted_ == 0) first_submit_us_ = now;
  ++submitted_;
}

// Submit: bounded by the window, paced by the rate (jobs due by now go out
// at once, so pacing costs no syscall per job at high rates).
void PushRun::SubmitAll() {
  const uint64_t win = static_cast<uint64_t>(f_.window);
  const uint64_t refill = std::clamp<uint64_t>(win / 8, 1, 256);
  while (submitted_ < total_) {
    if (StopRequested()) {
      stopped_ = true;
      break;
    }
    int64_t now = MonoMicros();
    if (now >= run_deadline_us_) break;
    progress_.Maybe(now, submitted_, tally_);
    const int64_t tick = std::min(run_deadline_us_, now + kProgressEveryUs);
    if (submitted_ - std::min(submitted_, tally_.done()) >= win) {
      // Full: wait until a chunk of the window is free, so that jobs go out
      // in bursts (bigger batches, one wake-up per chunk, not per job).
      FlushIds();
      tally_.WaitDone(submitted_ - win + refill, tick);
      continue;
    }
    int64_t late_us = 0;
    if (WaitForSendTime(now, tick, &late_us)) continue;
    SubmitOne(now, late_us);
  }
}

// Drain: every job gets an outcome by the run's deadline (its own timeout).
void PushRun::Drain() {
  FlushIds();
  while (tally_.done() < submitted_) {
    if (StopRequested()) {
      stopped_ = true;
      break;
    }
    const int64_t now = MonoMicros();
    if (now >= run_deadline_us_ + kDeadlineGraceUs) break;
    progress_.Maybe(now, submitted_, tally_);
    (void)producer_->Flush(kProgressEveryUs / 1000);
  }
}

int PushRun::Report(const ProducerCounters& pc) const {
  const uint64_t completed = tally_.completed();
  const uint64_t failed = tally_.failed() + tally_.rejected();
  // Jobs never submitted because the run's time ran out had no answer either.
  const uint64_t unsent = stopped_ ? 0 : total_ - submitted_;
  const uint64_t lost = tally_.lost() + unsent;
  const uint64_t answered = tally_.completed() + tally_.failed();
  const int64_t last_us = tally_.last_answer_us();
  const double elapsed_s = (answered > 0 && last_us > first_submit_us_)
                               ? (last_us - first_submit_us_) / 1e6
                               : 0.0;
  const double jobs_per_s = elapsed_s > 0 ? answered / elapsed_s : 0.0;

  if (f_.json) {
    nlohmann::json out = {
        {"submitted", submitted_},
        {"completed", completed},
        {"failed", failed},
        {"lost", lost},
        {"jobs_per_s", jobs_per_s},
        {"latency_us", LatencyJson(tally_.latency())},
        {"rejected", tally_.rejected()},
        {"unsent", unsent},
        {"duplicates", pc.duplicates},
        {"resent", pc.resent},
        {"busy", pc.busy},
        {"unavailable", pc.unavailable},
        {"elapsed_s", elapsed_s},
        {"interrupted", stopped_},
        {"failures", tally_.failures().Json()},
    };
    if (f_.print_ids) out["ids"] = ids_;
    if (!tally_.trace_id().empty()) {
      out["trace_id"] = tally_.trace_id();
      out["traced"] = tally_.traced();
    }
    std::cout << out.dump() << std::endl;
  } else {
    std::fflush(stdout);  // the ids first
    PrintTable(f_.print_ids ? stderr : stdout, completed, failed, lost, unsent,
               jobs_per_s, elapsed_s, pc);
  }
  if (lost > 0) return 1;
  return failed > 0 && !f_.allow_failures ? 1 : 0;
}

void PushRun::PrintTable(std::FILE* out, uint64_t completed, uint64_t failed,
                         uint64_t lost, uint64_t unsent, double jobs_per_s,
                         double elapsed_s, const ProducerCounters& pc) const {
  const Histogram& h = tally_.latency();
  std::fprintf(out, "%-12s %12" PRIu64 "\n", "submitted", submitted_);
  std::fprintf(out, "%-12s %12" PRIu64 "\n", "completed", completed);
  std::fprintf(
      out, "%-12s %12" PRIu64 "%s\n", "failed", failed,
      tally_.rejected()
          ? (" (" + std::to_string(tally_.rejected()) + " rejected)").c_str()
          : "");
  std::fprintf(
      out, "%-12s %12" PRIu64 "%s\n", "lost", lost,
      unsent ? (" (" + std::to_string(unsent) + " never sent)").c_str() : "");
  std::fprintf(out, "%-12s %12.0f jobs/s over %.3f s\n", "throughput",
               jobs_per_s, elapsed_s);
  std::fprintf(out, "%-12s %10s %10s %10s %10s\n", "latency_us", "p50", "p99",
               "p99.9", "max");
  std::fprintf(
      out, "%-12s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n",
      "", h.Percentile(0.50), h.Percentile(0.99), h.Percentile(0.999), h.max());
  if (pc.resent || pc.busy || pc.duplicates) {
    std::fprintf(out,
                 "%-12s %" PRIu64 " resent, %" PRIu64 " busy replies, %" PRIu64
                 " duplicate results\n",
                 "retries", pc.resent, pc.busy, pc.duplicates);
  }
  tally_.failures().Print(out);
  if (stopped_)
    std::fprintf(out, "interrupted: unanswered jobs count as lost\n");
  std::fflush(out);
}

}  // namespace

int RunPush(int argc, char** argv) {
  CLI::App app{"Submit jobs to brokers and report throughput and latency."};
  PushFlags f;
  cli::AddBrokerSourceFlags(app, "frontend", &f.connect, &f.discover,
                            &f.redis_auth);
  AddLoadFlags(app, &f);
  AddProducerFlags(app, &f);
  cli::AddCurveClientFlags(app, &f.curve);
  int exit_code = 0;
  if (!cli::Parse(app, argc, argv, &exit_code)) return exit_code;
  const std::string name = app.get_name();
  if (int rc = CheckFlags(name, f)) return rc;

  cli::StartLogging("push", f.log);
  cli::BrokerSource source;
  if (int rc = cli::ResolveBrokerSource(
          name, f.connect, f.discover, f.redis_auth, Discovery::Side::kFrontend,
          f.queue.empty() ? "default" : f.queue, 10000, &source)) {
    return rc;
  }
  InstallStopHandlers();
  std::unique_ptr<Producer> producer;
  if (int rc =
          MakeProducer(name, f, source, PushRun::TimeoutUs(f), &producer)) {
    return rc;
  }
  if (source.discovery) {
    Producer* p = producer.get();
    source.discovery->Start(
        [p](const std::vector<std::string>& set) { p->SetBrokers(set); });
  }

  if (Status st = WaitForBrokers({producer.get()}, source.endpoints,
                                 f.connect_timeout_s);
      !st.ok()) {
    // Some but not all answered: the run goes on with those.
    if (producer->counters().live_brokers == 0) {
      std::cerr << name << ": error: " << st.message() << "\n";
      return 2;
    }
    std::cerr << name << ": warning: " << st.message() << "\n";
  }

  PushRun run(f, producer.get());
  run.SubmitAll();
  run.Drain();
  source.discovery.reset();  // it calls the producer
  producer->Close();         // unanswered jobs time out now: lost
  run.progress().Clear();
  return run.Report(producer->counters());
}

}  // namespace yard
