// Producer: submits jobs to one or more brokers and delivers each job's
// outcome exactly once to the caller.
//
// A background I/O thread owns one DEALER socket per broker. Submit() hands
// jobs to it through a concurrent queue; it coalesces whatever is waiting
// into Submit messages of up to max_batch jobs, spreading them over live
// brokers. The producer keeps every job until its result arrives, and resends
// it, with the same id, when: no Accepted came within ack_timeout_ms; the
// broker said Busy (after retry_after_ms, with backoff); the broker said
// Unavailable; or the broker holding it stopped answering heartbeats. So a
// broker's death neither loses nor (from the caller's view) duplicates a job:
// the first result per id wins, later ones are counted as duplicates.
//
// Each job has a deadline (the per-call timeout): with no result by then the
// outcome is kTimedOut. Callbacks run on the I/O thread: keep them short,
// and do not call Flush() from one (it would wait for itself).
//
// Liveness: a broker counts as live once it has answered on the current
// socket (the producer heartbeats each broker every heartbeat_ms, at once on
// start), and stops counting after kHeartbeatLiveness silent intervals; then
// its jobs go to other live brokers and its socket is replaced. Only live
// brokers get jobs; while none is, jobs wait (until their deadline).
//
// Refusals: a job with an empty task or a payload over limits.max_payload_bytes
// is kRejected without being sent; an Error{TooLarge, BadBatch, ...} naming
// job ids rejects those jobs. Busy and Unavailable are retried (see above).
//
// After Close(), Submit() delivers kTimedOut at once, on the calling thread.
//
// Thread-safety: all public methods are thread-safe.
#ifndef YARD_CLIENT_PRODUCER_H_
#define YARD_CLIENT_PRODUCER_H_

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/job_id.h"
#include "common/status.h"
#include "schemas/codec.h"
#include "schemas/frames.h"
#include "security/curve_keys.h"

namespace yard {

// A broker's answer to a Cancel (Producer::Cancel), one per job and broker
// that answered.
struct CancelReply {
  enum class Kind {
    kCancelled,  // the job is cancelled; its owner got a Cancelled result
    kRefused,    // not this producer's job (nor an admin's): Forbidden
    kNotFound,   // that broker does not hold it (finished, or elsewhere)
    // Durable mode: that broker does not hold it and recorded the cancel in
    // Redis for the broker that does; a kCancelled answer follows when
    // that broker has finished the job Cancelled (none if it finished
    // first, or the cancel was not its owner's).
    kRequested,
  };
  JobId id;
  Kind kind = Kind::kNotFound;
  std::string message;  // the broker's reason (refusals)
};
using CancelCallback = std::function<void(const CancelReply&)>;
// A running job's progress, as its handler reported it (JobContext::Progress
// in worker/worker.h): id, attempt, fraction (0..1) and message.
using ProgressCallback = std::function<void(const ProgressUpdate&)>;
// A broker's answer to Producer::RequestStats: its stats as one JSON object
// (the broker's StatsJson: queue, counters, workers, ...), or why it did not
// give them (`error` set, `json` empty; under CURVE only an admin key may
// read stats).
struct BrokerStatsReply {
  std::string endpoint;  // the frontend it came from
  std::string json;
  std::string error;
};
using StatsCallback = std::function<void(const BrokerStatsReply&)>;

struct ProducerOptions {
  std::vector<std::string> brokers;  // frontend endpoints
  int64_t ack_timeout_ms = 2000;
  int64_t heartbeat_ms = 1000;
  int64_t default_timeout_ms = 30000;
  // Run timeout of jobs whose JobSpec.run_timeout_ms is 0: how long one
  // attempt may run once a broker dispatched it. 0: the broker's default.
  uint32_t run_timeout_ms = 0;
  size_t max_batch = 256;
  // While jobs are being submitted continuously, the I/O thread waits up to
  // this long for a fuller batch before sending (fewer, bigger Submit
  // messages; fewer wake-ups). A job submitted after a quiet spell is sent at
  // once. 0: always send at once.
  int64_t linger_us = 200;
  Limits limits;
  // CURVE on every socket to a broker when curve.enabled()
  // (security/curve_keys.h); plaintext otherwise.
  CurveClientOptions curve;
  // Share the caller's context (needed for inproc:// endpoints); null: own.
  zmq::context_t* context = nullptr;
  // Called (on the I/O thread) for each answer to a Cancel; optional. A
  // job of this producer also ends through its own callback.
  CancelCallback on_cancel;
  // Called (on the I/O thread) for each progress report of a job of this
  // producer that has no outcome yet; optional. Reports are best effort:
  // at most one per job per 100 ms, and never after the job's outcome.
  ProgressCallback on_progress;
  // Called (on the I/O thread) for each broker's answer to RequestStats;
  // optional.
  StatsCallback on_stats;
};

struct JobOutcome {
  enum class Kind {
    kCompleted,  // handler returned; output holds its bytes
    kFailed,     // handler threw, unknown task, expired, cancelled: see error
    kTimedOut,   // no result within the job's timeout
    kRejected,   // the broker refused it for good (too large, invalid)
  };
  JobId id;
  Kind kind = Kind::kTimedOut;
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string output;
  std::string error;
  uint16_t attempt = 0;
  int64_t latency_us = 0;  // from Submit() to the result
  // Durable mode: the submit's idempotency key was already used within the
  // window; this is the result of that first job, whose id this is.
  JobId duplicate_of;
  // W3C trace context (common/trace_context.h): the attempt's, when its
  // worker sent one back (the job's trace id, the attempt's span id as
  // parent-id), else the job's own. Empty for a job sent without one (it
  // is its own trace: its trace id is its job id, JobTraceParent) and for a
  // job refused before it was encoded.
  std::string traceparent;
};

using OutcomeCallback = std::function<void(const JobOutcome&)>;

struct ProducerCounters {
  uint64_t submitted = 0;
  uint64_t accepted = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t timed_out = 0;
  uint64_t rejected = 0;
  uint64_t resent = 0;  // resubmissions with the same id
  uint64_t busy = 0;    // Busy replies
  // Jobs answered Unavailable (by a draining broker, or one whose Redis is
  // down); each is resent after a backoff.
  uint64_t unavailable = 0;
  uint64_t duplicates = 0;  // extra results for a finished id
  uint64_t in_flight = 0;   // submitted, no outcome yet
  // Error replies that name no job (frame-level refusals) and inbound frames
  // that do not decode or are not expected from a broker.
  uint64_t errors = 0;
  // Brokers that answer now (see Liveness above); a caller can wait for all
  // of them before it starts a run.
  uint64_t live_brokers = 0;
  uint64_t cancels_refused = 0;  // Cancel answered Forbidden
};

class Producer {
 public:
  // InvalidArgument for an empty broker list or a bad endpoint.
  static Result<std::unique_ptr<Producer>> Create(ProducerOptions options);
  ~Producer();  // Close()

