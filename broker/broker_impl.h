// Broker::Impl, private to broker/: the broker's one event loop and what it
// keeps (workers, in-flight jobs, producers' outboxes, jobs waiting for a
// worker). Its definitions are split by concern:
//   broker.cc     setup, the loop (Run), timers, drain, stats, the facade
//   frontend.cc   producers: Submit, Cancel
//   backend.cc    workers: Ready, Credit, Results, departures
//   dispatch.cc   placing claimed jobs on workers (batched Dispatch), and
//                 the replies to each producer, coalesced per loop turn
//   auth.cc       CURVE: the Gatekeeper's setup, key reloads, and which
//                 role may send which message
//   run_timeouts.cc  run deadlines of dispatched jobs, taking back the
//                 late ones (Cancel to the worker, retry), quarantine
//   cancel.cc     a producer's or admin's Cancel, wherever the job is here
//   progress.cc   a worker's Progress, checked and forwarded to the owner
//
// Thread-safety: everything below belongs to the loop thread (Run), except
// stop_, serving_, stats_wanted_ and hist_ (atomics: any thread) and what
// snapshot_mu_ guards: the loop writes a copy of the counters every turn,
// and a copy of its stats JSON every heartbeat and whenever another thread
// asks (stats_wanted_, Observe), so readers never touch loop state.
#ifndef YARD_BROKER_BROKER_IMPL_H_
#define YARD_BROKER_BROKER_IMPL_H_

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <memory_resource>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "balancer/balancer.h"
#include "balancer/placement.h"
#include "broker/broker.h"
#include "broker/producer_quotas.h"
#include "broker/worker_table.h"
#include "common/audit.h"
#include "common/clock.h"
#include "common/heartbeat.h"
#include "common/signals.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "registry/registry.h"

namespace yard {
namespace broker_internal {

// A job's required tags and tolerations as views; false when it has none.
inline bool SelectorOf(const wire::Job& job,
                       std::vector<std::string_view>* tags,
                       std::vector<std::string_view>* tolerations) {
  auto add = [](const auto* from, std::vector<std::string_view>* to) {
    if (from) {
      for (const auto* s : *from) to->push_back(s->string_view());
    }
  };
  add(job.tags(), tags);
  add(job.tolerations(), tolerations);
  return !tags->empty() || !tolerations->empty();
}

// Microseconds from one Unix millisecond time to a later one; 0 when the
// clocks disagree (the producer's clock runs ahead of ours).
inline uint64_t ElapsedMicros(int64_t from_ms, int64_t to_ms) {
  return to_ms > from_ms ? static_cast<uint64_t>(to_ms - from_ms) * 1000 : 0;
}

// Messages read from one socket per loop turn before the other gets a turn.
constexpr int kReadBudget = 256;
// Logs about bad input are capped per second so a flood cannot fill disks.
constexpr int kBadInputLogsPerSecond = 20;

// Bytes of jobs the broker holds in its own memory count in one meter
// (BrokerOptions.max_queue_bytes): the inbound frames queued jobs point into
// (in memory mode, or until Redis has them) and the copies of claimed jobs
// waiting for a worker. Each holder adds its bytes when made and takes them
// off when destroyed, so the meter cannot drift from what is alive.

// An inbound frame, metered while anything points into it.
class MeteredFrame {
 public:
  MeteredFrame(zmq::message_t msg, size_t* meter)
      : msg_(std::move(msg)), meter_(meter) {
    *meter_ += msg_.size();
  }
  ~MeteredFrame() { *meter_ -= msg_.size(); }
  MeteredFrame(const MeteredFrame&) = delete;
  MeteredFrame& operator=(const MeteredFrame&) = delete;
  Bytes bytes() const { return {msg_.data<uint8_t>(), msg_.size()}; }
  size_t size() const { return msg_.size(); }

