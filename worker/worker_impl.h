// Private to the worker: included only by worker/worker*.cc. Callers use
// worker/worker.h (which says what the worker does; this says how).
//
// Three kinds of thread share a Worker::Impl:
//   caller threads  Register (before Run), Stop, SetBrokers, counters;
//   the I/O thread  the one that calls Run: every socket, the credit, the
//                   broker set, collecting and sending results;
//   runner threads  concurrency_ long-lived tasks in a TBB arena that run
//                   handlers (Execute).
// Jobs go to runners through run_queue_ and come back through done_queue_;
// Dispatch frames stay alive in a Batch until their last job is answered.
//
// The definitions are split by concern:
//   worker.cc          the public API, construction, Run (setup, the loop,
//                      the drain) and Shutdown
//   worker_runners.cc  the runner side: parking, Execute, handing results
//                      back and waking the I/O thread
//   worker_brokers.cc  sockets, Ready, sends, inbound messages (Dispatch),
//                      the broker set, heartbeats and reconnects
//   worker_credit.cc   how the slots are split among brokers: Rebalance,
//                      Regrant, Withdraw
//   worker_results.cc  collecting results from runners, batching them into
//                      Results messages, Answered
#ifndef YARD_WORKER_WORKER_IMPL_H_
#define YARD_WORKER_WORKER_IMPL_H_

#include <tbb/concurrent_queue.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"
#include "link/broker_link.h"
#include "link/broker_set.h"
#include "schemas/codec.h"
#include "worker/worker.h"

namespace yard::worker_internal {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return std::hash<std::string_view>{}(s);
  }
};

