// The durable queue's construction, its part in the broker's loop (Tick,
// poll items), its stats, and NewRedisQueue. The design is described in
// queue/redis_queue_impl.h.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "queue/redis_queue_impl.h"
#include "queue/sharded_queue.h"
#include "redis/redis_cluster.h"
#include "registry/registry.h"

namespace yard::redis_queue_internal {
namespace {

// "<host>-<pid>-<random>": a consumer name unique to this process.
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

}  // namespace

RedisQueue::RedisQueue(RedisQueueOptions o, RedisTarget target, int shard,
                       int shards)
    : o_(std::move(o)),
      keys_(o_.queue, shard, shards),
      consumer_(o_.consumer.empty() ? DefaultConsumer() : o_.consumer),
      token_(consumer_ + ":" + JobId::Random().ToString()),
      target_(std::move(target)) {
  // In a Cluster: the primary serving this shard's slot, and (for the
  // registry, which lives in the "{yard}" slot) that slot's primary.
  target_.key = "{" + keys_.tag + "}";
  if (target_.kind == RedisTarget::Kind::kCluster) {
    registry_target_ = target_;
    registry_target_->key = kRegistryHashTag;
  }
}

RedisQueue::~RedisQueue() {
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
  // use the other members: end the clients while those still exist.
  probe_.reset();
  inbox_.reset();
  claim_.reset();
  registry_.reset();
  main_.reset();
}

Status RedisQueue::Start() {
  if (auto s = Connect(o_.connect_timeout_ms); !s.ok()) return s;
  if (o_.require_fsync) {
    if (auto s = CheckFsync(); !s.ok()) return s;
  }
  spdlog::info("durable queue '{}' ({{{}}}) on redis {}:{} as {} (lease {} ms)",
               o_.queue, keys_.tag, address_.host, address_.port, consumer_,
               o_.lease_ms);
  return Status::OK();
}

// One turn of the broker's loop: reconnects when Redis was lost, sends this
// turn's write batch, claims, and runs the maintenance that is due.
void RedisQueue::Tick(int64_t now) {
  if (up_ && !lost_) CheckDeadlines(now);
  if (up_ && (lost_ || !main_->connected() || !claim_->connected() ||
              !inbox_->connected())) {
    Down(lost_reason_.empty() ? "connection lost" : lost_reason_, now);
  }
  if (!up_) {
    if (!Reconnect(now)) return;
    spdlog::info(
        "redis up: {}:{}; {} buffered, {} leased, {} write batches to resend",
        address_.host, address_.port, buffered_, leases_.size() - buffered_,
        replay_.size());
  }
  if (registry_target_) TickRegistry(now);
  Flush();
  if (now >= next_control_ms_) PollControl(now);
  TakeTokens(now);
  MaybeClaim();
  if (now >= next_touch_ms_) Touch(now);
  if (now >= next_lead_ms_) Lead(now);
  if (leader_ && now >= next_promote_ms_) Promote(now);
  if (leader_ && now >= next_reap_ms_) Reap(now);
  if (leader_ && now >= next_dead_ms_) FindDeadConsumers(now);
  if (leader_ && o_.max_dead > 0 && now >= next_trim_ms_) TrimDead(now);
  if (now >= next_record_ms_) WriteRecord(now);
  if (now >= next_stats_ms_) RefreshStats(now);
  if (!waiters_.empty() && now >= next_dedupe_ms_) CheckDedupe(now);
}

bool RedisQueue::HasReady(int64_t) {
  return buffered_ > 0 && Dispatchable(1) > 0;
}

void RedisQueue::DrainWaiting(const std::function<void(const ClaimedJob&)>&) {
  // Nothing to hand back: every accepted job is in Redis.
}

QueueStats RedisQueue::Stats() const {
  QueueStats s;
  s.ready = buffered_;
  s.leased = leases_.size() - buffered_;
  s.capacity = o_.capacity;
  return s;
}

bool RedisQueue::available() const { return up_; }

void RedisQueue::SetResultSink(ResultSink sink) { sink_ = std::move(sink); }

void RedisQueue::Want(size_t n) { want_ = n; }

int RedisQueue::PollItems(zmq_pollitem_t* items, int max) {
  int n = 0;
  polled_.fill(nullptr);
  for (RedisClient* c : {main_.get(), claim_.get(), inbox_.get(),
                         registry_.get(), probe_.get()}) {
    if (n >= max || !c || c->fd() < 0) continue;
    items[n] = {nullptr, c->fd(), c->events(), 0};
    polled_[n++] = c;
  }
  return n;
}

void RedisQueue::OnPollEvents(const zmq_pollitem_t* items, int n) {
  for (int i = 0; i < n && i < static_cast<int>(polled_.size()); ++i) {
    if (items[i].revents && polled_[i]) {
      polled_[i]->HandleEvents(items[i].revents);
    }
  }
}

void RedisQueue::DescribeStats(nlohmann::json* j) const {
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
                     {"cancel_records", cancels_recorded_},
                     {"paused", control_.paused},
                     {"rate_limit", control_.rate},
                     {"tokens", tokens_},
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
                       {"tokens_taken", c_.tokens_taken},
                       {"tokens_refused", c_.tokens_refused},
                       {"dead_records_trimmed", c_.dead_trimmed},
                       {"recorded_cancels_done", c_.cancelled},
                       {"recorded_cancels_refused", c_.cancels_refused},
                       {"busy_batches", c_.busy_batches},
                       {"reconnects", c_.reconnects},
                       {"redis_commands", c_.commands},
                       {"redis_round_trips", c_.round_trips}}}};
}

}  // namespace yard::redis_queue_internal

namespace yard {
namespace {

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

Result<std::unique_ptr<DurableQueue>> NewRedisQueue(
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
  // One consumer name for all shards.
  if (o.consumer.empty()) o.consumer = redis_queue_internal::DefaultConsumer();
  // The capacity bounds the whole queue: each shard holds its share.
  o.capacity = std::max<size_t>(
      1, (options.capacity + *shards - 1) / static_cast<size_t>(*shards));
  std::vector<std::unique_ptr<DurableQueue>> queues;
  for (int k = 0; k < *shards; ++k) {
    auto q = std::make_unique<redis_queue_internal::RedisQueue>(o, *target, k,
                                                                *shards);
    if (auto s = q->Start(); !s.ok()) return s;
    queues.push_back(std::move(q));
  }
  if (queues.size() == 1) return std::move(queues.front());
  spdlog::info("queue '{}' has {} shards", options.queue, *shards);
  return NewShardedQueue(std::move(queues),
                         {.route_by_id = options.dedupe_ids_ttl_s > 0});
}

}  // namespace yard
