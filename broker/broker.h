// Broker: routes jobs from producers (frontend ROUTER) to workers (backend
// ROUTER) and results back, in one single-threaded event loop.
//
// Loop turn (like Redis's ae): poll both sockets with a timeout that ends at
// the next timer; read backend messages (results free credit), then
// frontend messages (submits), each up to a budget; dispatch ready jobs to
// workers with credit, in batches; flush per-producer outboxes (Accepted,
// Results, errors), so many replies to one producer share one message; run
// timers (heartbeats, worker expiry).
//
// State: the JobQueue holds every accepted job until it is finished; the
// broker holds only soft state that heartbeats rebuild: workers (credit,
// liveness) and which jobs are in flight on which worker, for which producer.
//
// Failure handling: a worker silent for kHeartbeatLiveness intervals is dead
// and its jobs go back to the front of the queue. An attempt that runs past
// its run timeout is taken back (retried or failed "timed out"; the worker
// hears Cancel), and a worker whose jobs keep timing out is quarantined
// (docs/adr/0014-run-timeouts.md). A full queue answers Busy
// with a retry-after. Every inbound frame is verified (codec.h) and a bad one
// gets an Error reply, a log line and a counter. Stop() drains: new submits
// get Unavailable; queued and running jobs finish, up to drain_timeout_ms;
// what is left is handed back to producers (Unavailable with ids), who
// resubmit elsewhere.
//
// Thread-safety: Run() on one thread; Stop() from any thread or signal.
#ifndef YARD_BROKER_BROKER_H_
#define YARD_BROKER_BROKER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "broker/producer_quotas.h"
#include "common/latency_histogram.h"
#include "common/status.h"
#include "queue/job_queue.h"
#include "queue/retry_policy.h"
#include "schemas/codec.h"
#include "schemas/frames.h"
#include "security/gatekeeper.h"

