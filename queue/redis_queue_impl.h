// Private to the durable queue: included only by queue/redis_queue*.cc.
// Callers use NewRedisQueue (queue/job_queue.h).
//
// The durable JobQueue on Redis Streams (layout: queue/redis_layout.h;
// decision and figures: docs/adr/0005-durable-queue-on-redis-streams.md).
//
// Three connections, all driven by the broker's zmq_poll:
//   main   submits (pipelined XADD; FCALL yard_submit for idempotent or
//          delayed jobs), finishes (one MULTI per loop turn: XACK+XDEL,
//          FCALLs for locked and failed jobs, results, forwards), lease
//          touches, maintenance and stats;
//   claim  XREADGROUP over the three priority streams, BLOCKing only when
//          the last read found nothing (a blocked read would stall the
//          pipeline of the main connection);
//   inbox  XREAD BLOCK on this broker's inbox: results of jobs it accepted
//          that another broker completed.
// In a Redis Cluster a fourth one reaches the registry's slot.
//
// Claimed jobs wait in a local buffer (strict priority with the memory
// queue's anti-starvation rule) until the broker dispatches them; the
// broker claims only what free worker credit can take. Every claimed job has
// a lease (its entry in the group's pending list) that this broker touches
// every lease/3; one broker, elected with a leader lock, reclaims expired
// leases and promotes delayed jobs.
//
// Redis lost (a connection broke, or a command went unanswered past its
// deadline, --redis-timeout-ms): the clients are dropped, submits are
// answered Unavailable,
// finishes wait in memory and are sent after the reconnect (XACK of a gone
// entry is a no-op, so resending is safe), buffered and running jobs keep
// their leases (the pending list survives a restart from the AOF).
//
// The definitions are split by concern:
//   redis_queue.cc              construction, Start, the loop's Tick and
//                               poll items, stats, NewRedisQueue
//   redis_queue_submit.cc       Push, WAIT, idempotent duplicates
//   redis_queue_claim.cc        claims, the read-back after a reconnect,
//                               the local buffer, draining, the inbox
//   redis_queue_finish.cc       Complete/Fail/Release/Cancel, write batches
//   redis_queue_maintenance.cc  lease touches, leader work, registry, stats
//   redis_queue_connection.cc   commands, connect, lost and down
#ifndef YARD_QUEUE_REDIS_QUEUE_IMPL_H_
#define YARD_QUEUE_REDIS_QUEUE_IMPL_H_

#include <array>
#include <charconv>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/job_id.h"
#include "common/status.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"
#include "redis/redis_target.h"
#include "schemas/codec.h"