 private:
  zmq::message_t msg_;
  size_t* meter_;
};

// A copy of one job blob, metered while it lives.
class MeteredBlob {
 public:
  MeteredBlob(Bytes bytes, size_t* meter)
      : bytes_(AsString(bytes)), meter_(meter) {
    *meter_ += bytes_.size();
  }
  MeteredBlob(MeteredBlob&& other) noexcept
      : bytes_(std::move(other.bytes_)),
        meter_(std::exchange(other.meter_, nullptr)) {}
  MeteredBlob& operator=(MeteredBlob&& other) noexcept {
    if (this != &other) {
      Release();
      bytes_ = std::move(other.bytes_);
      meter_ = std::exchange(other.meter_, nullptr);
    }
    return *this;
  }
  ~MeteredBlob() { Release(); }
  Bytes bytes() const { return AsBytes(bytes_); }

 private:
  void Release() {
    if (meter_) *meter_ -= bytes_.size();
    meter_ = nullptr;
  }
  std::string bytes_;
  size_t* meter_;
};

// What the broker remembers about a dispatched job.
struct InFlight {
  uint64_t worker = 0;  // WorkerInfo::serial
  std::string route;    // producer identity; empty: another broker's
  uint16_t attempt = 1;
  uint16_t max_attempts = 1;
  int64_t deadline_ms = 0;  // monotonic; 0: no run timeout
  int64_t created_ms = 0;   // Job.created_ms, for the end-to-end latency
};

// A run deadline in the broker's min-heap. Entries are not removed when
// their job finishes: one is live only while inflight_ holds the same job
// with the same attempt and deadline (RunTimeouts compacts the heap).
struct RunDeadline {
  int64_t at = 0;
  JobId id;
  uint16_t attempt = 0;
  bool operator>(const RunDeadline& o) const { return at > o.at; }
};

// An attempt taken back past its run timeout whose worker has not answered
// yet: its slot stays counted against that worker (by serial) until it does.
struct AttemptKey {
  JobId id;
  uint16_t attempt = 0;
  bool operator==(const AttemptKey&) const = default;
};
struct AttemptKeyHash {
  size_t operator()(const AttemptKey& k) const {
    return JobIdHash()(k.id) ^ (size_t{k.attempt} * 0x9E3779B97F4A7C15ULL);
  }
};

// Replies waiting for one producer until the end of the loop turn.
struct Outbox {
  std::vector<JobId> accepted;
  std::vector<JobId> busy;
  std::vector<JobId> unavailable;
  BlobBatch results;
  std::vector<ProgressUpdate> progress;
  bool dirty = false;
};

}  // namespace broker_internal

class Broker::Impl {
  using InFlight = broker_internal::InFlight;
  using RunDeadline = broker_internal::RunDeadline;
  using AttemptKey = broker_internal::AttemptKey;
  using Outbox = broker_internal::Outbox;
  using MeteredBlob = broker_internal::MeteredBlob;
  using MeteredFrame = broker_internal::MeteredFrame;

 public:
  explicit Impl(BrokerOptions o)
      : options_(std::move(o)),
        own_context_(options_.context ? nullptr : new zmq::context_t(1)),
        context_(options_.context ? options_.context : own_context_.get()),
        frontend_(*context_, zmq::socket_type::router),
        backend_(*context_, zmq::socket_type::router),
        workers_(ExpiryMs(options_.heartbeat_ms)),
        rng_(std::random_device{}()) {}

  Status Init();

  // The queue first: destroying a Redis queue answers its pending
  // commands, and those callbacks use the broker's other members.
  ~Impl() { queue_.reset(); }

  Status Run();
  void Stop() { stop_.store(true); }
  BrokerCounters counters() const {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    return snapshot_;
  }
  std::string StatsJson() const;
  BrokerObservation Observe(int64_t wait_ms) const;
  const BrokerHistograms& histograms() const { return hist_; }

  const std::string& frontend_ep() const { return frontend_ep_; }
  const std::string& backend_ep() const { return backend_ep_; }

