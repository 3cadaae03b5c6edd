// Worker: runs job handlers for one or more brokers.
//
// One I/O thread (the one that calls Run) owns a DEALER socket per broker.
// Jobs run on a TBB task_arena of `concurrency` threads; finished results
// come back to the I/O thread through a concurrent queue plus an eventfd
// wake-up, and leave coalesced into one Results message per broker per
// loop turn. While received jobs are still waiting to start, results are
// held up to 1 ms (or until a quarter of the broker's slots are done) so
// that results and the Dispatches they make room for travel in batches; a
// result with no job queued behind it leaves at once. Inbound Dispatch
// frames stay alive until their last job is answered: handlers see the
// payload in place, without a copy. Credit-based flow control: the worker
// grants each broker credit for free slots (concurrency + prefetch in all)
// and every result returns one slot; a broker never sends more than granted.
//
// Liveness: the worker heartbeats every broker; a broker silent for
// kHeartbeatLiveness intervals is presumed dead and the worker reconnects on
// a fresh socket and registers again (Ready). Jobs that broker had given it
// still finish, and their results are sent on the new socket.
//
// Handlers: a handler gets a JobContext and returns the output bytes;
// throwing an exception makes a Failed result carrying e.what(). A job whose
// task has no handler gets an UnknownTask result; a job past its deadline
// gets Expired without running. A task registered with a BatchHandler
// (the isolate pool's) runs with the jobs of its group already queued
// behind it, several at a time, each still checked and answered on its own.
//
// Cancel: a broker that takes a job back (past its run timeout) sends
// Cancel{ids}; each such job in hand gets its cancel flag set
// (JobContext::cancel). One not started yet is answered Cancelled without
// running; a running handler may poll ctx.Cancelled() and return early, and
// whatever it returns once the flag is set is answered Cancelled.
//
// Credit follows the work: every broker keeps one slot, so none
// starves, and the other slots are split equally among the brokers that
// have work (hold jobs of ours, or used up their credit in the last 200 ms);
// with none busy, equally among all. A broker above its share gives slots
// back: unused credit is withdrawn (Credit.withdraw) and its results return
// less credit (Results.withheld); only free slots are granted. The broker's
// implicit credit return (one per result) keeps each share topped up; the
// worker sends Credit for slots freed by jobs of an older registration
// (after a reconnect or a broker's Disconnect), which that broker no longer
// counts. A Dispatch beyond the granted credit still runs (no job is
// dropped) and is counted as a credit violation (except credit withdrawn
// while the broker was already using it).
//
// Draining (Stop() or a stop signal): no more Credit; jobs already received
// (running or prefetched) finish, up to drain_timeout_ms, and their results
// are sent; jobs that arrive during the drain are not started (the broker
// requeues them when it gets the Disconnect{"draining"} that ends the drain).
// Handlers still running when the drain times out are abandoned: their
// results are dropped and ~Worker waits for them to return.
//
// Thread-safety: Register before Run. Run at most once per Worker. Stop() and
// counters() may be called from any thread; Run() returns after a graceful
// drain. Handlers run concurrently and must be thread-safe. The worker
// raises TBB's process-wide max_allowed_parallelism (tbb::global_control) to
// at least concurrency + 1 while it lives, so every slot gets a thread.
#ifndef YARD_WORKER_WORKER_H_
#define YARD_WORKER_WORKER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/job_id.h"
#include "common/latency_histogram.h"
#include "common/status.h"
#include "common/trace_context.h"
#include "schemas/codec.h"
#include "schemas/frames.h"
#include "security/curve_keys.h"

namespace yard {

// Where a handler's progress reports go (JobContext::Progress); the worker
// gives each running job one.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void Report(float fraction, std::string_view message) = 0;
};

// A job's progress reports reach its producer at most this often; reports
// in between are dropped (the next one after the interval goes out).
inline constexpr int64_t kProgressIntervalMs = 100;

struct JobContext {
  JobId id;
  std::string_view task;
  std::string_view queue;
  Bytes payload;
  uint16_t attempt = 1;
  int64_t deadline_ms = 0;         // Unix ms; 0: none
  const wire::Job* job = nullptr;  // every header field; valid during the call
  // Set once the job is cancelled (by its owner, or taken back by the broker
  // past its run timeout); a long handler may poll it and return early.
  // Null when nothing can cancel the job.
  const std::atomic<bool>* cancel = nullptr;
  bool Cancelled() const {
    return cancel != nullptr && cancel->load(std::memory_order_relaxed);
  }
  // Reports how far the job is: `fraction` from 0 to 1 and a short message
  // (cut at kMaxProgressMessageBytes), delivered to the job's producer
  // (ProducerOptions::on_progress) at most once per kProgressIntervalMs.
  // In a child process (--isolate process) reports travel to the worker as
  // progress frames (worker/exec_frame.h); --exec handlers write those
  // frames themselves.
  ProgressSink* progress = nullptr;
  void Progress(double fraction, std::string_view message = {}) const {
    if (progress) progress->Report(static_cast<float>(fraction), message);
  }
  // W3C trace context (common/trace_context.h): the job's traceparent as
  // its producer sent it (empty: none), and this attempt's span id (0
  // without one). TraceParent() is what the handler passes on to what it
  // calls (the job's trace id and flags, this attempt's span as parent-id);
  // the result carries the same back to the producer. A job sent without
  // one is its own trace: TraceId() is then its job id, and TraceParent()
  // names a fresh span in that trace (JobTraceParent).
  std::string_view traceparent;
  uint64_t span_id = 0;
  std::string TraceParent() const {
    if (!traceparent.empty()) return ChildTraceParent(traceparent, span_id);
    return ChildTraceParent(JobTraceParent(id.hi, id.lo), NewSpanId());
  }
  std::string TraceId() const {
    if (!traceparent.empty()) return std::string(TraceIdOf(traceparent));
    return id.ToString();
  }
};

