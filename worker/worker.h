// Worker: runs job handlers for one or more brokers.
//
// One I/O thread (the one that calls Run) owns a DEALER socket per broker.
// Jobs run on a TBB task_arena of `concurrency` threads; finished results
// come back to the I/O thread through a concurrent queue plus an eventfd
// wake-up, and leave coalesced into one Results message per broker per
// loop turn. Credit-based flow control: the worker grants each broker
// credit for free slots (concurrency + prefetch in all) and every result
// returns one slot; a broker never sends more than granted.
//
// Liveness: the worker heartbeats every broker; a broker silent for
// kHeartbeatLiveness intervals is presumed dead and the worker reconnects on
// a fresh socket and registers again (Ready). Jobs that broker had given it
// still finish, and their results are sent on the new socket.
//
// Handlers: a handler gets a JobContext and returns the output bytes;
// throwing an exception makes a Failed result carrying e.what(). A job whose
// task has no handler gets an UnknownTask result; a job past its deadline
// gets Expired without running.
//
// Thread-safety: Register before Run. Stop() may be called from any thread
// or a signal-driven loop; Run() returns after a graceful drain.
#ifndef YARD_WORKER_WORKER_H_
#define YARD_WORKER_WORKER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/job_id.h"
#include "common/status.h"
#include "schemas/codec.h"
#include "schemas/frames.h"

namespace yard {

struct JobContext {
  JobId id;
  std::string_view task;
  std::string_view queue;
  Bytes payload;
  uint16_t attempt = 1;
  int64_t deadline_ms = 0;  // Unix ms; 0: none
  const wire::Job* job = nullptr;  // every header field; valid during the call
};

using Handler = std::function<std::string(const JobContext&)>;

struct WorkerOptions {
  std::vector<std::string> brokers;   // backend endpoints
  int concurrency = 0;                // 0: hardware threads
  int prefetch = 64;                  // slots granted beyond concurrency
  int64_t heartbeat_ms = 1000;
  int64_t drain_timeout_ms = 30000;   // how long Stop waits for running jobs
  size_t max_result_batch = 512;
  std::string name;                   // default: host:pid
  std::vector<std::string> tags;
  std::vector<std::string> taints;
  Limits limits;
  // Share the caller's context (needed for inproc:// endpoints); null: own.
  zmq::context_t* context = nullptr;
};

struct WorkerCounters {
  uint64_t jobs_received = 0;
  uint64_t jobs_ok = 0;
  uint64_t jobs_failed = 0;      // handler threw, unknown task, expired
  uint64_t bad_frames = 0;       // inbound messages refused by Decode
  uint64_t reconnects = 0;
};

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // REQUIRES: before Run().
  void Register(std::string task, Handler handler);

  // Connects and serves until Stop() or a stop signal (common/signals.h),
  // then drains: stops taking credit, finishes running and prefetched jobs
  // (up to drain_timeout_ms), sends their results, sends Disconnect.
  // InvalidArgument for a bad endpoint.
  Status Run();
  void Stop();

  // Safe to call from any thread; values are approximate while running.
  WorkerCounters counters() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// echo (returns the payload), sleep (payload = milliseconds, as text),
// sha256 (hex digest of the payload), fail (always throws).
void RegisterBuiltinHandlers(Worker& worker);

}  // namespace yard

#endif  // YARD_WORKER_WORKER_H_