 private:
  // Frontend.
  void ReadFrontend();
  // `producer`: who the quotas count it against (ProducerOf).
  void OnSubmit(const std::string& route, const std::string& producer,
                std::shared_ptr<MeteredFrame> frame,
                const wire::Submit* submit);
  // The checks of one job of a Submit beyond Decode's: None, or the code
  // with *why set.
  wire::ErrorCode CheckSubmitted(const wire::Job& job, std::string* why) const;
  // How many of the Submit's first jobs the producer's quotas admit; the
  // rest are answered Busy with a retry-after.
  size_t AdmitByQuota(const std::string& route, const std::string& producer,
                      const wire::Submit* submit);
  // A producer's quota key: its CURVE key, or its address without CURVE.
  std::string ProducerOf(const RouterMessage& msg) const;
  bool IsAdmin(const RouterMessage& msg) const;
  // Which producer a route belongs to, so its finished jobs count back.
  void NoteProducer(const std::string& route, const std::string& producer);
  void ProducerFinished(const std::string& route, size_t n);
  // Answers every job of a Submit that cannot be taken now with `list`
  // (busy or unavailable) in the producer's outbox.
  void RefuseSubmit(const std::string& route, const wire::Submit* submit,
                    std::vector<JobId> Outbox::*list);
  // `producer`: the requester (ProducerOf); `admin`: may cancel any job.
  // (cancel.cc)
  void OnCancel(const std::string& route, const std::string& producer,
                bool admin, const wire::Cancel* cancel);
  // Where a job this broker holds is, and its owner's route (*owner).
  enum class Where : uint8_t { kNowhere, kQueued, kHeld, kRunning };
  Where Locate(const JobId& id, std::string* owner) const;
  // Ends a located job as Cancelled: the owner (and the canceller, when it
  // is another connection) gets the result; the queue forgets the job.
  void CancelJob(const JobId& id, Where where, const std::string& owner,
                 const std::string& canceller);
  // Whether `producer` on `route` submitted job `id` that came on
  // `owner_route` ("": another broker's): the same connection, or with
  // CURVE the same key (for another broker's job, the key on its durable
  // record).
  bool Owns(const std::string& route, const std::string& producer,
            std::string_view owner_route, const JobId& id) const;
  // Durable mode: a cancel of jobs this broker does not hold, recorded in
  // the queue for the broker that holds them; the canceller hears Pending
  // (or Forbidden, Busy, Unavailable) now, and the Cancelled result later.
  void RequestCancel(const std::string& route, const std::string& producer,
                     bool admin, std::vector<JobId> ids);
  // A recorded cancel of a job dispatched here (QueueEvents::CancelSink).
  bool CancelRecorded(const JobId& id);
  // Backend.
  void ReadBackend();
  void OnReady(std::string_view identity, const wire::Ready* ready);
  void OnResults(WorkerInfo* sender, const wire::Results* results);
  // Forwards each report of a job running at the sender (its current
  // attempt) to the job's producer; refuses the others (progress.cc).
  void OnProgress(WorkerInfo* sender, std::string_view identity,
                  const wire::Progress* progress);
  // A job's result to its producer (counted back against its quotas).
  void RouteResult(const std::string& route, Bytes result);
  // A result into route's outbox, sent now when the outbox is full.
  void SendResult(const std::string& route, Bytes result);
  // Run timeouts (run_timeouts.cc). Whether w may be given jobs now.
  static bool Eligible(const WorkerInfo& w) {
    return w.labels_ok && !w.quarantined;
  }
  // Sets f's run deadline (the job's run_timeout_ms, or the broker's).
  void ArmRunDeadline(const JobId& id, const wire::Job& job, InFlight* f);
  // Takes back every attempt past its run deadline.
  void RunTimeouts(int64_t now);
  void TakeBack(const JobId& id, const InFlight& f);
  // Tells f's worker to drop the attempt (Cancel, sent by SendCancels) and
  // keeps its slot counted until the worker answers (LateResult). Null when
  // the worker is gone.
  WorkerInfo* Recall(const JobId& id, const InFlight& f);
  void SendCancels();
  // A result of an attempt taken back: true when it was one (it returns
  // the worker's slot and is otherwise ignored).
  bool LateResult(WorkerInfo* sender, const JobId& id, uint16_t attempt);
  // The sender answered: it leaves quarantine.
  void Answered(WorkerInfo* w);
  void ForgetTakenBack(uint64_t serial);
  // `died`: the worker expired (not a graceful Disconnect); its jobs count
  // a death each, and a job at retry.max_worker_deaths fails instead of running
  // again (a poison job that crashes every worker it meets).
  void ReleaseWorkerJobs(uint64_t serial, bool died);
  // Outbound.
  // A claimed job the broker holds because it must wait for a worker.
  struct Held {
    JobId id;
    MeteredBlob blob;  // the Job flatbuffer
    uint16_t attempt = 1;
    std::string route;  // empty: another broker's producer
    // MonoMillis() when it last became unplaceable (0: it is not): a job
    // whose task no worker runs fails unroutable_timeout_ms after.
    int64_t since_ms = 0;
  };
  // The live workers one selector admits, and their slots as of a turn.
  struct Candidates {
    Selector selector;
    bool by_task = false;  // only workers that run `task` (task_routing_)
    std::string task;
    uint64_t roster = 0;
    uint64_t turn = 0;
    std::vector<WorkerInfo*> workers;
    std::vector<WorkerSlot> slots;
  };
  struct Outgoing {
    WorkerInfo* worker = nullptr;
    std::unique_ptr<BlobBatch> batch;
  };
  // Held jobs at most; then claiming stops. Jobs no live worker may take
  // have their own, larger bound, so that they do not stop the claims of
  // jobs that have a worker (their bytes count in memory_bytes_).
  static constexpr size_t kMaxHeld = 10000;
  static constexpr size_t kMaxUnplaceable = 100000;
  static constexpr size_t kMaxSelectors = 1024;
  static constexpr int64_t kUnroutableCheckMs = 250;  // FailUnroutable
  void Dispatch();
  // What became of a job Place routed: sent to a worker; to wait for
  // credit (waiting_) or for a worker its selector admits (unplaceable_);
  // or failed (a selector no worker can ever match: a job queued by an
  // older broker that did not check it).
  enum class Placed : uint8_t { kSent, kWait, kNoWorker, kFailed };
  Placed Place(const JobId& id, Bytes blob, uint16_t attempt,
               std::string_view route);
  // Keeps a job that must wait (kWait, kNoWorker) in waiting_ or
  // unplaceable_.
  void Hold(Placed placed, Held h);
  Candidates* CandidatesFor(const wire::Job& job);
  // Whether a worker that lists tasks runs `task` (one that lists none
  // runs every task).
  static bool Runs(const WorkerInfo& w, std::string_view task);
  // Fails held jobs whose task no live worker has run for
  // unroutable_timeout_ms (Timers).
  void FailUnroutable(int64_t now);
  // Ends a job for good: the result to its producer (when it is ours) and
  // to the queue (a dead letter in durable mode).
  void FailForGood(const JobId& id, std::string_view route, uint16_t attempt,
                   wire::ResultStatus status, const std::string& why);
  void RefreshSlots(Candidates* c);
  BlobBatch& OutgoingFor(WorkerInfo* w);
  void SendOutgoing();
  void RetryWaiting(size_t* free_credit);
  void FlushOutboxes();
  Outbox& OutboxFor(const std::string& route);
  void SendTo(zmq::socket_t& socket, std::string_view identity, Bytes body);
  void RefuseFrame(zmq::socket_t& socket, std::string_view identity,
                   wire::ErrorCode code, const std::string& why,
                   const char* side);
  void Timers(int64_t now);
  // CURVE (auth.cc). Before the sockets bind.
  Status InitCurve();
  // Whether the sender of `msg` may send `kind` on this side (always, without
  // CURVE); otherwise answers Forbidden (a backend sender is also dropped
  // from the worker table) and returns false.
  bool Admit(const RouterMessage& msg, wire::Body kind, bool frontend);
  // Re-reads the key sets after a SIGHUP.
  void ReloadKeysIfAsked();
  // This broker's record for the registry (registry/registry.h).
  nlohmann::json RegistryRecord() const;
  void HandBackEverything();
  // Nothing left that the broker must wait for before it exits.
  bool QueueDrained() const;
  void Snapshot();
  // Copies StatsJson for Observe (snapshot_mu_).
  void PublishStats();
  void SetServing(bool serving);

