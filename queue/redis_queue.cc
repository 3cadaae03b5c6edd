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
//
// Claimed jobs wait in a local buffer (strict priority with the memory
// queue's anti-starvation rule) until the broker dispatches them; the
// broker claims only what free worker credit can take. Every claimed job has
// a lease (its entry in the group's pending list) that this broker touches
// every lease/3; one broker, elected with a leader lock, reclaims expired
// leases and promotes delayed jobs.
//
// Redis lost: the clients are dropped, submits are answered Unavailable,
// finishes wait in memory and are sent after the reconnect (XACK of a gone
// entry is a no-op, so resending is safe), buffered and running jobs keep
// their leases (the pending list survives a restart from the AOF).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/priority_levels.h"
#include "queue/redis_cluster.h"
#include "queue/redis_layout.h"
#include "queue/redis_target.h"
#include "queue/registry.h"
#include "queue/sharded_queue.h"
#include "schemas/codec.h"

namespace yard {
namespace {

constexpr int kLevels = kRedisPriorities;
constexpr int kStarvationLimit = 16;  // as the memory queue
constexpr int64_t kClaimBlockMs = 200;
// Pending entries read back per stream per command after a reconnect.
constexpr size_t kRereadPage = 1000;
constexpr int64_t kInboxBlockMs = 1000;
constexpr int64_t kPromoteEveryMs = 100;
constexpr int64_t kStatsEveryMs = 500;
constexpr int64_t kDedupeCheckEveryMs = 200;
constexpr size_t kTouchChunk = 1000;
constexpr size_t kMaintenanceBatch = 1000;
constexpr int64_t kReconnectMinMs = 100;
constexpr int64_t kReconnectMaxMs = 2000;
constexpr int64_t kInboxTtlMs = 60000;
constexpr char kInboxMaxLen[] = "1000000";

// A stream entry id "<ms>-<seq>".
struct EntryId {
  uint64_t ms = 0;
  uint64_t seq = 0;
  bool operator==(const EntryId&) const = default;
  bool operator<(const EntryId& o) const {
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
    return static_cast<size_t>((e.ms * 0x9E3779B97F4A7C15ULL) ^ e.seq);
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

enum class Outcome : uint8_t { kCompleted, kRetry, kDead, kDropped };

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

// A field's value in a stream entry's flat [name, value, ...] array ("" when
// missing). Non-const: callers may move the value out.
std::string* Field(RedisReply& fields, std::string_view name) {
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    if (fields.elements[i].str == name) return &fields.elements[i + 1].str;
  }
  return nullptr;
}

std::string FieldStr(RedisReply& fields, std::string_view name) {
  const std::string* f = Field(fields, name);
  return f ? *f : std::string();
}

std::string_view AsView(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string DefaultConsumer() {
  char host[64] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::string name;
  for (char c : std::string_view(host)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.';
    name.push_back(ok ? c : '_');
  }
  if (name.empty()) name = "broker";
  return name + "-" + std::to_string(getpid()) + "-" +
         JobId::Random().ToString().substr(0, 8);
}

// Writes of one loop turn, sent as one MULTI ... EXEC.
struct WriteBatch {
  std::array<std::vector<std::string>, kLevels> acks;  // entry ids
  std::vector<std::string> locked;                   // pri, entry id, lock key
  std::vector<std::string> fails;                    // yard_fail tuples
  std::array<std::vector<std::string>, 16> results;  // by id's first hex
                                                     // digit: id, blob
  std::map<std::string, std::vector<std::string>> forwards;  // inbox -> r,p..
  int64_t completed = 0;
  int64_t finished = 0;  // jobs that leave the queue (queued -= finished)
  bool empty() const {
    for (const auto& a : acks) {
      if (!a.empty()) return false;
    }
    for (const auto& r : results) {
      if (!r.empty()) return false;
    }
    return locked.empty() && fails.empty() && forwards.empty() && finished == 0;
  }
};

// A redirect or refusal that a slot migration (or a failover) causes.
bool IsSlotMoving(std::string_view why) {
  for (std::string_view w : {"ASK ", "MOVED ", "TRYAGAIN", "CLUSTERDOWN",
                             "UNBLOCKED", "non local key"}) {
    if (why.find(w) != std::string_view::npos) return true;
  }
  return false;
}

class RedisQueue final : public JobQueue {
 public:
  // Shard `shard` of `shards` of the queue (shards == 1: the whole queue).
  // The consumer name must be the same for every shard of one broker.
  RedisQueue(RedisQueueOptions o, RedisTarget target, int shard, int shards)
      : o_(std::move(o)),
        target_(std::move(target)),
        keys_(o_.queue, shard, shards),
        consumer_(o_.consumer.empty() ? DefaultConsumer() : o_.consumer),
        token_(consumer_ + ":" + JobId::Random().ToString()) {
    // In a Cluster: the primary serving this shard's slot, and (for the
    // registry, which lives in the "{yard}" slot) that slot's primary.
    target_.key = "{" + keys_.tag + "}";
    if (target_.kind == RedisTarget::Kind::kCluster) {
      registry_target_ = target_;
      registry_target_->key = kRegistryHashTag;
    }
  }

  ~RedisQueue() override {
    if (RedisClient* reg = Registry(); reg && reg->connected()) {
      // A clean exit: leave the registry now rather than after the TTL.
      (void)RedisCall(*reg, {"DEL", RegistryKey(consumer_)}, 500);
      (void)RedisCall(*reg, {"SREM", kRegistrySet, consumer_}, 500);
    }
    if (leader_ && main_ && main_->connected()) {
      auto args = keys_.Fcall("yard_resign");
      args.push_back(token_);
      (void)RedisCall(*main_, std::move(args), 500);
    }
    // Destroying a client answers its pending commands, whose callbacks
    // use the members below: end the clients while those still exist.
    inbox_.reset();
    claim_.reset();
    registry_.reset();
    main_.reset();
  }

  Status Start() {
    if (auto s = Connect(o_.connect_timeout_ms); !s.ok()) return s;
    if (o_.require_fsync) {
      if (auto s = CheckFsync(); !s.ok()) return s;
    }
    spdlog::info(
        "durable queue '{}' ({{{}}}) on redis {}:{} as {} (lease {} ms)",
        o_.queue, keys_.tag, address_.host, address_.port, consumer_,
        o_.lease_ms);
    return Status::OK();
  }

  // ------------------------------------------------------------ JobQueue

  void Push(std::span<const NewJob> jobs, PushCallback done) override {
    std::vector<PushOutcome> out(jobs.size(), PushOutcome::kAccepted);
    if (!up_) {
      done(Status::Unavailable("Redis is unreachable: " + down_reason_), out);
      return;
    }
    if (lost_ || !main_->connected()) {
      // Lost since the last Tick: a command now would be answered at once,
      // once per command, and the batch with it more than once.
      done(Status::Unavailable("Redis connection lost: " +
                               (lost_ ? lost_reason_ : main_->error())),
           out);
      return;
    }
    if (replicas_short_ && waiting_replicas_) {
      // The last WAIT found too few replicas and a probe batch is waiting
      // for the next: refuse without writing (no duplicates to come).
      done(Status::Unavailable("Redis: fewer than " +
                               std::to_string(o_.wait_replicas) +
                               " replicas acknowledged the last submits"),
           out);
      return;
    }
    if (cached_queued_ + pushing_ + jobs.size() > o_.capacity) {
      std::fill(out.begin(), out.end(), PushOutcome::kBusy);
      ++c_.busy_batches;
      done(Status::OK(), out);
      return;
    }
    auto batch = std::make_shared<PushBatch>();
    batch->out = std::move(out);
    batch->done = std::move(done);
    batch->jobs = jobs.size();
    pushing_ += jobs.size();
    const int64_t now = UnixMillis();
    std::vector<std::string> special = keys_.Fcall("yard_submit");
    special.push_back(std::to_string(o_.dedupe_ttl_s));
    std::vector<size_t> special_index;
    std::vector<std::string> routes;  // for dedupe waiters
    auto xadd = [&](int pri, const JobId& id, size_t n, std::string max,
                    std::string lock, std::string_view route, std::string p) {
      ++batch->waiting;
      ++c_.commands;
      main_->Command({"XADD",
                      keys_.stream[pri],
                      "*",
                      "j",
                      id.ToString(),
                      "a",
                      "0",
                      "x",
                      "0",
                      "m",
                      std::move(max),
                      "k",
                      std::move(lock),
                      "b",
                      consumer_,
                      "r",
                      std::string(route),
                      "n",
                      std::to_string(n),
                      "p",
                      std::move(p)},
                     [this, batch](Result<RedisReply> r) {
                       if (!r.ok()) batch->Fail(r.status());
                       FinishPush(*batch);
                     });
    };
    // Plain jobs become one record per priority: one XADD per batch.
    std::array<std::string, kLevels> packed;
    std::array<size_t, kLevels> count{};
    std::array<JobId, kLevels> first{};
    std::string_view route;
    size_t plain = 0;
    std::vector<JobId> traced;  // dedupe_ids: first sends
    for (size_t i = 0; i < jobs.size(); ++i) {
      const NewJob& j = jobs[i];
      route = j.route;
      const auto* job = flatbuffers::GetRoot<wire::Job>(j.blob.bytes.data());
      const int pri = std::min<int>(j.priority, kLevels - 1);
      const bool keyed =
          job->idempotency_key() && job->idempotency_key()->size() > 0;
      const bool locked = job->lock_key() && job->lock_key()->size() > 0;
      std::string max = std::to_string(std::max<int>(1, job->max_attempts()));
      // Job-id dedupe: first sends leave a trace next to their XADD; a
      // resend goes through yard_submit, which finds the trace (DUP).
      const bool by_id = o_.dedupe_ids_ttl_s > 0 && !keyed;
      if (keyed || (by_id && j.resend) || j.not_before_ms > now) {
        special_index.push_back(i);
        routes.emplace_back(j.route);
        special.push_back(std::to_string(pri));
        special.push_back(std::to_string(j.not_before_ms));
        special.push_back(keyed   ? job->idempotency_key()->str()
                          : by_id ? std::string("id:") + j.id.ToString()
                                  : std::string());
        special.push_back(j.id.ToString());
        special.push_back(std::move(max));
        special.push_back(locked ? job->lock_key()->str() : "");
        special.push_back(consumer_);
        special.push_back(std::string(j.route));
        std::string p;
        PackJob(AsView(j.blob.bytes), &p);
        special.push_back(std::move(p));
        continue;
      }
      ++plain;
      if (by_id) traced.push_back(j.id);
      if (locked) {  // a lock is per job: a record of its own
        std::string p;
        PackJob(AsView(j.blob.bytes), &p);
        xadd(pri, j.id, 1, std::move(max), job->lock_key()->str(), j.route,
             std::move(p));
        continue;
      }
      if (count[pri]++ == 0) first[pri] = j.id;
      PackJob(AsView(j.blob.bytes), &packed[pri]);
    }
    for (int p = 0; p < kLevels; ++p) {
      if (count[p]) {
        xadd(p, first[p], count[p], "", "", route, std::move(packed[p]));
      }
    }
    // After the XADDs: a trace is never left for a job that was not queued
    // (a connection lost in between leaves a job without a trace, which a
    // resend queues again: a duplicate run, not a loss).
    for (const JobId& id : traced) {
      Send({"SET", keys_.prefix + "dd:id:" + id.ToString(), id.ToString(), "NX",
            "EX", std::to_string(o_.dedupe_ids_ttl_s)},
           nullptr);
    }
    if (plain) {
      Send({"HINCRBY", keys_.stats, "queued", std::to_string(plain)}, nullptr);
      Send({"HINCRBY", keys_.stats, "submitted", std::to_string(plain)},
           nullptr);
    }
    if (!special_index.empty()) {
      ++batch->waiting;
      ++c_.commands;
      main_->Command(std::move(special),
                     [this, batch, special_index = std::move(special_index),
                      routes = std::move(routes),
                      ids = IdsOf(jobs)](Result<RedisReply> r) {
                       if (!r.ok()) {
                         batch->Fail(r.status());
                       } else {
                         OnSpecialSubmit(*r, special_index, routes, ids,
                                         *batch);
                       }
                       FinishPush(*batch);
                     });
    }
    ++c_.round_trips;
    c_.submitted += plain;
    if (o_.wait_replicas > 0) {
      // Accepted once a WAIT sent after these writes reports the replicas.
      ++batch->waiting;
      wait_next_.push_back(batch);
      if (!waiting_replicas_) SendWait();
    }
    if (batch->waiting == 0) FinishPush(*batch);
  }

  void Claim(size_t max, ClaimCallback done) override {
    claimed_.clear();
    while (claimed_.size() < max) {
      Lease* l = nullptr;
      JobId id;
      if (!PopBuffered(&id, &l)) break;
      l->dispatched = true;
      const Entry& e = entries_.at(l->entry);
      claimed_.push_back(ClaimedJob{id, AsBytes(l->blob), e.attempt, e.route,
                                    e.owner == consumer_});
    }
    if (!claimed_.empty()) done(claimed_);
  }

  void Complete(const JobId& id, Bytes result) override {
    auto it = leases_.find(id);
    if (it == leases_.end()) {
      ++c_.stale;  // lease lost: the job was requeued and runs again
      return;
    }
    FinishJob(it, result, Outcome::kCompleted, 0);
  }

  void Fail(const JobId& id, int64_t retry_at_ms, Bytes result) override {
    auto it = leases_.find(id);
    if (it == leases_.end()) {
      ++c_.stale;
      return;
    }
    FinishJob(it, result, retry_at_ms > 0 ? Outcome::kRetry : Outcome::kDead,
              retry_at_ms);
  }

  void Release(std::span<const JobId> ids) override {
    for (const JobId& id : ids) {
      auto it = leases_.find(id);
      if (it == leases_.end() || !it->second.dispatched) continue;
      it->second.dispatched = false;
      Buffer(id, it->second, /*front=*/true);
    }
  }

  size_t Cancel(std::span<const JobId> ids,
                std::vector<JobId>* removed) override {
    size_t n = 0;
    for (const JobId& id : ids) {
      auto it = leases_.find(id);
      if (it == leases_.end() || it->second.dispatched) continue;
      FinishJob(it, {}, Outcome::kDropped, 0);
      if (removed) removed->push_back(id);
      ++n;
    }
    return n;
  }

  bool HasReady(int64_t) override { return buffered_ > 0; }

  void DrainWaiting(const std::function<void(const ClaimedJob&)>&) override {
    // Nothing to hand back: every accepted job is in Redis.
  }

  QueueStats Stats() const override {
    QueueStats s;
    s.ready = buffered_;
    s.leased = leases_.size() - buffered_;
    s.capacity = o_.capacity;
    return s;
  }

  bool durable() const override { return true; }
  bool available() const override { return up_; }
  void SetResultSink(ResultSink sink) override { sink_ = std::move(sink); }
  void Want(size_t n) override { want_ = n; }

  int PollItems(zmq_pollitem_t* items, int max) override {
    int n = 0;
    polled_.fill(nullptr);
    for (RedisClient* c :
         {main_.get(), claim_.get(), inbox_.get(), registry_.get()}) {
      if (n >= max || !c || c->fd() < 0) continue;
      items[n] = {nullptr, c->fd(), c->events(), 0};
      polled_[n++] = c;
    }
    return n;
  }

  void OnPollEvents(const zmq_pollitem_t* items, int n) override {
    for (int i = 0; i < n && i < static_cast<int>(polled_.size()); ++i) {
      if (items[i].revents && polled_[i]) {
        polled_[i]->HandleEvents(items[i].revents);
      }
    }
  }

  void Tick(int64_t now) override {
    if (up_ && (lost_ || !main_->connected() || !claim_->connected() ||
                !inbox_->connected())) {
      Down(lost_reason_.empty() ? "connection lost" : lost_reason_, now);
    }
    if (!up_) {
      if (now < next_connect_ms_) return;
      if (!Connect(300).ok()) {
        reconnect_backoff_ms_ =
            std::min(kReconnectMaxMs, reconnect_backoff_ms_ * 2);
        next_connect_ms_ = now + reconnect_backoff_ms_;
        return;
      }
      spdlog::info(
          "redis is back: {} buffered, {} leased, {} write batches to resend",
          buffered_, leases_.size() - buffered_, replay_.size());
    }
    if (registry_target_) TickRegistry(now);
    Flush();
    MaybeClaim();
    if (now >= next_touch_ms_) Touch(now);
    if (now >= next_lead_ms_) Lead(now);
    if (leader_ && now >= next_promote_ms_) Promote(now);
    if (leader_ && now >= next_reap_ms_) Reap(now);
    if (leader_ && now >= next_dead_ms_) FindDeadConsumers(now);
    if (now >= next_record_ms_) WriteRecord(now);
    if (now >= next_stats_ms_) RefreshStats(now);
    if (!waiters_.empty() && now >= next_dedupe_ms_) CheckDedupe(now);
  }

  void BeginDrain() override {
    draining_ = true;
    // Give back records none of whose jobs has started or finished here, so
    // other brokers take them now instead of after a lease.
    std::vector<std::string> args = keys_.Fcall("yard_unclaim");
    args.push_back(kRedisGroup);
    size_t n = 0;
    for (auto e = entries_.begin(); e != entries_.end();) {
      const Entry& entry = e->second;
      bool started = entry.open < entry.jobs.size();
      for (const JobId& id : entry.jobs) {
        auto l = leases_.find(id);
        started |= l != leases_.end() && l->second.dispatched;
      }
      if (started) {
        ++e;
        continue;
      }
      args.push_back(std::to_string(entry.pri));
      args.push_back(e->first.ToString());
      ++n;
      auto next = std::next(e);
      Forget(e);
      e = next;
    }
    if (n && up_) {
      ++writes_;
      ++c_.commands;
      main_->Command(std::move(args), [this, n](Result<RedisReply> r) {
        --writes_;
        // On failure their leases expire and the leader requeues them.
        if (r.ok()) spdlog::info("draining: gave back {} claimed records", n);
      });
    }
  }

  bool Drained() const override {
    return leases_.empty() && entries_.empty() && batch_.empty() &&
           replay_.empty() && (writes_ == 0 || !up_);
  }

  void Advertise(const nlohmann::json& record) override {
    nlohmann::json r = record;
    r["id"] = consumer_;
    r["queue"] = o_.queue;
    // (Worker names and labels come from the network: invalid UTF-8 is
    // replaced, not thrown.)
    record_ = r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    WriteRecord(MonoMillis());
  }

  void DescribeStats(nlohmann::json* j) const override {
    (*j)["durable"] = {{"queue", o_.queue},
                       {"consumer", consumer_},
                       {"redis", up_ ? "up" : "down"},
                       {"leader", leader_},
                       {"fence", fence_},
                       {"lease_ms", o_.lease_ms},
                       {"queued", cached_queued_},
                       {"ready_records", cached_ready_},
                       {"running_records", cached_running_},
                       {"delayed", cached_delayed_},
                       {"dead_records", cached_dead_},
                       {"buffered", buffered_},
                       {"leased", leases_.size()},
                       {"records", entries_.size()},
                       {"write_batches_to_resend", replay_.size()},
                       {"counters",
                        {{"submitted", c_.submitted},
                         {"claimed", c_.claimed},
                         {"completed", c_.completed},
                         {"retried", c_.retried},
                         {"dead_lettered", c_.dead},
                         {"stale", c_.stale},
                         {"leases_lost", c_.leases_lost},
                         {"duplicates_dropped", c_.dup_dropped},
                         {"idempotent_hits", c_.idempotent},
                         {"undecodable", c_.undecodable},
                         {"parked", c_.parked},
                         {"reclaimed", c_.reclaimed},
                         {"dead_brokers", c_.dead_brokers},
                         {"promoted", c_.promoted},
                         {"busy_batches", c_.busy_batches},
                         {"reconnects", c_.reconnects},
                         {"redis_commands", c_.commands},
                         {"redis_round_trips", c_.round_trips}}}};
  }

 private:
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

  static std::vector<JobId> IdsOf(std::span<const NewJob> jobs) {
    std::vector<JobId> ids;
    ids.reserve(jobs.size());
    for (const NewJob& j : jobs) ids.push_back(j.id);
    return ids;
  }

  void FinishPush(PushBatch& b) {
    if (b.waiting > 0 && --b.waiting > 0) return;
    pushing_ -= std::min(pushing_, b.jobs);
    if (!b.status.ok()) {
      if (b.status.code() == StatusCode::kUnavailable) Lost(b.status.message());
      b.done(Status::Unavailable("Redis: " + b.status.message()), b.out);
    } else {
      b.done(Status::OK(), b.out);
    }
  }

  // WAIT for the batches in wait_next_ (every write of theirs went out
  // before it). One WAIT at a time: a WAIT holds up the main connection
  // until it returns, and stacked WAITs would each wait out their timeout
  // in turn while a replica is missing. Batches pushed meanwhile join the
  // next WAIT (group commit).
  void SendWait() {
    std::vector<std::shared_ptr<PushBatch>> group = std::move(wait_next_);
    wait_next_.clear();
    if (group.empty()) return;
    if (!up_ || !main_ || !main_->connected()) {
      for (auto& b : group) {
        b->Fail(Status::Unavailable("redis: connection lost before WAIT"));
        FinishPush(*b);
      }
      return;
    }
    waiting_replicas_ = true;
    ++c_.commands;
    main_->Command(
        {"WAIT", std::to_string(o_.wait_replicas),
         std::to_string(o_.wait_timeout_ms)},
        [this, group = std::move(group)](Result<RedisReply> r) {
          waiting_replicas_ = false;
          Status st = r.status();
          if (r.ok() && r->integer < o_.wait_replicas) {
            // Not a lost connection (FinishPush answers it Unavailable
            // without reconnecting): the primary is fine, its replicas
            // are not.
            st = Status::DeadlineExceeded(std::to_string(r->integer) + " of " +
                                          std::to_string(o_.wait_replicas) +
                                          " replicas acknowledged within " +
                                          std::to_string(o_.wait_timeout_ms) +
                                          " ms (WAIT)");
            if (!replicas_short_) {
              spdlog::warn(
                  "redis {}:{}: {}; submits get Unavailable until "
                  "enough replicas are back",
                  address_.host, address_.port, st.message());
            }
            replicas_short_ = true;
          } else if (r.ok() && replicas_short_) {
            spdlog::info("redis {}:{}: {} replica(s) acknowledge submits again",
                         address_.host, address_.port, r->integer);
            replicas_short_ = false;
          }
          for (auto& b : group) {
            if (!st.ok()) b->Fail(st);
            FinishPush(*b);
          }
          SendWait();
        });
  }

  void OnSpecialSubmit(const RedisReply& reply,
                       const std::vector<size_t>& index,
                       const std::vector<std::string>& routes,
                       const std::vector<JobId>& ids, PushBatch& batch) {
    if (reply.elements.size() != index.size()) {
      batch.Fail(Status::Internal("yard_submit: unexpected reply"));
      return;
    }
    const int64_t now = MonoMillis();
    for (size_t k = 0; k < index.size(); ++k) {
      const std::string& s = reply.elements[k].str;
      if (s.rfind("DUP:", 0) != 0) {
        ++c_.submitted;
        continue;
      }
      ++c_.idempotent;
      batch.out[index[k]] = PushOutcome::kDuplicate;
      auto first = JobId::Parse(std::string_view(s).substr(4));
      if (!first) continue;
      // The first job's result answers this submit too, once it exists.
      waiters_.push_back(DedupeWaiter{ids[index[k]], *first, routes[k],
                                      now + o_.dedupe_ttl_s * 1000});
    }
  }

  // ------------------------------------------------------------- buffer

  void Buffer(const JobId& id, Lease& l, bool front) {
    l.buffered = true;
    ++buffered_;
    auto& q = ready_[entries_.at(l.entry).pri];
    if (front) {
      q.push_front(id);
    } else {
      q.push_back(id);
    }
  }

  // Strict priority (2 first) with the memory queue's anti-starvation rule
  // (queue/priority_levels.h).
  bool PopBuffered(JobId* id, Lease** lease) {
    while (buffered_ > 0) {
      const int level = PickLevel(ready_, kStarvationLimit, &starved_);
      if (level < 0) {
        buffered_ = 0;
        return false;
      }
      JobId next = ready_[level].front();
      ready_[level].pop_front();
      auto it = leases_.find(next);
      if (it == leases_.end() || !it->second.buffered ||
          it->second.dispatched) {
        continue;  // stale: finished, lost or given back
      }
      it->second.buffered = false;
      --buffered_;
      *id = next;
      *lease = &it->second;
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------- finish

  // Records a job's end in this turn's write batch; its entry is acked
  // with the batch once all of the entry's jobs are finished.
  void FinishJob(std::unordered_map<JobId, Lease, JobIdHash>::iterator it,
                 Bytes result, Outcome outcome, int64_t retry_at_ms) {
    const JobId id = it->first;
    Lease lease = it->second;
    leases_.erase(it);
    if (lease.buffered) --buffered_;
    auto e = entries_.find(lease.entry);
    if (e == entries_.end()) return;
    Entry& entry = e->second;
    if (outcome == Outcome::kRetry || outcome == Outcome::kDead) {
      const auto* job = VerifiedRoot<wire::Job>(lease.blob);
      const auto* r = VerifiedRoot<wire::JobResult>(AsView(result));
      std::string p;
      PackJob(lease.blob, &p);
      auto& f = batch_.fails;
      f.push_back(std::to_string(entry.pri));
      f.push_back(std::to_string(outcome == Outcome::kRetry ? retry_at_ms : 0));
      f.push_back(r && r->error() ? r->error()->str() : "");
      f.push_back(id.ToString());
      f.push_back(std::to_string(entry.attempt));
      f.push_back(
          std::to_string(job ? std::max<int>(1, job->max_attempts()) : 1));
      f.push_back(entry.lock_key);
      f.push_back(entry.owner);
      f.push_back(entry.route);
      f.push_back(std::move(p));
    }
    if (outcome == Outcome::kCompleted) {
      ++batch_.completed;
      ++batch_.finished;
    } else if (outcome == Outcome::kDropped) {
      ++batch_.finished;
    }  // a dead letter leaves `queued` inside yard_fail (bury)
    if (outcome != Outcome::kRetry && outcome != Outcome::kDropped &&
        !result.empty()) {
      if (o_.result_ttl_s > 0) {
        auto& shard = batch_.results[static_cast<size_t>(id.hi >> 60)];
        shard.push_back(id.ToString());
        shard.emplace_back(AsView(result));
      }
      if (!entry.inbox.empty()) {
        auto& fw = batch_.forwards[entry.inbox];
        fw.push_back("r");
        fw.push_back(entry.route);
        fw.push_back("p");
        fw.emplace_back(AsView(result));
      }
    }
    switch (outcome) {
      case Outcome::kCompleted:
        ++c_.completed;
        break;
      case Outcome::kRetry:
        ++c_.retried;
        break;
      case Outcome::kDead:
        ++c_.dead;
        break;
      case Outcome::kDropped:
        break;
    }
    if (--entry.open == 0) AckEntry(e);
  }

  void AckEntry(std::unordered_map<EntryId, Entry, EntryIdHash>::iterator e) {
    const Entry& entry = e->second;
    if (entry.lock_key.empty()) {
      batch_.acks[entry.pri].push_back(e->first.ToString());
    } else {
      batch_.locked.push_back(std::to_string(entry.pri));
      batch_.locked.push_back(e->first.ToString());
      batch_.locked.push_back(entry.lock_key);
    }
    if (rereading_) reread_skip_.insert(e->first);
    entries_.erase(e);
  }

  // This turn's writes as one MULTI: one round trip per batch.
  void Flush() {
    if (!up_) return;
    for (auto& cmds : replay_) SendMulti(std::move(cmds));
    replay_.clear();
    if (batch_.empty()) return;
    WriteBatch b = std::move(batch_);
    batch_ = WriteBatch();
    std::vector<std::vector<std::string>> cmds;
    if (target_.kind == RedisTarget::Kind::kCluster) {
      // During a slot migration a queued command whose key has moved (or
      // is new) aborts the whole MULTI (EXECABORT: replayed), but the keys
      // a function does not declare are only checked when it runs, after
      // the acks queued with it have run. Naming them in a plain command
      // makes a migration abort the batch instead of half-applying it.
      std::vector<std::string> guard = {"EXISTS"};
      if (!b.fails.empty()) guard.push_back(keys_.stats);
      for (size_t i = 2; i < b.locked.size(); i += 3) {
        if (b.locked[i].empty()) continue;
        guard.push_back(keys_.prefix + "mx:" + b.locked[i]);
        guard.push_back(keys_.prefix + "mxw:" + b.locked[i]);
      }
      if (guard.size() > 1) cmds.push_back(std::move(guard));
    }
    for (int p = 0; p < kLevels; ++p) {
      if (b.acks[p].empty()) continue;
      std::vector<std::string> ack = {"XACK", keys_.stream[p], kRedisGroup};
      std::vector<std::string> del = {"XDEL", keys_.stream[p]};
      ack.insert(ack.end(), b.acks[p].begin(), b.acks[p].end());
      del.insert(del.end(), b.acks[p].begin(), b.acks[p].end());
      cmds.push_back(std::move(ack));
      cmds.push_back(std::move(del));
    }
    if (!b.locked.empty()) {
      auto args = keys_.Fcall("yard_complete_locked");
      args.push_back(kRedisGroup);
      args.insert(args.end(), std::make_move_iterator(b.locked.begin()),
                  std::make_move_iterator(b.locked.end()));
      cmds.push_back(std::move(args));
    }
    if (!b.fails.empty()) {
      auto args = keys_.Fcall("yard_fail");
      args.insert(args.end(), std::make_move_iterator(b.fails.begin()),
                  std::make_move_iterator(b.fails.end()));
      cmds.push_back(std::move(args));
    }
    const int64_t bucket = UnixMillis() / 1000 / kResultBucketSeconds;
    if (bucket != last_bucket_) {
      last_bucket_ = bucket;
      expiring_ = 0;
    }
    for (size_t h = 0; h < b.results.size(); ++h) {
      if (b.results[h].empty()) continue;
      JobId any;
      any.hi = static_cast<uint64_t>(h) << 60;
      std::string key = keys_.ResultKey(bucket, any);
      std::vector<std::string> hset = {"HSET", key};
      hset.insert(hset.end(), std::make_move_iterator(b.results[h].begin()),
                  std::make_move_iterator(b.results[h].end()));
      cmds.push_back(std::move(hset));
      if (!(expiring_ & (1u << h))) {
        // Once per key: its expiry, and the bucket in the list of buckets
        // (which the leader trims).
        expiring_ |= 1u << h;
        cmds.push_back(
            {"EXPIRE", key,
             std::to_string(o_.result_ttl_s + kResultBucketSeconds)});
        cmds.push_back({"ZADD", keys_.result_buckets, std::to_string(bucket),
                        std::to_string(bucket)});
      }
    }
    for (auto& [inbox, fields] : b.forwards) {
      std::vector<std::string> xadd = {"XADD", inbox,        "MAXLEN",
                                       "~",    kInboxMaxLen, "*"};
      xadd.insert(xadd.end(), std::make_move_iterator(fields.begin()),
                  std::make_move_iterator(fields.end()));
      cmds.push_back(std::move(xadd));
      cmds.push_back({"PEXPIRE", inbox, std::to_string(kInboxTtlMs)});
    }
    if (b.completed) {
      cmds.push_back(
          {"HINCRBY", keys_.stats, "completed", std::to_string(b.completed)});
    }
    if (b.finished) {
      cmds.push_back(
          {"HINCRBY", keys_.stats, "queued", std::to_string(-b.finished)});
    }
    SendMulti(std::move(cmds));
  }

  // Sends commands wrapped in MULTI/EXEC; if the connection drops before
  // EXEC answers, the outcome is unknown and the batch is sent again after
  // the reconnect (acks, results and retries are idempotent).
  void SendMulti(std::vector<std::vector<std::string>> cmds) {
    if (cmds.empty()) return;
    auto keep = std::make_shared<std::vector<std::vector<std::string>>>(cmds);
    // Whether a queued command was refused for a passing reason (in a
    // Redis Cluster, a MOVED or ASK while its slot moves).
    auto refused = std::make_shared<bool>(false);
    Send({"MULTI"}, nullptr);
    for (auto& c : cmds) {
      Send(std::move(c), [refused](Result<RedisReply> r) {
        if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
          *refused = true;
        }
      });
    }
    ++writes_;
    ++c_.round_trips;
    Send({"EXEC"}, [this, keep, refused](Result<RedisReply> r) {
      --writes_;
      if (!r.ok()) {
        // Lost, or EXECABORT after a passing refusal: nothing ran, send it
        // again after the reconnect. (An EXECABORT for a command Redis
        // will never take is logged and dropped, not replayed forever.)
        if (r.status().code() == StatusCode::kUnavailable ||
            (*refused &&
             r.status().message().find("EXECABORT") != std::string::npos)) {
          replay_.push_back(std::move(*keep));
          Lost(r.status().message());
        } else {
          spdlog::error("redis: a write batch failed: {}",
                        r.status().ToString());
        }
        return;
      }
      for (const RedisReply& e : r->elements) {
        if (e.type == RedisReply::Type::kError) {
          spdlog::error("redis: a write failed: {}", e.str);
        }
      }
    });
  }

  // ------------------------------------------------------------- claim

  void MaybeClaim() {
    if (!up_ || draining_ || claiming_) return;
    if (RereadDue()) {
      RereadPending();
      return;
    }
    size_t room = want_ > buffered_ ? want_ - buffered_ : 0;
    if (room == 0) return;
    // Records, not jobs: a record holds a producer's batch. Claim a few
    // records at a time; the buffer refills as soon as workers take jobs.
    const size_t count = std::clamp<size_t>(room / 64, 4, o_.claim_batch);
    std::vector<std::string> args = {"XREADGROUP", "GROUP",
                                     kRedisGroup,  consumer_,
                                     "COUNT",      std::to_string(count)};
    if (last_claim_empty_) {
      args.push_back("BLOCK");
      args.push_back(std::to_string(kClaimBlockMs));
    }
    args.push_back("STREAMS");
    std::vector<int> levels;
    for (int p = kLevels - 1; p >= 0; --p) {
      if (ready_[p].size() < want_) levels.push_back(p);
    }
    if (levels.empty()) return;
    for (int p : levels) args.push_back(keys_.stream[p]);
    for (size_t i = 0; i < levels.size(); ++i) args.push_back(">");
    claiming_ = true;
    ++c_.commands;
    ++c_.round_trips;
    claim_->Command(std::move(args), [this](Result<RedisReply> r) {
      claiming_ = false;
      if (!r.ok()) return ClaimFailed(r.status(), "claim");
      OnClaimed(*r);
    });
  }

  // A claim or read-back that Redis refused or lost.
  void ClaimFailed(const Status& st, const char* what) {
    if (st.message().find("NOGROUP") != std::string::npos) {
      // The streams were deleted: reconnecting sets them up again.
      Lost("consumer group missing");
    } else if (st.code() == StatusCode::kUnavailable) {
      Lost(st.message());
    } else {
      spdlog::error("redis: {} failed: {}", what, st.ToString());
    }
  }

  // XREADGROUP from an id returns this consumer's own pending entries after
  // it (its history), fields included, a page at a time. OnClaimed skips the
  // ones this broker holds, and the ones it finished (acked or forgot) while
  // a page was in flight: Redis read those before it saw the ack.
  void RereadPending() {
    rereading_ = true;
    std::vector<std::string> args = {"XREADGROUP", "GROUP",
                                     kRedisGroup,  consumer_,
                                     "COUNT",      std::to_string(kRereadPage),
                                     "STREAMS"};
    std::vector<int> levels;
    for (int p = kLevels - 1; p >= 0; --p) {
      if (!reread_from_[p].empty()) levels.push_back(p);
    }
    for (int p : levels) args.push_back(keys_.stream[p]);
    for (int p : levels) args.push_back(reread_from_[p]);
    claiming_ = true;
    ++c_.commands;
    ++c_.round_trips;
    // On the main connection, after the write batches Flush() resent: an
    // entry acked there is not read back as pending.
    main_->Command(std::move(args), [this](Result<RedisReply> r) {
      claiming_ = false;
      if (!r.ok()) {
        ClaimFailed(r.status(), "reading pending entries back");
        return EndReread();  // a reconnect starts it again
      }
      // The next page of each stream that filled this one.
      for (std::string& from : reread_from_) from.clear();
      if (r->type == RedisReply::Type::kArray) {
        for (const RedisReply& stream : r->elements) {
          if (stream.elements.size() != 2) continue;
          const int pri = LevelOf(stream.elements[0].str);
          const auto& items = stream.elements[1].elements;
          if (pri >= 0 && items.size() >= kRereadPage &&
              !items.back().elements.empty()) {
            reread_from_[pri] = items.back().elements[0].str;
          }
        }
      }
      const size_t before = entries_.size();
      OnClaimed(*r, &reread_skip_);
      if (entries_.size() > before) {
        spdlog::log(
            now_moving() ? spdlog::level::debug : spdlog::level::warn,
            "redis: {} claimed records whose reply was lost are back in hand",
            entries_.size() - before);
      }
      if (!RereadDue()) EndReread();
    });
  }

  // A page of the read-back is to be read (MaybeClaim sends it).
  bool RereadDue() const {
    return std::any_of(reread_from_.begin(), reread_from_.end(),
                       [](const std::string& f) { return !f.empty(); });
  }

  void EndReread() {
    rereading_ = false;
    for (std::string& from : reread_from_) from.clear();
    reread_skip_.clear();
  }

  int LevelOf(const std::string& key) const {
    for (int p = 0; p < kLevels; ++p) {
      if (keys_.stream[p] == key) return p;
    }
    return -1;
  }

  // `skip`: entries not to take (see RereadPending); null for new claims.
  void OnClaimed(
      RedisReply& reply,
      const std::unordered_set<EntryId, EntryIdHash>* skip = nullptr) {
    last_claim_empty_ = true;
    if (reply.type != RedisReply::Type::kArray) return;
    std::vector<std::string> bury = keys_.Fcall("yard_bury");
    bury.push_back(kRedisGroup);
    std::vector<std::string> lock = keys_.Fcall("yard_lock");
    lock.push_back(kRedisGroup);
    lock.push_back(std::to_string(o_.lease_ms));
    const size_t bury_base = bury.size(), lock_base = lock.size();
    auto locking = std::make_shared<std::vector<EntryId>>();
    std::vector<RecordJob> jobs;
    for (RedisReply& stream : reply.elements) {
      if (stream.elements.size() != 2) continue;
      const int pri = LevelOf(stream.elements[0].str);
      if (pri < 0) continue;
      for (RedisReply& item : stream.elements[1].elements) {
        if (item.elements.size() != 2) continue;
        last_claim_empty_ = false;
        const std::string& eid_text = item.elements[0].str;
        auto eid = EntryId::Parse(eid_text);
        // Held already (a read-back), or finished while it was read.
        if (!eid || entries_.contains(*eid) || (skip && skip->count(*eid))) {
          continue;
        }
        RedisReply& fields = item.elements[1];
        if (fields.type != RedisReply::Type::kArray) {
          // A pending entry deleted from the stream reads back without
          // fields: nothing to run; take it off the pending list.
          batch_.acks[pri].push_back(eid_text);
          continue;
        }
        // The payloads move out of the reply: no copy of the batch.
        std::string* p = Field(fields, "p");
        auto packed =
            std::make_shared<const std::string>(p ? std::move(*p) : "");
        std::string why = DecodeRecord(FieldStr(fields, "n"), *packed, &jobs);
        if (!why.empty()) {
          ++c_.undecodable;
          spdlog::warn(
              "redis: record {} of {} is undecodable ({}): dead-lettered",
              eid_text, keys_.stream[pri], why);
          bury.push_back(std::to_string(pri));
          bury.push_back(eid_text);
          bury.push_back(why);
          continue;
        }
        auto e = entries_.try_emplace(*eid).first;  // new: checked above
        Entry& entry = e->second;
        entry.pri = static_cast<uint8_t>(pri);
        int a = 0;
        std::string a_text = FieldStr(fields, "a");
        std::from_chars(a_text.data(), a_text.data() + a_text.size(), a);
        entry.attempt = static_cast<uint16_t>(std::clamp(a + 1, 1, 65535));
        entry.lock_key = FieldStr(fields, "k");
        entry.owner = FieldStr(fields, "b");
        if (!entry.owner.empty() && entry.owner != consumer_) {
          entry.inbox = keys_.Inbox(entry.owner);
        }
        entry.route = FieldStr(fields, "r");
        entry.packed = packed;
        entry.locking = !entry.lock_key.empty();
        entry.jobs.reserve(jobs.size());
        for (const RecordJob& job : jobs) {
          c_.claimed++;
          const JobId id = FromWire(job.job->id());
          auto [it, inserted] = leases_.try_emplace(id);
          if (!inserted) {
            // A second copy of a job this broker holds (its producer resent
            // it): count it finished rather than run it twice here.
            ++c_.dup_dropped;
            ++batch_.finished;
            continue;
          }
          ++entry.open;
          entry.jobs.push_back(id);
          it->second.entry = *eid;
          it->second.blob = job.blob;
          if (!entry.locking) Buffer(id, it->second, /*front=*/false);
        }
        if (entry.open == 0) {
          AckEntry(e);
          continue;
        }
        if (entry.locking) {
          lock.push_back(std::to_string(pri));
          lock.push_back(eid_text);
          lock.push_back(entry.lock_key);
          locking->push_back(*eid);
        }
      }
    }
    if (bury.size() > bury_base) Send(std::move(bury), nullptr);
    if (lock.size() > lock_base) {
      Send(std::move(lock),
           [this, locking](Result<RedisReply> r) { OnLocked(*locking, r); });
    }
  }

  void OnLocked(const std::vector<EntryId>& entries,
                const Result<RedisReply>& r) {
    // (Unavailable, e.g. the slot is migrating: Send has marked the
    // connection lost, and the reconnect reads the records forgotten below
    // back instead of waiting out their leases.)
    for (size_t i = 0; i < entries.size(); ++i) {
      auto e = entries_.find(entries[i]);
      if (e == entries_.end()) continue;
      int64_t got = -1;
      if (r.ok() && i < r->elements.size()) got = r->elements[i].integer;
      if (got == 1) {
        e->second.locking = false;
        for (const JobId& id : e->second.jobs) {
          auto l = leases_.find(id);
          if (l != leases_.end()) Buffer(id, l->second, /*front=*/false);
        }
        continue;
      }
      // Parked behind the lock's holder (0: it left the stream), lease lost
      // (-1), or unknown (Redis lost: the leader reclaims it).
      if (got == 0) ++c_.parked;
      Forget(e);
    }
  }

  // Drops an entry and its jobs without acking it (someone else owns it
  // now, or it left the stream).
  void Forget(std::unordered_map<EntryId, Entry, EntryIdHash>::iterator e) {
    for (const JobId& id : e->second.jobs) {
      auto l = leases_.find(id);
      if (l == leases_.end() || !(l->second.entry == e->first)) continue;
      if (l->second.buffered) --buffered_;
      leases_.erase(l);
    }
    if (rereading_) reread_skip_.insert(e->first);
    entries_.erase(e);
  }

  // ------------------------------------------------------------- leases

  void Touch(int64_t now) {
    // Often enough that a live broker's records never look idle for a
    // registry TTL (FindDeadConsumers), and at least thrice per lease.
    next_touch_ms_ =
        now +
        std::max<int64_t>(1, std::min(o_.lease_ms / 3, o_.registry_ttl_ms / 2));
    if (entries_.empty()) return;
    std::array<std::vector<EntryId>, kLevels> held;
    std::vector<std::string> locks;
    for (const auto& [eid, e] : entries_) {
      held[e.pri].push_back(eid);
      if (!e.lock_key.empty() && !e.locking) {
        locks.push_back(e.lock_key);
        locks.push_back(keys_.stream[e.pri] + "|" + eid.ToString());
      }
    }
    for (int p = 0; p < kLevels; ++p) {
      for (size_t i = 0; i < held[p].size(); i += kTouchChunk) {
        auto chunk = std::make_shared<std::vector<EntryId>>(
            held[p].begin() + i,
            held[p].begin() + std::min(held[p].size(), i + kTouchChunk));
        std::vector<std::string> args = {"XCLAIM", keys_.stream[p], kRedisGroup,
                                         consumer_, "0"};
        for (const EntryId& e : *chunk) args.push_back(e.ToString());
        args.push_back("JUSTID");
        Send(std::move(args), [this, chunk](Result<RedisReply> r) {
          if (r.ok()) OnTouched(*chunk, *r);
        });
      }
    }
    if (!locks.empty()) {
      std::vector<std::string> args = keys_.Fcall("yard_touch_locks");
      args.push_back(std::to_string(o_.lease_ms));
      args.insert(args.end(), locks.begin(), locks.end());
      Send(std::move(args), nullptr);
    }
  }

  void OnTouched(const std::vector<EntryId>& sent, const RedisReply& reply) {
    std::vector<EntryId> kept;
    kept.reserve(reply.elements.size());
    for (const RedisReply& e : reply.elements) {
      if (auto id = EntryId::Parse(e.str)) kept.push_back(*id);
    }
    std::sort(kept.begin(), kept.end());
    for (const EntryId& entry : sent) {
      if (std::binary_search(kept.begin(), kept.end(), entry)) continue;
      auto e = entries_.find(entry);
      if (e == entries_.end()) continue;  // acked meanwhile
      // Reclaimed by the leader (this broker was too slow): its jobs run
      // again under a new entry id; forget this copy.
      ++c_.leases_lost;
      Forget(e);
    }
  }

  // ------------------------------------------------------------- leader

  void Lead(int64_t now) {
    next_lead_ms_ = now + std::max<int64_t>(1, o_.lease_ms / 6);
    auto args = keys_.Fcall("yard_lead");
    args.push_back(token_);
    args.push_back(std::to_string(std::max<int64_t>(2, o_.lease_ms / 2)));
    Send(std::move(args), [this](Result<RedisReply> r) {
      if (!r.ok()) return;
      const bool lead = r->integer > 0;
      if (lead && !leader_) {
        spdlog::info("this broker leads maintenance of queue '{}' (fence {})",
                     o_.queue, r->integer);
      } else if (!lead && leader_) {
        spdlog::warn("lost the maintenance lead of queue '{}'", o_.queue);
      }
      leader_ = lead;
      if (lead) fence_ = r->integer;
    });
  }

  void Promote(int64_t now) {
    next_promote_ms_ = now + kPromoteEveryMs;
    auto args = keys_.Fcall("yard_promote");
    args.push_back(std::to_string(kMaintenanceBatch));
    Send(std::move(args), [this](Result<RedisReply> r) {
      if (r.ok()) c_.promoted += static_cast<uint64_t>(r->integer);
    });
  }

  void Reap(int64_t now) {
    next_reap_ms_ = now + std::max<int64_t>(1, o_.lease_ms / 4);
    auto args = keys_.Fcall("yard_reap");
    args.push_back(kRedisGroup);
    args.push_back(std::to_string(o_.lease_ms));
    args.push_back(std::to_string(kMaintenanceBatch));
    args.push_back(std::to_string(o_.max_expiries));
    Send(std::move(args), [this](Result<RedisReply> r) {
      if (!r.ok() || r->elements.size() != 3) return;
      int64_t requeued = r->elements[0].integer, dead = r->elements[1].integer,
              vanished = r->elements[2].integer;
      c_.reclaimed += static_cast<uint64_t>(requeued);
      if (requeued || dead || vanished) {
        spdlog::warn(
            "expired leases: {} records requeued, {} dead-lettered, {} "
            "vanished",
            requeued, dead, vanished);
      }
    });
    // Result buckets past the TTL are gone (EXPIRE); drop them from the list.
    const int64_t oldest =
        (UnixMillis() / 1000 - o_.result_ttl_s) / kResultBucketSeconds - 1;
    Send({"ZREMRANGEBYSCORE", keys_.result_buckets, "-inf",
          std::to_string(oldest)},
         nullptr);
  }

  // ------------------------------------------------------------- registry

  // This broker's record in the registry (queue/registry.h): written on
  // connect (before the first claim, so the leader never takes a live
  // broker for a dead one), on every Advertise and at least every third of
  // its TTL.
  void WriteRecord(int64_t now) {
    if (!up_) return;
    next_record_ms_ = now + std::max<int64_t>(1, o_.registry_ttl_ms / 3);
    if (record_.empty()) {
      record_ = nlohmann::json{{"id", consumer_}, {"queue", o_.queue}}.dump();
    }
    RegistrySend({"SET", RegistryKey(consumer_), record_, "PX",
                  std::to_string(o_.registry_ttl_ms)},
                 nullptr);
    RegistrySend({"SADD", kRegistrySet, consumer_}, nullptr);
  }

  // Leader: consumers of the group that hold records but have no registry
  // record (their broker died or was cut off for a whole TTL) and have not
  // touched Redis for a TTL either: requeue what they hold now.
  void FindDeadConsumers(int64_t now) {
    next_dead_ms_ = now + std::max<int64_t>(1, o_.registry_ttl_ms / 3);
    // After an outage every record may have expired: give the other brokers
    // time to reconnect (their backoff) and write theirs first.
    if (now - connected_at_ms_ < o_.registry_ttl_ms + kReconnectMaxMs) return;
    if (dead_check_pending_) return;
    dead_check_pending_ = true;
    struct Acc {
      int left = kLevels;
      bool failed = false;
      std::map<std::string, int64_t> idle;  // holders -> least idle ms
    };
    auto acc = std::make_shared<Acc>();
    for (int p = 0; p < kLevels; ++p) {
      Send({"XINFO", "CONSUMERS", keys_.stream[p], kRedisGroup},
           [this, acc](Result<RedisReply> r) {
             if (!r.ok()) {
               acc->failed = true;
             } else {
               for (const RedisReply& c : r->elements) {
                 std::string name;
                 int64_t pending = 0, idle = 0;
                 for (size_t i = 0; i + 1 < c.elements.size(); i += 2) {
                   const std::string& k = c.elements[i].str;
                   const RedisReply& v = c.elements[i + 1];
                   if (k == "name") name = v.str;
                   if (k == "pending") pending = v.integer;
                   if (k == "idle") idle = v.integer;
                 }
                 if (pending == 0 || name.empty() || name == consumer_ ||
                     name.starts_with("__")) {
                   continue;
                 }
                 auto [it, fresh] = acc->idle.emplace(name, idle);
                 if (!fresh) it->second = std::min(it->second, idle);
               }
             }
             if (--acc->left > 0) return;
             if (acc->failed || acc->idle.empty()) {
               dead_check_pending_ = false;
               return;
             }
             CheckRegistered(std::move(acc->idle));
           });
    }
  }

  void CheckRegistered(std::map<std::string, int64_t> holders) {
    std::vector<std::string> args = {"MGET"};
    std::vector<std::string> names;
    for (const auto& [name, idle] : holders) {
      if (idle < o_.registry_ttl_ms) continue;  // active: alive
      args.push_back(RegistryKey(name));
      names.push_back(name);
    }
    if (names.empty()) {
      dead_check_pending_ = false;
      return;
    }
    RegistrySend(std::move(args), [this, names](Result<RedisReply> r) {
      dead_check_pending_ = false;
      if (!r.ok() || r->elements.size() != names.size()) return;
      for (size_t i = 0; i < names.size(); ++i) {
        if (r->elements[i].is_nil()) ReapConsumer(names[i]);
      }
    });
  }

  void ReapConsumer(const std::string& who) {
    auto args = keys_.Fcall("yard_reap_consumer");
    args.push_back(kRedisGroup);
    args.push_back(who);
    args.push_back(std::to_string(kMaintenanceBatch));
    args.push_back(std::to_string(o_.max_expiries));
    // Only records nobody touched for a TTL (a live broker touches its own
    // every TTL/2): a broker that is back takes its records with it.
    args.push_back(std::to_string(o_.registry_ttl_ms));
    Send(std::move(args), [this, who](Result<RedisReply> r) {
      if (!r.ok() || r->elements.size() != 4) {
        if (!r.ok()) {
          spdlog::warn("requeueing the records of dead broker {}: {}", who,
                       r.status().ToString());
        }
        return;
      }
      const int64_t requeued = r->elements[0].integer,
                    dead = r->elements[1].integer,
                    vanished = r->elements[2].integer,
                    left = r->elements[3].integer;
      c_.reclaimed += static_cast<uint64_t>(requeued);
      ++c_.dead_brokers;
      spdlog::warn(
          "broker {} is gone from the registry: {} of its records requeued "
          "now, {} dead-lettered, {} vanished{}",
          who, requeued, dead, vanished, left ? " (more to come)" : "");
      if (left) next_dead_ms_ = 0;  // the next page at the next turn
    });
  }

  // ------------------------------------------------------------- stats

  void RefreshStats(int64_t now) {
    next_stats_ms_ = now + kStatsEveryMs;
    if (stats_pending_) return;
    stats_pending_ = true;
    // len, pending, delayed, dead, queued
    auto acc = std::make_shared<std::array<int64_t, 5>>();
    for (int p = 0; p < kLevels; ++p) {
      Send({"XLEN", keys_.stream[p]}, [acc](Result<RedisReply> r) {
        if (r.ok()) (*acc)[0] += r->integer;
      });
      Send({"XPENDING", keys_.stream[p], kRedisGroup},
           [acc](Result<RedisReply> r) {
             if (r.ok() && !r->elements.empty()) {
               (*acc)[1] += r->elements[0].integer;
             }
           });
    }
    Send({"ZCARD", keys_.delayed}, [acc](Result<RedisReply> r) {
      if (r.ok()) (*acc)[2] = r->integer;
    });
    Send({"XLEN", keys_.dead}, [acc](Result<RedisReply> r) {
      if (r.ok()) (*acc)[3] = r->integer;
    });
    Send({"HGET", keys_.stats, "queued"}, [this, acc](Result<RedisReply> r) {
      stats_pending_ = false;
      if (r.ok() && r->type == RedisReply::Type::kString) {
        int64_t q = 0;
        std::from_chars(r->str.data(), r->str.data() + r->str.size(), q);
        (*acc)[4] = q;
      }
      cached_ready_ = std::max<int64_t>(0, (*acc)[0] - (*acc)[1]);
      cached_running_ = (*acc)[1];
      cached_delayed_ = (*acc)[2];
      cached_dead_ = (*acc)[3];
      cached_queued_ = static_cast<size_t>(std::max<int64_t>(0, (*acc)[4]));
    });
    ++c_.round_trips;
  }

  // ------------------------------------------------------------- dedupe

  void CheckDedupe(int64_t now) {
    next_dedupe_ms_ = now + kDedupeCheckEveryMs;
    if (dedupe_pending_ || !up_) return;
    const size_t n = std::min<size_t>(waiters_.size(), 256);
    auto batch = std::make_shared<std::vector<DedupeWaiter>>(
        waiters_.begin(), waiters_.begin() + n);
    waiters_.erase(waiters_.begin(), waiters_.begin() + n);
    dedupe_pending_ = true;
    // The first job's result is in a live bucket this waiter has not
    // searched yet, or in the newest one (which may still grow).
    const int64_t newest = UnixMillis() / 1000 / kResultBucketSeconds;
    const int64_t oldest = newest - o_.result_ttl_s / kResultBucketSeconds - 1;
    auto found = std::make_shared<std::vector<std::string>>(n);
    size_t gets = 0;
    for (const DedupeWaiter& w : *batch) {
      gets += static_cast<size_t>(newest - std::max(w.from_bucket, oldest) + 1);
    }
    auto left = std::make_shared<size_t>(gets);
    for (size_t i = 0; i < n; ++i) {
      const DedupeWaiter& w = (*batch)[i];
      for (int64_t b = newest; b >= std::max(w.from_bucket, oldest); --b) {
        Send({"HGET", keys_.ResultKey(b, w.first), w.first.ToString()},
             [this, batch, found, left, i, now, newest](Result<RedisReply> r) {
               if (r.ok() && r->type == RedisReply::Type::kString &&
                   (*found)[i].empty()) {
                 (*found)[i] = std::move(r->str);
               }
               if (--*left == 0) DedupeChecked(*batch, *found, now, newest);
             });
      }
    }
  }

  void DedupeChecked(std::vector<DedupeWaiter>& batch,
                     const std::vector<std::string>& found, int64_t now,
                     int64_t searched_to) {
    dedupe_pending_ = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      DedupeWaiter& w = batch[i];
      if (!found[i].empty() && VerifiedRoot<wire::JobResult>(found[i])) {
        AnswerDuplicate(w, found[i]);
      } else if (o_.result_ttl_s == 0 || now > w.deadline_ms) {
        AnswerDuplicate(w, {});
      } else {
        w.from_bucket = searched_to;
        waiters_.push_back(std::move(w));
      }
    }
  }

  void AnswerDuplicate(const DedupeWaiter& w, std::string_view first_result) {
    if (!sink_) return;
    Bytes out;
    if (first_result.empty()) {
      out = writer_.EncodeResult(
          w.dup, wire::ResultStatus::Failed, {},
          "idempotent duplicate of " + w.first.ToString() +
              ", whose result is not kept (result TTL 0 or expired)",
          0, 0, w.first);
    } else {
      const auto* r =
          flatbuffers::GetRoot<wire::JobResult>(first_result.data());
      Bytes output;
      if (r->output()) output = {r->output()->data(), r->output()->size()};
      out = writer_.EncodeResult(w.dup, r->status(), output,
                                 r->error() ? r->error()->string_view() : "",
                                 r->attempt(), r->duration_us(), w.first);
    }
    sink_(w.route, out);
  }

  // ------------------------------------------------------------- inbox

  void ReadInbox() {
    if (!up_ || reading_inbox_) return;
    reading_inbox_ = true;
    ++c_.commands;
    inbox_->Command(
        {"XREAD", "COUNT", "512", "BLOCK", std::to_string(kInboxBlockMs),
         "STREAMS", keys_.Inbox(consumer_), inbox_last_},
        [this](Result<RedisReply> r) {
          reading_inbox_ = false;
          if (!r.ok()) {
            if (r.status().code() == StatusCode::kUnavailable) {
              Lost(r.status().message());
            }
            return;
          }
          OnInbox(*r);
          ReadInbox();
        });
  }

  // Each inbox entry holds results for this broker's producers as pairs of
  // fields r (route) and p (JobResult blob).
  void OnInbox(const RedisReply& reply) {
    if (reply.elements.empty() || reply.elements[0].elements.size() != 2) {
      return;
    }
    std::string last;
    for (const RedisReply& entry : reply.elements[0].elements[1].elements) {
      if (entry.elements.size() != 2) continue;
      last = entry.elements[0].str;
      const auto& f = entry.elements[1].elements;
      for (size_t i = 0; i + 3 < f.size(); i += 4) {
        if (f[i].str != "r" || f[i + 2].str != "p" ||
            !VerifiedRoot<wire::JobResult>(f[i + 3].str)) {
          spdlog::warn("redis: inbox entry {} holds a bad result; skipped",
                       last);
          continue;
        }
        if (sink_) sink_(f[i + 1].str, AsBytes(f[i + 3].str));
      }
    }
    if (last.empty()) return;
    inbox_last_ = last;
    if (auto e = EntryId::Parse(last)) {
      EntryId next{e->ms, e->seq + 1};
      Send({"XTRIM", keys_.Inbox(consumer_), "MINID", next.ToString()},
           nullptr);
    }
  }

  // ------------------------------------------------------------- plumbing

  // A command on the main connection. An Unavailable answer (the
  // connection broke, or in a Cluster the slot moved) marks it lost before
  // `done` (if any) sees the answer.
  void Send(std::vector<std::string> args, RedisClient::Callback done) {
    ++c_.commands;
    main_->Command(
        std::move(args), [this, done = std::move(done)](Result<RedisReply> r) {
          if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
            Lost(r.status().message());
          }
          if (done) done(std::move(r));
        });
  }

  // Where the registry (queue/registry.h, the "{yard}" slot) is: the main
  // connection, or in a Cluster a connection of its own (null while down).
  RedisClient* Registry() const {
    return registry_target_ ? registry_.get() : main_.get();
  }

  // A registry command. In a Cluster the registry's slot may be on another
  // primary than the shard's: its failure only makes the registry
  // connection reconnect (TickRegistry); the shard serves on. Meanwhile the
  // record is not refreshed (a live broker still touches its leases, so no
  // leader reaps it) and this leader reaps no one.
  void RegistrySend(std::vector<std::string> args, RedisClient::Callback done) {
    if (!registry_target_) return Send(std::move(args), std::move(done));
    if (!registry_ || !registry_->connected()) {
      registry_lost_ = true;
      if (done) done(Status::Unavailable("registry connection down"));
      return;
    }
    ++c_.commands;
    registry_->Command(
        std::move(args), [this, done = std::move(done)](Result<RedisReply> r) {
          if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
            registry_lost_ = true;
          }
          if (done) done(std::move(r));
        });
  }