namespace yard::redis_queue_internal {

inline constexpr int kLevels = kRedisPriorities;
inline constexpr int kStarvationLimit = 16;  // as the memory queue
inline constexpr int64_t kClaimBlockMs = 200;
// Pending entries read back per stream per command after a reconnect.
inline constexpr size_t kRereadPage = 1000;
inline constexpr int64_t kInboxBlockMs = 1000;
inline constexpr int64_t kPromoteEveryMs = 100;
inline constexpr int64_t kStatsEveryMs = 500;
// How often a broker reads the operator's controls (P ctl): a pause or a
// new rate takes effect within this long.
inline constexpr int64_t kControlEveryMs = 250;
inline constexpr int64_t kTrimDeadEveryMs = 1000;
inline constexpr int64_t kDedupeCheckEveryMs = 200;
inline constexpr size_t kTouchChunk = 1000;
inline constexpr size_t kMaintenanceBatch = 1000;
// Reconnects run on the broker's loop: one attempt (resolve, connect,
// set-up) at most every kReconnectMinMs, doubling to kReconnectMaxMs, each
// bounded by kReconnectBudgetMs (or the command deadline, if shorter), so
// heartbeats keep flowing while Redis is away
// (docs/adr/0015-redis-deadlines.md).
inline constexpr int64_t kReconnectMinMs = 500;
inline constexpr int64_t kReconnectMaxMs = 2000;
inline constexpr int64_t kReconnectBudgetMs = 500;
inline constexpr int64_t kInboxTtlMs = 60000;
inline constexpr char kInboxMaxLen[] = "1000000";

// A stream entry id "<ms>-<seq>".
// A stream entry: its id (ms-seq) and which of the priority streams it is
// in. Ids are unique per stream only: records added to two priority
// streams in the same millisecond share one, so the stream is part of the
// key.
struct EntryId {
  uint64_t ms = 0;
  uint64_t seq = 0;
  uint8_t stream = 0;  // priority level: keys_.stream[stream]
  bool operator==(const EntryId&) const = default;
  bool operator<(const EntryId& o) const {
    if (stream != o.stream) return stream < o.stream;
    return ms != o.ms ? ms < o.ms : seq < o.seq;
  }
  std::string ToString() const {
    return std::to_string(ms) + "-" + std::to_string(seq);
  }
  static std::optional<EntryId> Parse(std::string_view s) {
    EntryId e;
    size_t dash = s.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto a = std::from_chars(s.data(), s.data() + dash, e.ms);
    auto b = std::from_chars(s.data() + dash + 1, s.data() + s.size(), e.seq);
    if (a.ec != std::errc() || b.ec != std::errc() ||
        b.ptr != s.data() + s.size()) {
      return std::nullopt;
    }
    return e;
  }
};

struct EntryIdHash {
  size_t operator()(const EntryId& e) const {
    return static_cast<size_t>((e.ms * 0x9E3779B97F4A7C15ULL) ^ e.seq ^
                               (uint64_t{e.stream} << 56));
  }
};

// A claimed stream entry (a record of one or more jobs): the unit of lease
// and ack. It is acked when its last job is finished.
struct Entry {
  uint8_t pri = 1;
  uint16_t attempt = 1;     // delivery number of its jobs: failed attempts + 1
  uint32_t open = 0;        // jobs not finished yet
  bool locking = false;     // waiting for its per-key lock
  std::string lock_key;     // '' none (only one-job records have one)
  std::string owner;        // consumer name of the accepting broker
  std::string inbox;        // the owner's inbox key; '' when it is this broker
  std::string route;        // the producer, at the owner
  std::string owner_key;    // field o: the submitter's CURVE key, or ''
  std::vector<JobId> jobs;  // this broker's leases on the record's jobs
  std::shared_ptr<const std::string> packed;  // field p; leases point in
};

// A job of a claimed entry.
struct Lease {
  EntryId entry;
  std::string_view blob;  // the Job flatbuffer, inside the entry's `packed`
  bool dispatched = false;
  bool buffered = false;  // in ready_, waiting for dispatch
};

using EntryMap = std::unordered_map<EntryId, Entry, EntryIdHash>;
using EntrySet = std::unordered_set<EntryId, EntryIdHash>;
using LeaseMap = std::unordered_map<JobId, Lease, JobIdHash>;

// kCancelled: finished like kCompleted (result stored and forwarded), not
// counted as completed.
enum class Outcome : uint8_t {
  kCompleted,
  kRetry,
  kDead,
  kDropped,
  kCancelled
};

// Who recorded a cancel (P cx's value, msgpack [admin, key, broker, route,
// ms]; yard_cancel).
struct CancelRecord {
  bool admin = false;
  std::string key, broker, route;
};

// A submit answered DUP (its idempotency key or job id was queued before):
// it is answered with the first job's result once that exists.
struct DedupeWaiter {
  JobId dup;
  JobId first;
  std::string route;
  int64_t deadline_ms = 0;
  // Result buckets older than this were searched already (a result lands in
  // the bucket current when it is written, so later checks only look at
  // the newest buckets).
  int64_t from_bucket = INT64_MIN;
};

// Commands wrapped in one MULTI ... EXEC.
using Commands = std::vector<std::vector<std::string>>;

// A job's progress as last reported (StoreProgress): when it was last
// written, and whether a later report waits for its turn.
inline constexpr int64_t kProgressStoreEveryMs = 1000;
struct ProgressNote {
  int64_t written_ms = 0;
  bool held = false;
  float fraction = 0;
  std::string message;
};

// Writes of one loop turn, sent as one MULTI ... EXEC.
struct WriteBatch {
  std::array<std::vector<std::string>, kLevels> acks;  // entry ids
  std::vector<std::string> locked;                   // pri, entry id, lock key
  std::vector<std::string> fails;                    // yard_fail tuples
  std::array<std::vector<std::string>, 16> results;  // by id's first hex
                                                     // digit: id, blob
  std::map<std::string, std::vector<std::string>> forwards;  // inbox -> r,p..
  Commands progress;  // HSET + EXPIRE of P pg:<id> (StoreProgress)
  // Jobs finished while cancels are recorded: their records (if any) go,
  // so that a cancel that lost the race to a job's end does not keep
  // every claim checking P cx until it expires.
  std::vector<std::string> uncancel;
  int64_t completed = 0;
  int64_t finished = 0;  // jobs that leave the queue (queued -= finished)
  bool empty() const {
    for (const auto& a : acks) {
      if (!a.empty()) return false;
    }
    for (const auto& r : results) {
      if (!r.empty()) return false;
    }
    return locked.empty() && fails.empty() && forwards.empty() &&
           progress.empty() && uncancel.empty() && finished == 0;
  }
};

inline std::string_view AsView(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// One shard of a durable queue (NewRedisQueue makes one per shard).
// Threads: used from the broker's loop thread only (JobQueue calls, Tick,
// and the Redis replies that OnPollEvents hands to the callbacks), so
// nothing in it is locked.
class RedisQueue final : public DurableQueue {
 public:
  // Shard `shard` of `shards` of the queue (shards == 1: the whole queue).
  // The consumer name must be the same for every shard of one broker.
  RedisQueue(RedisQueueOptions o, RedisTarget target, int shard, int shards);
  ~RedisQueue() override;

  // Connects (blocking) and sets the queue up.
  Status Start();

  // JobQueue (queue/job_queue.h). Push: redis_queue_submit.cc; Claim,
  // BeginDrain, Drained: redis_queue_claim.cc; Complete, Fail, Release,
  // Cancel: redis_queue_finish.cc; Advertise: redis_queue_maintenance.cc;
  // the others: redis_queue.cc.
  void Push(std::span<const NewJob> jobs, PushCallback done) override;
  void Claim(size_t max, ClaimCallback done) override;
  void Complete(const JobId& id, Bytes result) override;
  void Fail(const JobId& id, int64_t retry_at_ms, Bytes result) override;
  void Release(std::span<const JobId> ids) override;
  std::optional<std::string_view> WaitingRoute(const JobId& id) const override;
  size_t Cancel(std::span<const JobId> ids,
                std::vector<JobId>* removed) override;
  bool CancelWaiting(const JobId& id, Bytes result) override;
  bool HasReady(int64_t now_ms) override;
  void DrainWaiting(const std::function<void(const ClaimedJob&)>& fn) override;
  QueueStats Stats() const override;
  bool available() const override;
  void SetResultSink(ResultSink sink) override;
  void SetCancelSink(CancelSink sink) override;
  void RequestCancel(std::span<const JobId> ids, const Canceller& who,
                     CancelCallback done) override;
  std::string_view OwnerKey(const JobId& id) const override;
  void StoreProgress(const JobId& id, float fraction,
                     std::string_view message) override;
  void Want(size_t n) override;
  int PollItems(zmq_pollitem_t* items, int max) override;
  void OnPollEvents(const zmq_pollitem_t* items, int n) override;
  void Tick(int64_t now) override;
  void BeginDrain() override;
  bool Drained() const override;
  void Advertise(const nlohmann::json& record) override;
  void DescribeStats(nlohmann::json* j) const override;

 private:
  // A submit batch, answered once all its commands (and its WAIT) are.
  struct PushBatch {
    std::vector<PushOutcome> out;
    PushCallback done;
    size_t jobs = 0;
    size_t waiting = 0;
    Status status;
    void Fail(const Status& s) {
      if (status.ok()) status = s;
    }
  };
  struct PushPlan;   // redis_queue_submit.cc
  struct ClaimPass;  // redis_queue_claim.cc

  struct Counters {
    uint64_t submitted = 0, claimed = 0, completed = 0, retried = 0, dead = 0;
    uint64_t stale = 0, leases_lost = 0, dup_dropped = 0, idempotent = 0;
    uint64_t undecodable = 0, parked = 0, reclaimed = 0, promoted = 0;
    uint64_t busy_batches = 0, reconnects = 0, commands = 0, round_trips = 0;
    uint64_t dead_brokers = 0;  // consumers reaped for lack of a record
    uint64_t tokens_taken = 0, tokens_refused = 0, dead_trimmed = 0;
    uint64_t cancelled = 0, cancels_refused = 0;  // recorded cancels (P cx)
  };

  // redis_queue_submit.cc: submits, WAIT, idempotent duplicates.
  Status PushRefusal() const;
  void PlanJob(const NewJob& j, size_t index, int64_t now,
               const std::shared_ptr<PushBatch>& batch, PushPlan& plan);
  void SendRecord(const std::shared_ptr<PushBatch>& batch, int pri,
                  const JobId& id, size_t n, std::string max, std::string lock,
                  std::string_view route, std::string_view owner,
                  std::string packed);
  void SendTracesAndStats(const PushPlan& plan);
  void SendSpecial(std::span<const NewJob> jobs,
                   const std::shared_ptr<PushBatch>& batch, PushPlan& plan);
  static std::vector<JobId> IdsOf(std::span<const NewJob> jobs);
  void FinishPush(PushBatch& b);
  void SendWait();
  void OnSpecialSubmit(const RedisReply& reply,
                       const std::vector<size_t>& index,
                       const std::vector<std::string>& routes,
                       const std::vector<JobId>& ids, PushBatch& batch);
  void CheckDedupe(int64_t now);
  void DedupeChecked(std::vector<DedupeWaiter>& batch,
                     const std::vector<std::string>& found, int64_t now,
                     int64_t searched_to);
  void AnswerDuplicate(const DedupeWaiter& w, std::string_view first_result);

  // redis_queue_claim.cc: claims, read-back, the local buffer, the inbox.
  void Buffer(const JobId& id, Lease& l, bool front);
  bool PopBuffered(JobId* id, Lease** lease);
  void MaybeClaim();
  void ClaimFailed(const Status& st, const char* what);
  void RereadPending();
  bool RereadDue() const;
  void EndReread();
  int LevelOf(const std::string& key) const;
  void OnClaimed(RedisReply& reply, const EntrySet* skip = nullptr);
  void TakeItem(int pri, RedisReply& item, const EntrySet* skip,
                ClaimPass& pass);
  void FillEntry(Entry& entry, int pri, RedisReply& fields);
  void LeaseJobs(const EntryId& eid, Entry& entry,
                 const std::vector<RecordJob>& jobs);
  void OnLocked(const std::vector<EntryId>& entries,
                const Result<RedisReply>& r);
  void Forget(EntryMap::iterator e);
  void ReadInbox();
  void OnInbox(const RedisReply& reply);

  // redis_queue_finish.cc: finishes and this turn's write batch.
  void FinishJob(LeaseMap::iterator it, Bytes result, Outcome outcome,
                 int64_t retry_at_ms);
  void AddFail(const JobId& id, const Lease& lease, const Entry& entry,
               Bytes result, Outcome outcome, int64_t retry_at_ms);
  void AckEntry(EntryMap::iterator e);
  void Flush();
  void AddGuard(const WriteBatch& b, Commands& cmds) const;
  void AddResults(WriteBatch& b, Commands& cmds);
  void AddProgress(const JobId& id, const ProgressNote& note);
  void EndProgress(const JobId& id, bool write_held);
  void SendMulti(Commands cmds);

  // redis_queue_maintenance.cc: lease touches, leader work, the registry
  // record, dead brokers, stats.
  void Touch(int64_t now);
  void OnTouched(const std::vector<EntryId>& sent, const RedisReply& reply);
  void Lead(int64_t now);
  void Promote(int64_t now);
  void Reap(int64_t now);
  void WriteRecord(int64_t now);
  void FindDeadConsumers(int64_t now);
  void CheckRegistered(std::map<std::string, int64_t> holders);
  void ReapConsumer(const std::string& who);
  void RefreshStats(int64_t now);

  // redis_queue_cancel.cc: cancels recorded in P cx.
  void CheckCancels(std::vector<JobId> ids);
  void OnCancelRecords(const std::vector<JobId>& ids, const RedisReply& reply);
  void CancelLeased(LeaseMap::iterator l, const CancelRecord& c);

  // redis_queue_control.cc: the operator's pause and rate limit, the
  // dead-letter cap.
  size_t Dispatchable(size_t max) const;
  void PollControl(int64_t now);
  void ApplyControl(const QueueControl& c);
  void TakeTokens(int64_t now);
  void TrimDead(int64_t now);

  // redis_queue_connection.cc: commands, connecting, losing Redis.
  void Send(std::vector<std::string> args, RedisClient::Callback done);
  RedisClient* Registry() const;
  void RegistrySend(std::vector<std::string> args, RedisClient::Callback done);
  void TickRegistry(int64_t now);
  void Lost(const std::string& why);
  void CheckDeadlines(int64_t now);
  int64_t ReconnectBudgetMs() const;
  void Down(const std::string& why, int64_t now);
  bool Reconnect(int64_t now);
  void BackOff();
  Status Connect(int64_t timeout_ms);
  Status CheckFsync();
  bool now_moving() const;

  // ---- Constant after construction.

  const RedisQueueOptions o_;
  const QueueKeys keys_;
  const std::string consumer_;
  const std::string token_;  // leader lock token

  // ---- Loop-thread state.

  // Connections. target_: where Redis is (the constructor sets its key,
  // resolving it may reorder its addresses); address_: the primary the last
  // Connect() resolved it to (sentinel:// is resolved again on every
  // reconnect).
  RedisTarget target_;
  RedisAddress address_;
  std::unique_ptr<RedisClient> main_, claim_, inbox_, registry_;
  // While down (a direct target): the connection whose PING tells that
  // Redis answers again, and whether it did.
  bool probe_answered_ = false;
  int64_t probe_deadline_ms_ = 0;
  std::unique_ptr<RedisClient> probe_;
  std::array<RedisClient*, 5> polled_{};
  bool up_ = false;
  bool lost_ = false;
  std::string lost_reason_, down_reason_;
  int64_t reconnect_backoff_ms_ = kReconnectMinMs;
  int64_t next_connect_ms_ = 0;
  int64_t connected_at_ms_ = 0;
  // When a reconnect for a moving slot was last logged (Down).
  static constexpr int64_t kMovingLogEveryMs = 10000;
  int64_t last_moving_log_ms_ = -kMovingLogEveryMs - 1;
  // Cluster targets: the registry's slot ("{yard}") and its connection's
  // state.
  std::optional<RedisTarget> registry_target_;
  bool registry_lost_ = false;
  int64_t registry_backoff_ms_ = kReconnectMinMs;
  int64_t next_registry_connect_ms_ = 0;

  // Claimed records, their jobs' leases and the buffer of undispatched jobs.
  EntryMap entries_;
  LeaseMap leases_;
  std::array<std::deque<JobId>, kLevels> ready_;
  size_t buffered_ = 0;
  int starved_ = 0;
  size_t want_ = 0;
  bool claiming_ = false;
  bool last_claim_empty_ = false;
  // After a reconnect (RereadPending): the id each stream's next page
  // starts after ("": none), and whether a read-back is under way.
  std::array<std::string, kLevels> reread_from_;
  bool rereading_ = false;
  EntrySet reread_skip_;
  bool draining_ = false;
  std::vector<ClaimedJob> claimed_;

  // Submits.
  size_t pushing_ = 0;
  // WAIT (o_.wait_replicas > 0): batches whose writes went out after the
  // WAIT in flight (if any) and wait for the next one; whether one is in
  // flight; whether the last one found too few replicas.
  std::vector<std::shared_ptr<PushBatch>> wait_next_;
  bool waiting_replicas_ = false;
  bool replicas_short_ = false;
  std::vector<DedupeWaiter> waiters_;
  bool dedupe_pending_ = false;
  int64_t next_dedupe_ms_ = 0;

  // Finishes.
  WriteBatch batch_;
  std::vector<Commands> replay_;
  size_t writes_ = 0;  // MULTI batches and give-backs awaiting replies
  int64_t last_bucket_ = -1;
  uint32_t expiring_ = 0;  // result keys of last_bucket_ given an EXPIRE

  // Progress of leased jobs that reported (StoreProgress).
  std::unordered_map<JobId, ProgressNote, JobIdHash> progress_;

  // Results for this broker's producers.
  bool reading_inbox_ = false;
  std::string inbox_last_ = "0-0";
  ResultSink sink_;
  Writer writer_;

  // Maintenance: leader, registry record, timers, cached stats.
  bool leader_ = false;
  int64_t fence_ = 0;
  std::string record_;  // this broker's registry record (JSON)
  int64_t next_record_ms_ = 0, next_dead_ms_ = 0;
  bool dead_check_pending_ = false;
  int64_t next_touch_ms_ = 0, next_lead_ms_ = 0, next_promote_ms_ = 0,
          next_reap_ms_ = 0, next_stats_ms_ = 0;
  bool stats_pending_ = false;
  int64_t cached_ready_ = 0, cached_running_ = 0, cached_delayed_ = 0,
          cached_dead_ = 0;
  size_t cached_queued_ = 0;

  // Operator controls (P ctl) as last read, and the rate limit's tokens
  // this broker holds: jobs it may still hand to workers.
  QueueControl control_;
  bool control_known_ = false;  // read once: until then, nothing is claimed
  bool control_pending_ = false;
  int64_t next_control_ms_ = 0;
  int64_t tokens_ = 0;
  bool tokens_pending_ = false;
  int64_t next_tokens_ms_ = 0;
  int64_t next_trim_ms_ = 0;

  // Recorded cancels (P cx): whether the hash held any when last read
  // (with the controls), and the broker's hook for dispatched jobs.
  bool cancels_recorded_ = false;
  CancelSink cancel_sink_;

  Counters c_;
};

}  // namespace yard::redis_queue_internal

#endif  // YARD_QUEUE_REDIS_QUEUE_IMPL_H_