namespace yard {

struct BrokerOptions {
  std::string frontend;  // producers connect here
  std::string backend;   // workers connect here
  int64_t heartbeat_ms = 1000;
  size_t max_queue = 100000;  // jobs held (queued + running)
  // Bytes of jobs held in this process at most (frames of queued jobs, in
  // memory mode or until Redis has them, and jobs waiting for a worker);
  // beyond it submits are Busy. At least limits.max_frame_bytes.
  size_t max_queue_bytes = size_t{1} << 30;
  // Registered workers at most; a Ready beyond it is refused (Busy).
  size_t max_workers = 10000;
  // Per producer (CURVE key, or address without CURVE): a rate, a burst and
  // a cap on unfinished jobs (broker/producer_quotas.h); off by default.
  QuotaOptions quotas;
  size_t max_dispatch_batch = 256;
  int64_t drain_timeout_ms = 10000;
  uint32_t busy_retry_after_ms = 50;
  std::string balancer = "least-outstanding";
  // The host others reach this broker at, for the registry (durable mode):
  // the bound endpoints with their host replaced. Empty: the bound address
  // (a wildcard bind advertises this machine's host name).
  std::string advertise;
  // When a failed, orphaned or expired job runs again and when it is given
  // up (queue/retry_policy.h). The broker hands max_expiries to its durable
  // queue.
  RetryPolicy retry;
  // How long one attempt of a job may run once dispatched, for jobs that do
  // not set Job.run_timeout_ms; 0: such jobs have none. Past it the broker
  // sends the worker Cancel{id}, retries the job (an attempt, with backoff)
  // or fails it "timed out", and ignores the old attempt's late result.
  int64_t run_timeout_ms = 300000;
  // A worker whose jobs time out this many times in a row gets no new jobs
  // (quarantined) until it sends a result again; 0: never.
  uint32_t quarantine_after = 3;
  // Routing by task: a worker that lists tasks in its Ready is sent only
  // jobs of those tasks (one that lists none takes all). A job no live
  // worker runs waits for one this long, then fails "no worker runs task
  // NAME" (UnknownTask; a dead letter in durable mode); 0: at once.
  int64_t unroutable_timeout_ms = 60000;
  // Durable mode: a Redis URL switches the queue to Redis (the memory queue
  // otherwise). `redis.url` empty: memory mode.
  RedisQueueOptions redis;
  Limits limits;
  // A job whose not_before_ms is further ahead than this is refused
  // (BadBatch), so no producer parks jobs in the queue for years. 0: no cap.
  int64_t max_delay_s = 30 * 86400;
  // CURVE on both sockets when curve.secret_key_file is set: peers must
  // present a key of the right role (security/gatekeeper.h); SIGHUP re-reads
  // the key sets. Needs a context no other CURVE broker uses (one ZAP
  // handler per context).
  GatekeeperOptions curve;
  zmq::context_t* context = nullptr;  // share for inproc://; null: own
};

struct BrokerCounters {
  uint64_t submitted = 0;  // jobs in Submit messages
  uint64_t accepted = 0;
  uint64_t duplicates = 0;   // resubmits of held jobs
  uint64_t busy = 0;         // jobs refused: queue full (jobs or bytes)
  uint64_t busy_bytes = 0;   // of those, refused for max_queue_bytes
  uint64_t busy_quota = 0;   // of those, refused for a producer's quota
  uint64_t refused = 0;      // jobs refused: draining
  uint64_t unavailable = 0;  // jobs refused: the durable store is down
  uint64_t invalid = 0;      // jobs refused: over a limit or malformed
  uint64_t dispatched = 0;
  uint64_t completed = 0;  // results routed to producers
  uint64_t failed = 0;     // non-Ok results routed
  // Of those, the ones past their deadline before they could start.
  uint64_t expired = 0;
  uint64_t retried = 0;             // failed attempts scheduled again
  uint64_t redispatched = 0;        // jobs released by dead or leaving workers
  uint64_t results_unroutable = 0;  // late duplicates of finished jobs
  // Jobs failed because no live worker ran their task for
  // unroutable_timeout_ms (also counted in failed).
  uint64_t failed_no_worker = 0;
  // Results for a job from a peer it was not dispatched to: dropped.
  uint64_t results_foreign = 0;
  uint64_t cancels_refused = 0;  // Cancel of another producer's job
  // Jobs ended Cancelled: by a producer's or admin's Cancel (not counted in
  // failed), or answered Cancelled by their worker (counted in failed).
  uint64_t cancelled = 0;
  uint64_t cancels_unknown = 0;  // Cancel of a job this broker does not hold
  // Durable mode: cancels of jobs not held here, recorded in Redis for the
  // broker that holds them (answered Pending).
  uint64_t cancels_recorded = 0;
  uint64_t progress = 0;  // progress reports forwarded to producers
  // Reports about a job not running at the sender (another worker's, a
  // finished one, another attempt): dropped, answered NotFound.
  uint64_t progress_refused = 0;
  uint64_t sends_failed = 0;  // a peer gone or its pipe full
  uint64_t bad_frames = 0;    // refused by framing or Decode
  uint64_t unexpected = 0;    // valid kinds in the wrong place
  uint64_t workers_expired = 0;
  uint64_t workers_refused = 0;  // Ready beyond max_workers
  uint64_t poisoned = 0;         // jobs failed after retry.max_worker_deaths
  uint64_t timed_out = 0;        // attempts taken back past their run timeout
  // Results of attempts taken back (timed out): not stored nor forwarded.
  uint64_t results_late = 0;
  uint64_t quarantines = 0;  // workers put in quarantine
  // Messages, to see how well batching works (jobs per message).
  uint64_t frontend_in = 0;
  uint64_t backend_in = 0;
  uint64_t dispatch_out = 0;
  uint64_t frontend_out = 0;
};

// Latencies the loop records as jobs pass (common/latency_histogram.h);
// any thread may read them.
struct BrokerHistograms {
  // From the job's created_ms (the producer's clock) to its first dispatch.
  LatencyHistogram queue_wait;
  // Each attempt's run time as its worker measured it (JobResult).
  LatencyHistogram run_time;
  // From created_ms to the final result reaching this broker.
  LatencyHistogram end_to_end;
};

// What another thread (the metrics endpoint) sees of a running broker.
struct BrokerObservation {
  BrokerCounters counters;
  // StatsJson as the loop last published it; empty before Run.
  std::string stats_json;
  bool serving = false;  // Run's loop is turning
  int64_t age_ms = 0;    // since stats_json was published
};

class Broker {
 public:
  // Binds both sockets. InvalidArgument for a bad endpoint or option.
  static Result<std::unique_ptr<Broker>> Create(BrokerOptions options);
  ~Broker();

  // Endpoints as bound (tcp://127.0.0.1:* resolved to the port).
  const std::string& frontend_endpoint() const;
  const std::string& backend_endpoint() const;

  // Serves until Stop() or a stop signal, then drains. OK on a clean exit.
  Status Run();
  void Stop();

  BrokerCounters counters() const;
  // The Stats message body: queue, workers and counters as JSON. Loop
  // thread only (or before Run); other threads use Observe.
  std::string StatsJson() const;
  // Any thread: asks the loop to publish its stats and waits up to
  // `wait_ms` for it (the loop answers within one turn, at most ~100 ms
  // when idle); on timeout, the last published ones.
  BrokerObservation Observe(int64_t wait_ms) const;
  const BrokerHistograms& histograms() const;

 private:
  class Impl;
  explicit Broker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yard

#endif  // YARD_BROKER_BROKER_H_