  // Cluster: (re)connects the registry's connection, with its own backoff.
  void TickRegistry(int64_t now) {
    if (registry_ && registry_->connected() && !registry_lost_) return;
    if (now < next_registry_connect_ms_) return;
    registry_.reset();  // answers its pending commands
    registry_lost_ = false;
    auto c = ConnectRedisTarget(*registry_target_, 300);
    if (!c.ok()) {
      if (registry_backoff_ms_ == kReconnectMinMs) {
        spdlog::warn("redis: the registry's slot ({}) is unreachable: {}",
                     registry_target_->key, c.status().ToString());
      }
      registry_backoff_ms_ =
          std::min(kReconnectMaxMs, registry_backoff_ms_ * 2);
      next_registry_connect_ms_ = now + registry_backoff_ms_;
      return;
    }
    registry_ = std::move(c).value();
    registry_backoff_ms_ = kReconnectMinMs;
    WriteRecord(now);
  }

  // Marks the connection lost; Tick tears it down (not from inside a
  // callback, where the clients are still in use).
  void Lost(const std::string& why) {
    if (!lost_) lost_reason_ = why;
    lost_ = true;
  }

  void Down(const std::string& why, int64_t now) {
    // In a Cluster, a slot on the move makes a shard reconnect every
    // backoff until the move ends: say so once per move, not every time.
    const bool moving =
        target_.kind == RedisTarget::Kind::kCluster && IsSlotMoving(why);
    if (!moving) {
      spdlog::error(
          "redis {}:{} lost ({}): submits get Unavailable until it is back",
          address_.host, address_.port, why);
    } else if (now - last_moving_log_ms_ > kMovingLogEveryMs) {
      spdlog::warn(
          "redis {}:{}: the slot of {{{}}} is moving ({}); this shard "
          "reconnects until it has settled, and its submits go to the others",
          address_.host, address_.port, keys_.tag, why);
    }
    if (moving) last_moving_log_ms_ = now;
    up_ = false;
    down_reason_ = why;
    leader_ = false;
    // Destroying the clients answers their pending commands (Unavailable):
    // push batches report it, write batches go to replay_.
    main_.reset();
    claim_.reset();
    inbox_.reset();
    claiming_ = reading_inbox_ = stats_pending_ = dedupe_pending_ = false;
    lost_ = false;
    lost_reason_.clear();
    reconnect_backoff_ms_ = kReconnectMinMs;
    next_connect_ms_ = now + reconnect_backoff_ms_;
  }

