// The chaos schedule of a run (loadtest/run.h): worker and broker kills,
// a broker added, Redis restarted, a slot migrated; each an event of the
// report.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <string>
#include <utility>

#include "common/clock.h"
#include "loadtest/run.h"
#include "queue/redis_layout.h"
#include "redis/redis_cluster.h"

namespace yard::loadtest_internal {
namespace {

// --migrate-slot-at: keys moved per tick of the main loop (one CLUSTER
// GETKEYSINSLOT and one MIGRATE), so the loop never stalls for long.
constexpr int kMigrateKeysPerTick = 10;

}  // namespace

// `now`: when it happened (a slot migration's event, recorded at its end,
// has the time it began).
LoadEvent& Run::Event(int64_t now, const char* what, Result<std::string> r) {
  LoadEvent e;
  e.t = Since(now);
  e.what = what;
  e.ok = r.ok();
  e.detail = r.ok() ? *r : r.status().ToString();
  if (!e.ok) report_.problems.push_back(std::string(what) + ": " + e.detail);
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fprintf(log_, "[%7.2fs] %s: %s\n", e.t, what, e.detail.c_str());
  std::fflush(log_);
  auto& events = report_.events;
  auto after = std::upper_bound(
      events.begin(), events.end(), e.t,
      [](double t, const LoadEvent& other) { return t < other.t; });
  return *events.insert(after, std::move(e));
}

void Run::BeginMigration(int64_t now) {
  RedisCluster* redis = cluster_->redis_cluster();
  if (redis == nullptr) {
    Event(now, "migrate-slot", Status::InvalidArgument("no Redis Cluster"));
    return;
  }
  // Shard 0's hash tag: QueueKeys knows the one-shard layout ("jq:NAME")
  // from the sharded one (ShardHashTag).
  const std::string queue = QueueName(o_);
  auto shards = ReadQueueShards(cluster_->redis_url(), queue);
  if (!shards.ok()) {
    Event(now, "migrate-slot",
          Status(shards.status().code(),
                 "cannot read the shard count: " + shards.status().message()));
    return;
  }
  Migration m;
  m.began_us = now;
  m.shards = *shards;
  const QueueKeys keys(queue, 0, m.shards);
  std::string tagged = "{";
  tagged += keys.tag;
  tagged += '}';
  m.slot = KeySlot(tagged);
  auto from = redis->Owner(m.slot);
  if (!from.ok()) {
    Event(now, "migrate-slot", from.status());
    return;
  }
  m.from = *from;
  m.to = (m.from + 1) % redis->size();
  m.what = "slot " + std::to_string(m.slot) + " (" + tagged + ", shard 0 of " +
           std::to_string(m.shards) + " of queue " + queue + ") from node " +
           std::to_string(m.from) + " (port " +
           std::to_string(redis->node(m.from).port()) + ") to node " +
           std::to_string(m.to) + " (port " +
           std::to_string(redis->node(m.to).port()) + ")";
  if (Status st = redis->BeginMigration(m.slot, m.to); !st.ok()) {
    Event(now, "migrate-slot", Status(st.code(), m.what + ": " + st.message()));
    return;
  }
  if (progress_drawn_) std::fprintf(log_, "\r\x1b[K");
  std::fprintf(log_, "[%7.2fs] migrate-slot: %s begun\n", Since(now),
               m.what.c_str());
  std::fflush(log_);
  migration_ = std::move(m);
}

void Run::StepMigration() {
  Migration& m = *migration_;
  auto moved = cluster_->redis_cluster()->MoveKeys(kMigrateKeysPerTick);
  ++m.steps;
  if (moved.ok() && *moved > 0) {
    m.moved += *moved;
    return;
  }
  if (!moved.ok()) {
    // The slot stays MIGRATING/IMPORTING: the report says how far it got.
    Event(m.began_us, "migrate-slot",
          Status(moved.status().code(),
                 m.what + ": after " + std::to_string(m.moved) +
                     " keys: " + moved.status().message()));
    migration_.reset();
    return;
  }
  FinishMigration();
}

void Run::FinishMigration() {
  Migration m = std::move(*migration_);
  migration_.reset();
  RedisCluster* redis = cluster_->redis_cluster();
  // What is left (all of it when the run ends early), then SETSLOT NODE.
  auto rest = redis->MoveKeys(INT32_MAX);
  Status st = rest.ok() ? redis->FinishMigration() : rest.status();
  if (rest.ok()) m.moved += *rest;
  const int64_t ms = (MonoMicros() - m.began_us) / 1000;
  Result<std::string> r =
      st.ok() ? Result<std::string>(m.what + ": " + std::to_string(m.moved) +
                                    " keys moved in " + std::to_string(ms) +
                                    " ms (" + std::to_string(m.steps) +
                                    " steps of at most " +
                                    std::to_string(kMigrateKeysPerTick) + ")")
              : Result<std::string>(Status(
                    st.code(), m.what + ": after " + std::to_string(m.moved) +
                                   " keys: " + st.message()));
  Event(m.began_us, "migrate-slot", std::move(r)).numbers = {
      {"slot", m.slot},
      {"from_node", static_cast<int64_t>(m.from)},
      {"to_node", static_cast<int64_t>(m.to)},
      {"shards", m.shards},
      {"keys_moved", m.moved},
      {"duration_ms", ms},
  };
}

void Run::Chaos(int64_t now, bool loading) {
  if (!cluster_) return;
  // A migration under way goes on after the load ends; it begins only
  // while the load runs.
  if (migration_) {
    StepMigration();
  } else if (loading && migrate_at_us_ && now >= migrate_at_us_) {
    migrate_at_us_ = 0;
    BeginMigration(now);
  }
  // Kills happen while the load runs; a killed broker is always restarted.
  if (loading && next_worker_kill_us_ && now >= next_worker_kill_us_) {
    Event(now, "kill-worker", cluster_->KillWorker());
    // After a slow step, the next kill is a whole period away, not at once.
    const auto every = static_cast<int64_t>(o_.kill_worker_every_s * 1e6);
    while (next_worker_kill_us_ <= MonoMicros()) next_worker_kill_us_ += every;
  }
  if (loading && broker_kill_us_ && now >= broker_kill_us_) {
    broker_kill_us_ = 0;
    Event(now, "kill-broker", cluster_->KillBroker(0));
    if (!o_.broker_stays_down) {
      broker_restart_us_ = now + static_cast<int64_t>(o_.broker_down_s * 1e6);
    }
  }
  if (loading && broker_add_us_ && now >= broker_add_us_) {
    broker_add_us_ = 0;
    Event(now, "add-broker", cluster_->AddBroker());
  }
  if (broker_restart_us_ && now >= broker_restart_us_) {
    broker_restart_us_ = 0;
    Event(now, "restart-broker", cluster_->RestartBroker(0));
  }
  if (loading && redis_restart_us_ && now >= redis_restart_us_) {
    redis_restart_us_ = 0;
    Event(now, "restart-redis", cluster_->RestartRedis());
  }
}

}  // namespace yard::loadtest_internal