  BrokerOptions options_;
  // Bytes of jobs held in this process (MeteredFrame, MeteredBlob); first,
  // so that it outlives every holder.
  size_t memory_bytes_ = 0;
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_;
  zmq::socket_t frontend_;
  zmq::socket_t backend_;
  std::string frontend_ep_, backend_ep_;
  // CURVE; null when off. After the sockets: it goes before them.
  ProducerQuotas quotas_{options_.quotas};
  std::unordered_map<std::string, std::string> producer_of_route_;
  AuditLog audit_;
  std::unique_ptr<Gatekeeper> gate_;
  uint64_t reload_generation_ = 0;

  std::unique_ptr<JobQueue> queue_;
  // The durable queue's other side (queue_ itself); null: memory mode.
  QueueEvents* events_ = nullptr;
  std::unique_ptr<Balancer> balancer_;
  WorkerTable workers_;
  // Nodes from a recycling pool: no malloc per dispatched job.
  std::pmr::unsynchronized_pool_resource inflight_pool_;
  std::pmr::unordered_map<JobId, InFlight, JobIdHash> inflight_{
      &inflight_pool_};
  std::unordered_map<std::string, Outbox> outboxes_;
  // Run deadlines (a min-heap by `at`) and attempts taken back whose
  // worker has not answered (run_timeouts.cc).
  std::vector<RunDeadline> deadlines_;
  std::unordered_map<AttemptKey, uint64_t, broker_internal::AttemptKeyHash>
      taken_back_;
  std::vector<std::pair<uint64_t, JobId>> cancels_;
  int64_t now_mono_ = 0;  // MonoMillis() at the start of Dispatch
  int64_t now_unix_ = 0;  // UnixMillis() at the start of Dispatch
  // Worker deaths per job while it ran (ReleaseWorkerJobs).
  std::unordered_map<JobId, uint32_t, JobIdHash> deaths_;
  std::vector<std::string> dirty_;