  Status Connect(int64_t timeout_ms) {
    auto primary = ResolveRedisTarget(target_, timeout_ms);
    if (!primary.ok()) return primary.status();
    if (primary->host != address_.host || primary->port != address_.port) {
      if (target_.kind == RedisTarget::Kind::kSentinel) {
        spdlog::warn("redis primary of {} is {}:{}{}", target_.ToString(),
                     primary->host, primary->port,
                     address_.host.empty()
                         ? std::string()
                         : " (was " + address_.host + ":" +
                               std::to_string(address_.port) + ")");
      }
      address_ = std::move(primary).value();
    }
    auto main = RedisClient::Connect(address_, timeout_ms);
    if (!main.ok()) return main.status();
    if (auto s =
            EnsureQueue(**main, keys_, std::max<int64_t>(timeout_ms, 2000));
        !s.ok()) {
      return s;
    }
    auto claim = RedisClient::Connect(address_, timeout_ms);
    if (!claim.ok()) return claim.status();
    auto inbox = RedisClient::Connect(address_, timeout_ms);
    if (!inbox.ok()) return inbox.status();
    main_ = std::move(main).value();
    claim_ = std::move(claim).value();
    inbox_ = std::move(inbox).value();
    if (!down_reason_.empty()) {
      ++c_.reconnects;
      // A claim whose reply died with the connection left its records in
      // this consumer's pending list; read them back now rather than wait a
      // lease for the leader to reap them.
      for (std::string& from : reread_from_) from = "0";
    }
    up_ = true;
    connected_at_ms_ = MonoMillis();
    last_claim_empty_ = false;
    last_bucket_ = -1;
    if (registry_target_) {
      next_registry_connect_ms_ = 0;
      TickRegistry(MonoMillis());  // writes the record once connected
    }
    WriteRecord(MonoMillis());
    ReadInbox();
    return Status::OK();
  }