  // Queues a job; a zero job.id gets a random one; an empty
  // job.traceparent stays empty (the job is its own trace: every hop logs
  // its id as the trace id, at no cost on the wire); a malformed
  // traceparent is rejected (kRejected). timeout_ms <= 0 means
  // options.default_timeout_ms. Returns the job id. The spec's views are
  // copied before Submit returns.
  JobId Submit(const JobSpec& job, OutcomeCallback done,
               int64_t timeout_ms = 0);
  std::future<JobOutcome> Submit(const JobSpec& job, int64_t timeout_ms = 0);
  // Fire and forget: retried until accepted; the outcome is only counted.
  // A batch: one call, one outcome per job (`done` is called for each).
  // Returns the ids in order. The jobs travel together when they can.
  std::vector<JobId> SubmitBatch(std::span<const JobSpec> jobs,
                                 OutcomeCallback done, int64_t timeout_ms = 0);
  std::vector<std::future<JobOutcome>> SubmitBatch(
      std::span<const JobSpec> jobs, int64_t timeout_ms = 0);
  JobId Push(const JobSpec& job);

  // Asks for these jobs to be cancelled, wherever they are: a job of this
  // producer not yet sent ends here at once; one a broker holds (waiting,
  // delayed or running) is cancelled by that broker. Either way its outcome
  // is kFailed with status Cancelled, exactly once (a result its worker
  // sends afterwards is dropped by the broker). Ids this producer does not
  // hold (another process's jobs: the same CURVE key, or an admin key) go
  // to every live broker. The brokers' answers come to
  // ProducerOptions::on_cancel. Returns at once.
  void Cancel(std::span<const JobId> ids);

  // Asks every live broker for its stats; each answers through
  // ProducerOptions::on_stats. Returns at once. Monitors (yard top, yard
  // dashboard) are producers that submit nothing.
  void RequestStats();

  // Blocks until every submitted job has an outcome or timeout_ms passes;
  // true when none is left.
  bool Flush(int64_t timeout_ms);
  // Stops the I/O thread; jobs without an outcome get kTimedOut.
  void Close();

  // Replaces the broker set (discovery, registry/registry.h): new endpoints
  // are connected; brokers that left get no new jobs, keep their socket
  // while they answer and hold jobs of ours, and are dropped after that
  // (a silent one's jobs are resent elsewhere, the same ids). Applied by
  // the I/O thread shortly after the call.
  void SetBrokers(std::vector<std::string> endpoints);

  // An outcome is counted before its callback runs or its future is ready;
  // in_flight drops after the callback returns (Flush waits for that).
  ProducerCounters counters() const;

 private:
  class Impl;
  explicit Producer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yard

#endif  // YARD_CLIENT_PRODUCER_H_