  Writer writer_;
  std::vector<NewJob> new_jobs_;
  // Dispatch state (see Dispatch).
  uint64_t roster_ = 1;  // bumped when a worker joins, leaves or re-registers
  uint64_t tried_ = 0;   // roster_ when unplaceable_ was last looked at
  uint64_t turn_ = 0;    // Dispatch calls (slot snapshots are per turn)
  // Candidates by selector and, once a live worker lists tasks, task
  // (task_routing_); unlabeled_ serves jobs with neither. The last task
  // looked up without a selector is remembered (a batch is mostly one).
  std::map<std::string, Candidates, std::less<>> candidates_;
  Candidates unlabeled_;
  bool task_routing_ = false;
  uint64_t task_roster_ = 0;  // roster_ when task_routing_ was computed
  std::string last_task_;
  Candidates* last_task_candidates_ = nullptr;
  std::deque<Held> waiting_;      // a worker may take them; none can now
  std::deque<Held> unplaceable_;  // no live worker may take them
  std::vector<Outgoing> outgoing_;
  size_t outgoing_used_ = 0;
  uint64_t out_epoch_ = 1;  // bumped by SendOutgoing
  // Bumped whenever a worker's credit grows; jobs waiting for a busy worker
  // are tried again only then (RetryWaiting).
  uint64_t credit_epoch_ = 0, waiting_tried_ = 0;
  std::vector<JobId> ids_;
  std::mt19937_64 rng_;

  BrokerCounters c_;
  BrokerHistograms hist_;
  mutable std::mutex snapshot_mu_;
  mutable std::condition_variable published_cv_;
  BrokerCounters snapshot_;            // guarded by snapshot_mu_
  std::string published_stats_;        // guarded by snapshot_mu_
  uint64_t published_generation_ = 0;  // guarded by snapshot_mu_
  int64_t published_ms_ = 0;           // guarded by snapshot_mu_
  mutable std::atomic<bool> stats_wanted_{false};
  std::atomic<bool> serving_{false};

  const JobId instance_ = JobId::Random();  // this process's incarnation
  std::atomic<bool> stop_{false};
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  int64_t next_heartbeat_ms_ = 0;
  int64_t next_unroutable_ms_ = 0;
  // The earliest a held job's unroutable timeout can pass, and roster_ when
  // FailUnroutable last looked (FailUnroutable skips the rest).
  int64_t unroutable_due_ = std::numeric_limits<int64_t>::max();
  uint64_t unroutable_roster_ = 0;
  std::string advertised_frontend_, advertised_backend_;
  int64_t started_ms_ = 0;
  int64_t log_window_ms_ = 0;
  int logs_in_window_ = 0;
};

}  // namespace yard

#endif  // YARD_BROKER_BROKER_IMPL_H_