  Status CheckFsync() {
    auto r = RedisCall(*main_, {"CONFIG", "GET", "append*"}, 2000);
    if (!r.ok()) {
      return Status::InvalidArgument(
          "--require-fsync: cannot read Redis's AOF settings: " +
          r.status().message());
    }
    std::string appendonly, appendfsync;
    for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
      if (r->elements[i].str == "appendonly") {
        appendonly = r->elements[i + 1].str;
      }
      if (r->elements[i].str == "appendfsync") {
        appendfsync = r->elements[i + 1].str;
      }
    }
    if (appendonly != "yes" || appendfsync != "always") {
      return Status::InvalidArgument(
          "--require-fsync: Redis has appendonly " + appendonly +
          ", appendfsync " + appendfsync +
          "; accepted jobs are fsynced only with appendonly yes and "
          "appendfsync always");
    }
    return Status::OK();
  }

  struct Counters {
    uint64_t submitted = 0, claimed = 0, completed = 0, retried = 0, dead = 0;
    uint64_t stale = 0, leases_lost = 0, dup_dropped = 0, idempotent = 0;
    uint64_t undecodable = 0, parked = 0, reclaimed = 0, promoted = 0;
    uint64_t busy_batches = 0, reconnects = 0, commands = 0, round_trips = 0;
    uint64_t dead_brokers = 0;  // consumers reaped for lack of a record
  };