// At most one log line per second per kind of trouble, so a misbehaving peer
// cannot flood the log; the next line says how many were skipped.
class LogLimiter {
 public:
  bool Allow(int64_t now_ms, uint64_t* suppressed) {
    if (now_ms < next_ms_) {
      ++suppressed_;
      return false;
    }
    next_ms_ = now_ms + 1000;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  int64_t next_ms_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace yard::worker_internal

namespace yard {

class Worker::Impl {
 public:
  explicit Impl(WorkerOptions options);
  ~Impl();

  // Caller threads.
  void Register(std::string task, Handler handler,
                std::shared_ptr<const BatchHandler> batch);
  Status Run();  // the calling thread becomes the I/O thread
  void Stop();
  WorkerCounters counters() const;
  WorkerObservation Observe() const;
  void SetBrokers(std::vector<std::string> endpoints);

 private:
  using LogLimiter = worker_internal::LogLimiter;

  // Linger when closing sockets at the end of Run, so Disconnect goes out.
  static constexpr int kCloseLingerMs = 1000;
  // Room for the Results envelope and per-blob headers and padding, when
  // keeping a message under limits.max_frame_bytes.
  static constexpr size_t kEnvelopeSlackBytes = 256;
  static constexpr size_t kPerBlobSlackBytes = 32;
  // While jobs are still queued, results wait at most this long for more
  // results to share their Results message (Nagle-style coalescing: fewer,
  // larger messages both ways, since the broker's next Dispatch follows the
  // credit a Results message returns).
  static constexpr int64_t kMaxResultDelayUs = 1000;
  // A broker that used up its credit this recently counts as having work
  // (Rebalance), and a worker withdraws a broker's credit at most this often.
  static constexpr int64_t kHungryWindowMs = 200;

  // What the I/O thread wants from runners while it sleeps in poll.
  enum IoState : int {
    kIoAwake = 0,        // it will look at the done queue anyway
    kIoWakeOnAny = 1,    // wake it for any result
    kIoWakeOnBatch = 2,  // results are being held: wake it for a batch's
                         // worth, or when no job is left to start
  };

  // A task's outcomes and run times. Only the I/O thread writes them (as it
  // collects results: no locked instruction, no cache line shared between
  // runners); any thread reads.
  struct TaskMetrics {
    std::array<std::atomic<uint64_t>, 5> outcomes{};  // by wire::ResultStatus
    LatencyHistogram run_time;
    void CountOwned(wire::ResultStatus status) {
      const auto i = static_cast<size_t>(status);
      if (i >= outcomes.size()) return;
      outcomes[i].store(outcomes[i].load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
    }
  };
  struct Batch;

  // One dispatched job, from receipt until its result is sent. Lives inside
  // the Batch of the Dispatch message it came in.
  struct Job {
    Batch* batch = nullptr;
    const wire::JobBlob* blob = nullptr;  // points into batch->frame
    uint32_t broker = 0;
    uint64_t generation = 0;  // the broker's registration it came under
    std::string result;       // encoded JobResult blob, set by the runner
    // Also set by the runner, for the I/O thread's metrics.
    TaskMetrics* metrics = nullptr;
    wire::ResultStatus status = wire::ResultStatus::Ok;
    uint64_t duration_us = 0;
    bool ran = false;  // the handler ran (duration_us is its run time)
    // Set by the I/O thread when the broker sends Cancel for the job (it
    // took the job back); runners and handlers read it (JobContext::cancel).
    std::atomic<bool> cancel{false};
    // When its last progress report went out (the runner's only).
    int64_t last_progress_ms = 0;
  };

  // One inbound Dispatch message: the frame stays alive (and its payloads
  // are handed to handlers without a copy) until every job is answered.
  struct Batch {
    zmq::message_t frame;
    std::vector<Job> jobs;
    size_t unanswered = 0;  // I/O thread only
  };

  // The link (socket, liveness, heartbeats; `retired`: left the broker set,
  // gets no new credit and no reconnect, its socket stays while it answers
  // and holds jobs of ours), and the credit this worker keeps per broker.
  // I/O thread only.
  struct Broker : BrokerLink {
    Broker(std::string endpoint, int64_t heartbeat_us, uint32_t i)
        : BrokerLink(std::move(endpoint), heartbeat_us), index(i) {}
    uint32_t index = 0;
    uint64_t generation = 0;  // bumped by every Ready
    int64_t share = 0;        // slots this broker may hold (credit + held)
    // Demand (Rebalance): when a Dispatch last used up its credit.
    int64_t last_starved_ms = INT64_MIN / 2;
    int64_t last_withdraw_ms = INT64_MIN / 2;
    // Credit withdrawn that the broker may have used before the withdraw
    // reached it: jobs beyond the credit up to this are not violations.
    int64_t withdraw_grace = 0;
    int64_t credit = 0;  // granted to this registration, not yet used
    int64_t held = 0;    // its jobs accepted here, not yet answered
    int64_t last_ready_ms = 0;
    std::vector<Job*> pending;  // finished; results not sent yet
    int64_t oldest_pending_us = 0;
  };

  struct Registered;
  // One job on a runner, from its checks to its encoded result: Begin, the
  // handler (CallHandler, or a BatchHandler's answer given to Ran), Finish.
  // Holds the JobContext the handler sees; never moved.
  struct Execution {
    struct Sink : ProgressSink {
      void Report(float fraction, std::string_view message) override {
        owner->ReportProgress(*job, fraction, message);
      }
      Impl* owner = nullptr;
      Job* job = nullptr;
    };
    Execution(Impl* owner, Job& job);
    Execution(const Execution&) = delete;
    Execution& operator=(const Execution&) = delete;
    Job& job;
    JobContext ctx;
    Sink sink;
    TraceParentBuffer buffer;
    std::string_view attempt_traceparent;
    const Registered* registered = nullptr;  // null: unknown task
    wire::ResultStatus status = wire::ResultStatus::Ok;
    std::string output;
    std::string error;
    int64_t start_us = 0;
    uint64_t duration_us = 0;
  };

  // ---- Runner side (TBB arena threads; worker_runners.cc) ----
  // Most jobs a runner hands a BatchHandler at once, whatever it allows.
  static constexpr size_t kMaxBatchJobs = 64;
  void StartRunners();
  void WakeRunners(size_t jobs);
  void StopRunners();
  void RunnerLoop();
  // Runs one job start to end (the handler in this thread) and hands its
  // result back, unless its task has a BatchHandler: then it runs with the
  // queued jobs of its group (ExecuteBatch). Returns a job taken from the
  // queue that did not fit the batch, for the runner to run next; or null.
  Job* Execute(Job& job, Writer& writer);
  // The checks before a job runs (cancelled, expired, unknown task); true
  // when it may run, false with e's status and error set.
  bool Begin(Execution& e);
  void CallHandler(Execution& e);
  // The handler ended with `status` (output when Ok, else the reason) after
  // running since `start_us`.
  void Ran(Execution& e, wire::ResultStatus status, std::string_view data,
           int64_t start_us);
  // Encodes e's result into its job and counts it, then hands the job to the
  // I/O thread.
  void Finish(Execution& e, Writer& writer);
  Job* ExecuteBatch(Execution& first, Writer& writer);
  void PushDone(Job* job);
  void WakeIo();  // any thread
  // A handler's progress report for `job` (rate-limited per job), handed
  // to the I/O thread (progress_out_).
  void ReportProgress(Job& job, float fraction, std::string_view message);
  // I/O thread: sends the reports that came since the last turn, one
  // Progress message per broker (worker_results.cc).
  void FlushProgress();

  // ---- I/O thread: setup, the loop, the drain (worker.cc) ----
  Status ValidateOptions() const;
  // Raises TBB's thread limit, sets up the arena and starts the runners.
  void StartArena();
  // Opens a socket to every configured broker and registers with each
  // (Ready). InvalidArgument when an endpoint is refused.
  Status Connect();
  // One turn of the loop: the drain, broker-set changes, the poll, results,
  // credit, heartbeats. False when the drain is over.
  bool Turn();
  // Sleeps in poll until a socket, a runner or a timer needs the I/O thread,
  // then reads what came. False when poll failed: the turn starts over.
  bool Poll();
  // Tells runners when to wake the I/O thread (io_state_) and returns how
  // long poll may sleep.
  int64_t PrepareToSleep();
  void BeginDrain();
  void Shutdown();
  int64_t PollTimeoutMs() const;
  int64_t now_us() const { return now_ms_ * 1000; }

  // ---- I/O thread: sockets and messages (worker_brokers.cc) ----
  Status OpenSocket(Broker& b);
  void SendReady(Broker& b);
  bool Send(Broker& b, Bytes message, const char* what);
  // Logs a failed send (at most once a second); true when it went out.
  bool Sent(Broker& b, const Status& st, const char* what);
  void RebuildPollItems();
  void ReadBroker(Broker& b);
  void HandleFrame(Broker& b, zmq::message_t frame);
  void OnDispatch(Broker& b, zmq::message_t frame);
  // Sets the cancel flag of the named jobs b dispatched that are in hand.
  void OnCancel(Broker& b, const wire::Cancel* cancel);
  void ApplyBrokerSet();
  void Drop(Broker& b);
  void Housekeeping();
  // Brokers heard from, jobs in hand and draining, for Observe.
  void PublishLinks();
  void Reconnect(Broker& b);
  void Beat(Broker& b);

  // ---- I/O thread: credit (worker_credit.cc) ----
  // Splits the slots among the brokers in the set by demand (see the
  // definition).
  void Rebalance();
  bool Hungry(const Broker& b) const {
    return now_ms_ - b.last_starved_ms < kHungryWindowMs;
  }
  void Regrant();
  // Takes back n of b's unused credit (Credit.withdraw); returns n, or 0
  // when the message could not be sent.
  int64_t Withdraw(Broker& b, int64_t n);

  // ---- I/O thread: results (worker_results.cc) ----
  void CollectResults();
  bool ShouldFlush(const Broker& b, int64_t now_us) const;
  void FlushResults(Broker& b);
  void Answered(Broker& b, Job* job);

  struct Registered {
    Handler handler;
    std::shared_ptr<const BatchHandler> batch;  // null: one job at a time
    std::unique_ptr<TaskMetrics> metrics = std::make_unique<TaskMetrics>();
  };

  // ---- Fixed before Run starts the runners; read by every thread ----
  WorkerOptions options_;
  int concurrency_ = 1;
  int64_t slots_ = 1;  // concurrency + prefetch
  size_t max_result_batch_ = 1;
  std::unordered_map<std::string, Registered, worker_internal::StringHash,
                     std::equal_to<>>
      handlers_;              // Register (before Run); runners look tasks up
  TaskMetrics unknown_task_;  // jobs whose task has no handler

  // ---- Caller threads -> I/O thread ----
  std::atomic<bool> stop_{false};
  std::atomic<bool> ran_{false};
  BrokerSetMailbox new_set_;

  // ---- I/O thread <-> runner threads ----
  std::atomic<bool> abandon_{false};  // runners drop queued jobs
  // Results: a runner pushes to done_queue_, bumps uncollected_, then reads
  // io_state_; the I/O thread stores io_state_, then reads uncollected_
  // (all seq_cst), so either it sees the result or the runner wakes it.
  std::atomic<int> io_state_{kIoAwake};
  std::atomic<int64_t> uncollected_{0};  // results in done_queue_
  int64_t wake_batch_ = 1;               // results that make a batch (fixed)
  // Jobs: parking is explained in worker_runners.cc; a runner counts itself
  // in parked_ before its last look at queued_, the I/O thread bumps queued_
  // before it reads parked_ (seq_cst), so no pushed job is stranded.
  std::atomic<bool> runners_stop_{false};
  std::atomic<int> parked_{0};      // runners waiting for jobs
  std::atomic<int64_t> queued_{0};  // jobs in run_queue_
  std::atomic<int> live_tasks_{0};  // arena tasks not yet returned
  std::counting_semaphore<> unpark_{0};
  int wake_fd_ = -1;  // eventfd: any thread writes (WakeIo), I/O polls
  tbb::concurrent_queue<Job*> run_queue_;
  tbb::concurrent_queue<Job*> done_queue_;
  std::unique_ptr<tbb::global_control> tbb_limit_;  // set up by Run
  tbb::task_arena arena_;                           // initialized by Run

  // Counters: bumped by runners and the I/O thread, read by counters(); all
  // relaxed.
  std::atomic<uint64_t> jobs_received_{0};
  std::atomic<uint64_t> jobs_ok_{0};
  std::atomic<uint64_t> jobs_failed_{0};
  std::atomic<uint64_t> bad_frames_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> unexpected_{0};
  std::atomic<uint64_t> credit_violations_{0};
  std::atomic<uint64_t> jobs_cancelled_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> batched_jobs_{0};
  // Progress reports from runners to the I/O thread, guarded by
  // progress_mu_; at most kMaxProgressQueued wait (beyond: dropped).
  struct OutgoingProgress {
    uint32_t broker = 0;
    uint64_t generation = 0;
    ProgressUpdate update;
  };
  static constexpr size_t kMaxProgressQueued = 4096;
  std::mutex progress_mu_;
  std::vector<OutgoingProgress> progress_out_;
  // Set with a report queued (under progress_mu_), so that the I/O thread
  // takes the lock only when there is something to take.
  std::atomic<bool> progress_pending_{false};
  std::vector<OutgoingProgress> progress_local_;  // I/O thread
  // Published by the I/O thread every turn for Observe; relaxed.
  std::atomic<bool> running_{false};
  std::atomic<bool> draining_seen_{false};
  std::atomic<int> brokers_active_{0};
  std::atomic<int> brokers_connected_{0};
  std::atomic<int64_t> in_flight_{0};

  // ---- I/O thread only ----
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  std::vector<Broker> brokers_;
  std::vector<zmq_pollitem_t> poll_items_;
  bool poll_items_dirty_ = true;
  std::unordered_set<Batch*> live_batches_;
  int64_t outstanding_ = 0;  // accepted jobs not yet answered
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  int64_t now_ms_ = 0;
  uint64_t dispatch_messages_ = 0;
  uint64_t results_messages_ = 0;
  Writer writer_;
  BlobBatch results_;
  std::vector<std::string> task_names_;
  LogLimiter frame_log_;
  LogLimiter send_log_;
  LogLimiter protocol_log_;
};

}  // namespace yard

#endif  // YARD_WORKER_WORKER_IMPL_H_
