// ValidateLoadtest and EffectiveTimeoutS (loadtest/loadtest.h). The checks
// run in a fixed order, and the first that fails names the flag: the load,
// the cluster it runs on, the chaos schedule, Redis.
#include <cmath>
#include <string>

#include "loadtest/ledger.h"
#include "loadtest/loadtest.h"
#include "loadtest/local_cluster.h"
#include "schemas/frames.h"

namespace yard {
namespace {

constexpr double kMaxSeconds = 24 * 3600;
constexpr int kMaxClusterPrimaries = 16;

Status Bad(const std::string& message) {
  return Status::InvalidArgument(message);
}

// A number of seconds a flag may give (not NaN, at most a day).
bool SecondsOk(double s) { return std::isfinite(s) && s <= kMaxSeconds; }

// How many jobs, how big, how fast, and the deadlines.
Status CheckLoad(const LoadtestOptions& o) {
  if (o.producers < 1) return Bad("--producers: must be at least 1");
  if (o.producers > 64) return Bad("--producers: at most 64");
  if (o.jobs == 0 && !(o.duration_s > 0)) {
    return Bad("give --jobs N or --duration SECONDS");
  }
  if (o.jobs > Ledger::kMaxJobs * static_cast<uint64_t>(o.producers)) {
    return Bad("--jobs: at most 2^30 per producer");
  }
  if (o.duration_s < 0 || !SecondsOk(o.duration_s)) {
    return Bad("--duration: must be between 0 and 86400 seconds");
  }
  const auto max_payload = static_cast<int64_t>(Limits().max_payload_bytes);
  if (o.size < 0 || o.size > max_payload) {
    return Bad("--size: must be between 0 and " + std::to_string(max_payload) +
               " bytes (a job's payload limit)");
  }
  if (o.payload_given && static_cast<int64_t>(o.payload.size()) > max_payload) {
    return Bad("--payload: longer than a job's payload limit");
  }
  if (o.task.empty()) return Bad("--task: must not be empty");
  if (o.window < 1) return Bad("--window: must be at least 1");
  if (o.rate < 0 || !std::isfinite(o.rate)) {
    return Bad("--rate: must be greater than 0");
  }
  if (o.rate > 1e8) return Bad("--rate: at most 100000000 jobs/s");
  if (o.batch < 1 || o.batch > 65536) {
    return Bad("--batch: must be between 1 and 65536");
  }
  return Status::OK();
}

Status CheckDeadlines(const LoadtestOptions& o) {
  if (o.job_timeout_s < 0 || !SecondsOk(o.job_timeout_s)) {
    return Bad("--job-timeout: must be greater than 0");
  }
  if (o.timeout_s < 0 || !SecondsOk(o.timeout_s)) {
    return Bad("--timeout: must be greater than 0");
  }
  if (!(o.connect_timeout_s > 0) || !SecondsOk(o.connect_timeout_s)) {
    return Bad("--connect-timeout: must be greater than 0");
  }
  if (o.duration_s > 0 && o.timeout_s > 0 && o.timeout_s < o.duration_s) {
    return Bad("--timeout: shorter than --duration");
  }
  return Status::OK();
}

// Brokers found in the registry, and broker changes that need it.
Status CheckDiscovery(const LoadtestOptions& o) {
  const bool durable = !o.redis.empty() || o.redis_cluster > 0;
  if (o.discover && (!o.connect.empty() || !durable)) {
    return Bad(
        "--discover: needs --redis or --redis-cluster (brokers register "
        "there) and the cluster the load tester starts");
  }
  if (o.add_broker_at_s >= 0 && !o.discover) {
    return Bad(
        "--add-broker-at: needs --discover (a fixed broker list cannot grow)");
  }
  if (o.broker_stays_down && o.kill_broker_at_s < 0) {
    return Bad("--broker-stays-down: needs --kill-broker-at");
  }
  return Status::OK();
}

// --connect: an existing cluster on this machine, which the load tester
// neither sets up nor breaks.
Status CheckExternalCluster(const LoadtestOptions& o) {
  for (const std::string& ep : o.connect) {
    if (Status st = ValidateEndpoint(ep); !st.ok()) {
      return Bad("--connect: " + st.message());
    }
    if (!IsLoopbackEndpoint(ep)) {
      return Bad("--connect: " + ep +
                 " is not a loopback endpoint (the load tester drives "
                 "clusters on this machine only)");
    }
  }
  const bool chaos = o.kill_worker_every_s > 0 || o.kill_broker_at_s >= 0 ||
                     o.restart_redis_at_s >= 0 || o.add_broker_at_s >= 0 ||
                     o.migrate_slot_at_s >= 0;
  if (chaos) {
    return Bad(
        "--kill-worker-every, --kill-broker-at, --restart-redis-at and "
        "--migrate-slot-at need the cluster the load tester starts (drop "
        "--connect)");
  }
  if (!o.redis.empty()) {
    return Bad(
        "--redis: sets up the cluster the load tester starts (drop "
        "--connect, or --redis)");
  }
  if (o.redis_cluster > 0) {
    return Bad(
        "--redis-cluster: sets up the cluster the load tester starts (drop "
        "--connect, or --redis-cluster)");
  }
  return Status::OK();
}

// The cluster the load tester starts: its size.
Status CheckLocalCluster(const LoadtestOptions& o) {
  if (o.brokers < 1 || o.brokers > 16) {
    return Bad("--brokers: must be between 1 and 16");
  }
  if (o.workers < 0 || o.workers > 64) {
    return Bad("--workers: must be between 0 and 64");
  }
  if (o.concurrency < 1 || o.concurrency > 1024) {
    return Bad("--concurrency: must be between 1 and 1024");
  }
  return Status::OK();
}

Status CheckCluster(const LoadtestOptions& o) {
  Status st =
      o.connect.empty() ? CheckLocalCluster(o) : CheckExternalCluster(o);
  if (!st.ok()) return st;
  if (!o.redis.empty() && o.redis != "local" && !IsLoopbackRedisUrl(o.redis)) {
    return Bad(
        "--redis: give 'local' or a redis://127.0.0.1:PORT URL (the "
        "load tester uses this machine only)");
  }
  return Status::OK();
}

// Worker kills, and the times of the one-off events.
Status CheckChaos(const LoadtestOptions& o) {
  if ((o.kill_worker_every_s >= 0 && o.kill_worker_every_s < 0.1) ||
      !SecondsOk(o.kill_worker_every_s)) {
    return Bad("--kill-worker-every: must be at least 0.1 seconds");
  }
  if (o.kill_worker_every_s > 0 && o.workers < 1) {
    return Bad("--kill-worker-every: there are no workers to kill");
  }
  if (!SecondsOk(o.kill_broker_at_s) || !SecondsOk(o.restart_redis_at_s) ||
      !SecondsOk(o.add_broker_at_s) || !SecondsOk(o.migrate_slot_at_s)) {
    return Bad("chaos times must be in seconds");
  }
  if (o.broker_down_s < 0 || !SecondsOk(o.broker_down_s)) {
    return Bad("--broker-down: must be at least 0");
  }
  return Status::OK();
}

// The Redis the load tester starts (a server or a cluster), and the chaos
// that needs one.
Status CheckRedis(const LoadtestOptions& o) {
  if (o.redis_cluster < 0 || o.redis_cluster > kMaxClusterPrimaries) {
    return Bad("--redis-cluster: must be between 1 and " +
               std::to_string(kMaxClusterPrimaries) + " primaries");
  }
  if (o.redis_cluster > 0 && !o.redis.empty()) {
    return Bad(
        "--redis-cluster: excludes --redis (it starts a Redis Cluster of its "
        "own)");
  }
  if (o.redis_cluster > 0 && o.restart_redis_at_s >= 0) {
    return Bad(
        "--restart-redis-at: not with --redis-cluster (it restarts the "
        "redis-server of --redis local)");
  }
  if (o.migrate_slot_at_s >= 0 && o.redis_cluster < 2) {
    return Bad(
        "--migrate-slot-at: needs --redis-cluster N with N >= 2 (a slot "
        "moves from one primary to another)");
  }
  if (o.redis_fsync_always && o.redis != "local") {
    return Bad("--redis-fsync: for the redis-server of --redis local");
  }
  if (o.restart_redis_at_s >= 0 && o.redis != "local") {
    return Bad(
        "--restart-redis-at: needs --redis local (a redis-server the "
        "load tester starts and may kill)");
  }
  return Status::OK();
}

}  // namespace

double EffectiveTimeoutS(const LoadtestOptions& o) {
  if (o.timeout_s > 0) return o.timeout_s;
  return o.duration_s > 0 ? o.duration_s + 60 : 300;
}

Status ValidateLoadtest(const LoadtestOptions& o) {
  for (Status (*check)(const LoadtestOptions&) :
       {CheckLoad, CheckDeadlines, CheckDiscovery, CheckCluster, CheckChaos,
        CheckRedis}) {
    if (Status st = check(o); !st.ok()) return st;
  }
  if (o.heartbeat_ms < 10 || o.heartbeat_ms > 60000) {
    return Bad("--heartbeat-ms: must be between 10 and 60000");
  }
  return Status::OK();
}

}  // namespace yard