  const RedisQueueOptions o_;
  // Where Redis is, and the primary the last Connect() resolved it to
  // (sentinel:// is resolved again on every reconnect).
  RedisTarget target_;
  RedisAddress address_;
  const QueueKeys keys_;
  const std::string consumer_;
  const std::string token_;  // leader lock token

  // When a reconnect for a moving slot was last logged (Down).
  static constexpr int64_t kMovingLogEveryMs = 10000;
  int64_t last_moving_log_ms_ = -kMovingLogEveryMs - 1;
  bool now_moving() const {
    return MonoMillis() - last_moving_log_ms_ <= kMovingLogEveryMs;
  }
  // Cluster targets: the registry's slot ("{yard}") and its connection.
  std::optional<RedisTarget> registry_target_;
  bool registry_lost_ = false;
  int64_t registry_backoff_ms_ = kReconnectMinMs;
  int64_t next_registry_connect_ms_ = 0;
  std::unique_ptr<RedisClient> main_, claim_, inbox_, registry_;
  std::array<RedisClient*, 4> polled_{};
  bool up_ = false;
  bool lost_ = false;
  std::string lost_reason_, down_reason_;
  int64_t reconnect_backoff_ms_ = kReconnectMinMs;
  int64_t next_connect_ms_ = 0;