using Handler = std::function<std::string(const JobContext&)>;

// A handler may throw this to end its job with a status other than Failed
// (Cancelled, say); any other exception gives Failed with e.what().
class JobFailure : public std::runtime_error {
 public:
  JobFailure(wire::ResultStatus status, const std::string& reason)
      : std::runtime_error(reason), status_(status) {}
  wire::ResultStatus status() const { return status_; }

 private:
  wire::ResultStatus status_;
};

// How one job of a batch ended (BatchHandler): Ok with its output, or
// another status with the reason. `data` is valid during the call only.
struct JobAnswer {
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string_view data;
};

// A handler that can take several jobs at once (the isolate pool writes
// them to a child process together). run(jobs, finished) calls
// finished(i, answer) exactly once for each job, as soon as that job ends,
// and returns when all have; jobs[i] is not touched after finished(i).
// Jobs whose tasks were registered with the same BatchHandler may share a
// batch: a runner that takes one such job also takes the jobs of the group
// already queued behind it, up to max_jobs jobs or until their payloads
// reach max_payload_bytes. Each job is still checked (cancel, deadline)
// before it joins a batch.
struct BatchHandler {
  using Finished = std::function<void(size_t, const JobAnswer&)>;
  std::function<void(std::span<const JobContext* const>, const Finished&)> run;
  size_t max_jobs = 32;
  size_t max_payload_bytes = 1 << 20;
};

struct WorkerOptions {
  std::vector<std::string> brokers;  // backend endpoints
  int concurrency = 0;               // 0: hardware threads
  // Slots granted beyond concurrency. Large by default: tiny jobs need a deep
  // pipeline (see docs/adr/0004). For long or uneven jobs use 0, so no job
  // waits behind another on a busy worker while a second worker is idle.
  int prefetch = 256;
  int64_t heartbeat_ms = 1000;
  int64_t drain_timeout_ms = 30000;  // how long Stop waits for running jobs
  size_t max_result_batch = 512;
  std::string name;  // default: host:pid
  std::vector<std::string> tags;
  std::vector<std::string> taints;
  Limits limits;
  // CURVE on every socket to a broker when curve.enabled()
  // (security/curve_keys.h); plaintext otherwise.
  CurveClientOptions curve;
  // Share the caller's context (needed for inproc:// endpoints); null: own.
  zmq::context_t* context = nullptr;
};

struct WorkerCounters {
  uint64_t jobs_received = 0;
  uint64_t jobs_ok = 0;
  uint64_t jobs_failed = 0;  // handler threw, unknown task, expired
  uint64_t bad_frames = 0;   // inbound messages refused by Decode
  uint64_t reconnects = 0;
  uint64_t unexpected = 0;  // valid messages of a kind brokers never send
  uint64_t credit_violations = 0;  // jobs dispatched beyond the granted credit
  // Jobs a broker cancelled (Cancel{ids}: taken back past their run
  // timeout) that were answered Cancelled.
  uint64_t jobs_cancelled = 0;
  // Calls of BatchHandlers, and the jobs they took: jobs per batch is
  // batched_jobs / batches.
  uint64_t batches = 0;
  uint64_t batched_jobs = 0;
};

// What one task's jobs came to on this worker: counts by outcome (indexed
// by wire::ResultStatus) and their handlers' run times.
struct TaskObservation {
  std::string task;  // a registered handler's, or kUnknownTaskLabel
  std::array<uint64_t, 5> outcomes{};
  LatencyHistogram::Snapshot run_time;
};
inline constexpr std::string_view kUnknownTaskLabel = "_unknown";

// What another thread (the metrics endpoint) sees of a running worker.
struct WorkerObservation {
  WorkerCounters counters;
  bool running = false;       // Run's loop is turning
  bool draining = false;      // stopping: takes no new jobs
  int brokers = 0;            // in the broker set
  int brokers_connected = 0;  // heard from within the heartbeat liveness
  int64_t in_flight = 0;      // received, not answered yet
  int concurrency = 0;
  int64_t slots = 0;  // concurrency + prefetch
  std::vector<TaskObservation> tasks;
};

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // REQUIRES: before Run(). With `batch`, queued jobs of the task run
  // through it, several at a time (BatchHandler); `handler` is unused then.
  void Register(std::string task, Handler handler,
                std::shared_ptr<const BatchHandler> batch = nullptr);

  // Connects and serves until Stop() or a stop signal (common/signals.h),
  // then drains: stops taking credit, finishes running and prefetched jobs
  // (up to drain_timeout_ms), sends their results, sends Disconnect.
  // InvalidArgument for a bad endpoint or option; OK after the drain (also
  // when the drain timed out).
  Status Run();
  void Stop();
  // Replaces the broker set (discovery, registry/registry.h); any thread, any
  // time after construction. New brokers are connected and registered;
  // the slots are split again; brokers that left get no new credit and are
  // dropped once they hold nothing of ours or go silent (results of their
  // jobs are then dropped: the queue runs those jobs again elsewhere).
  void SetBrokers(std::vector<std::string> endpoints);

  // Safe to call from any thread; values are approximate while running.
  WorkerCounters counters() const;
  WorkerObservation Observe() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// echo (returns the payload), sleep (payload = milliseconds, as text),
// sha256 (hex digest of the payload), fail (always throws), hang (runs until
// the job is cancelled, at most an hour; for run-timeout tests).
void RegisterBuiltinHandlers(Worker& worker);

}  // namespace yard

#endif  // YARD_WORKER_WORKER_H_