  std::unordered_map<EntryId, Entry, EntryIdHash> entries_;
  std::unordered_map<JobId, Lease, JobIdHash> leases_;
  std::array<std::deque<JobId>, kLevels> ready_;
  size_t buffered_ = 0;
  int starved_ = 0;
  size_t want_ = 0;
  size_t pushing_ = 0;
  // WAIT (o_.wait_replicas > 0): batches whose writes went out after the
  // WAIT in flight (if any) and wait for the next one; whether one is in
  // flight; whether the last one found too few replicas.
  std::vector<std::shared_ptr<PushBatch>> wait_next_;
  bool waiting_replicas_ = false;
  bool replicas_short_ = false;
  bool claiming_ = false;
  bool last_claim_empty_ = false;
  // After a reconnect (RereadPending): the id each stream's next page
  // starts after ("": none), and whether a read-back is under way.
  std::array<std::string, kLevels> reread_from_;
  bool rereading_ = false;
  std::unordered_set<EntryId, EntryIdHash> reread_skip_;
  bool draining_ = false;
  std::vector<ClaimedJob> claimed_;

  WriteBatch batch_;
  std::vector<std::vector<std::vector<std::string>>> replay_;
  size_t writes_ = 0;  // MULTI batches and give-backs awaiting replies
  int64_t last_bucket_ = -1;
  uint32_t expiring_ = 0;  // result keys of last_bucket_ given an EXPIRE

  std::vector<DedupeWaiter> waiters_;
  bool dedupe_pending_ = false;
  int64_t next_dedupe_ms_ = 0;

  bool reading_inbox_ = false;
  std::string inbox_last_ = "0-0";
  ResultSink sink_;
  Writer writer_;

  bool leader_ = false;
  int64_t fence_ = 0;
  std::string record_;  // this broker's registry record (JSON)
  int64_t next_record_ms_ = 0, next_dead_ms_ = 0;
  int64_t connected_at_ms_ = 0;
  bool dead_check_pending_ = false;
  int64_t next_touch_ms_ = 0, next_lead_ms_ = 0, next_promote_ms_ = 0,
          next_reap_ms_ = 0, next_stats_ms_ = 0;

  bool stats_pending_ = false;
  int64_t cached_ready_ = 0, cached_running_ = 0, cached_delayed_ = 0,
          cached_dead_ = 0;
  size_t cached_queued_ = 0;

  Counters c_;
};

// The queue's shard count (RedisQueueOptions::shards), agreed through the
// key in the registry's slot.
Result<int> SettleShards(const RedisTarget& target,
                         const RedisQueueOptions& options) {
  RedisTarget registry = target;
  auto client = ConnectRegistry(registry, options.connect_timeout_ms);
  if (!client.ok()) return client.status();
  int fallback = 1;
  if (target.kind == RedisTarget::Kind::kCluster && options.shards == 0) {
    auto map = FetchSlotMap(target.addresses, options.connect_timeout_ms);
    if (!map.ok()) return map.status();
    fallback = std::clamp<int>(static_cast<int>(map->Primaries().size()), 1,
                               kMaxQueueShards);
  }
  return SettleShardCount(**client, options.queue, options.shards, fallback,
                          options.connect_timeout_ms);
}

}  // namespace

Result<std::unique_ptr<JobQueue>> NewRedisQueue(
    const RedisQueueOptions& options) {
  auto target = ParseRedisTarget(options.url);
  if (!target.ok()) return target.status();
  if (auto s = ValidateQueueName(options.queue); !s.ok()) return s;
  if (options.lease_ms < 100) {
    return Status::InvalidArgument("the lease must be at least 100 ms");
  }
  if (options.dedupe_ids_ttl_s < 0 ||
      (options.dedupe_ids_ttl_s > 0 && options.result_ttl_s == 0)) {
    return Status::InvalidArgument(
        "--dedupe-ids needs kept results (--result-ttl > 0): a deduplicated "
        "resend is answered with the first copy's stored result");
  }
  if (options.claim_batch == 0 || options.capacity == 0 ||
      options.max_expiries < 1 || options.result_ttl_s < 0 ||
      options.dedupe_ttl_s < 1) {
    return Status::InvalidArgument("durable queue bounds must be positive");
  }
  if (options.wait_replicas < 0 || options.wait_replicas > 100) {
    return Status::InvalidArgument("WAIT replicas must be 0..100");
  }
  if (options.wait_replicas > 0 &&
      options.wait_timeout_ms * 2 >= options.registry_ttl_ms) {
    return Status::InvalidArgument(
        "the WAIT timeout must be under half the registry TTL (" +
        std::to_string(options.registry_ttl_ms) +
        " ms, three heartbeats): a WAIT holds up the broker's registry "
        "refresh and lease touches");
  }
  if (options.wait_replicas > 0 &&
      (options.wait_timeout_ms < 1 ||
       options.wait_timeout_ms > options.lease_ms / 3)) {
    return Status::InvalidArgument(
        "the WAIT timeout must be 1.." + std::to_string(options.lease_ms / 3) +
        " ms (a WAIT holds up lease touches: at most a third of the lease)");
  }
  if (options.shards < 0 || options.shards > kMaxQueueShards) {
    return Status::InvalidArgument("the shard count must be 1.." +
                                   std::to_string(kMaxQueueShards));
  }
  auto shards = SettleShards(*target, options);
  if (!shards.ok()) return shards.status();
  RedisQueueOptions o = options;
  if (o.consumer.empty()) o.consumer = DefaultConsumer();  // one for all
  // The capacity bounds the whole queue: each shard holds its share.
  o.capacity = std::max<size_t>(
      1, (options.capacity + *shards - 1) / static_cast<size_t>(*shards));
  std::vector<std::unique_ptr<JobQueue>> queues;
  for (int k = 0; k < *shards; ++k) {
    auto q = std::make_unique<RedisQueue>(o, *target, k, *shards);
    if (auto s = q->Start(); !s.ok()) return s;
    queues.push_back(std::move(q));
  }
  if (queues.size() == 1) return std::move(queues.front());
  spdlog::info("queue '{}' has {} shards", options.queue, *shards);
  return NewShardedQueue(std::move(queues),
                         {.route_by_id = options.dedupe_ids_ttl_s > 0});
}

}  // namespace yard
