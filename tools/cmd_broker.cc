// yard broker --frontend ENDPOINT --backend ENDPOINT [...]
#include <iostream>

#include "balancer/balancer.h"
#include "broker/broker.h"
#include "common/logging.h"
#include "common/signals.h"
#include "metrics/service_metrics.h"
#include "queue/redis_layout.h"
#include "redis/redis_target.h"
#include "tools/cli.h"
#include "tools/systemd_notify.h"

namespace yard {
namespace {

// Where the broker listens, and how it routes and limits jobs. Returns
// --max-queue, whose presence matters.
CLI::Option* AddServingFlags(CLI::App& app, BrokerOptions* o) {
  app.add_option("--frontend", o->frontend,
                 "Endpoint producers connect to (tcp://HOST:PORT, ipc://PATH)")
      ->required();
  app.add_option("--backend", o->backend, "Endpoint workers connect to")
      ->required();
  app.add_option("--heartbeat-ms", o->heartbeat_ms,
                 "Heartbeat interval; a worker silent for 3 is dead")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{600000}));
  CLI::Option* max_queue =
      app.add_option("--max-queue", o->max_queue,
                     "Jobs held at most (queued + running); beyond: Busy. "
                     "Default: " +
                         std::to_string(o->max_queue) +
                         " in memory; durable mode (--redis): jobs in Redis, " +
                         std::to_string(o->redis.capacity))
          ->check(CLI::Range(size_t{1}, size_t{100000000}));
  app.add_option("--max-queue-bytes", o->max_queue_bytes,
                 "Bytes of jobs held in this process at most (queued in "
                 "memory, waiting to be written to Redis, or waiting for a "
                 "worker); beyond: Busy")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1} << 20, size_t{1} << 40));
  app.add_option("--producer-rate", o->quotas.rate,
                 "Jobs per second each producer (CURVE key, or address "
                 "without CURVE) may submit; beyond: Busy with a retry-after "
                 "(0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--producer-burst", o->quotas.burst,
                 "Jobs a producer may submit at once above its rate "
                 "(0: one second's worth)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--producer-max-queued", o->quotas.max_queued,
                 "Jobs each producer may have accepted here and unfinished; "
                 "beyond: Busy (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{100000000}));
  app.add_option("--max-workers", o->max_workers,
                 "Workers registered at most; more are refused (Busy)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  app.add_option("--max-batch", o->limits.max_batch,
                 "Jobs or results in one message at most")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  app.add_option("--max-dispatch-batch", o->max_dispatch_batch,
                 "Jobs in one dispatch at most")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  app.add_option("--max-frame-bytes", o->limits.max_frame_bytes,
                 "Largest message accepted")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  app.add_option("--max-payload-bytes", o->limits.max_payload_bytes,
                 "Largest job payload accepted")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1} << 30));
  app.add_option(
         "--drain-timeout-ms", o->drain_timeout_ms,
         "On SIGTERM, how long to finish held jobs before handing them back")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
  app.add_option("--max-worker-deaths", o->retry.max_worker_deaths,
                 "A job whose worker dies this many times while running it "
                 "fails for good (a dead letter in durable mode); 0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  app.add_option("--run-timeout-ms", o->run_timeout_ms,
                 "How long one attempt of a job may run once dispatched, for "
                 "jobs that set none; past it the worker is told to cancel "
                 "and the job is retried, or fails 'timed out' (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400000}));
  app.add_option("--quarantine-after", o->quarantine_after,
                 "A worker whose jobs time out this many times in a row gets "
                 "no new jobs until it answers again (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000000u));
  app.add_option("--unroutable-timeout-ms", o->unroutable_timeout_ms,
                 "How long a job whose task no live worker runs waits for "
                 "one before it fails 'no worker runs task NAME'")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400000}));
  app.add_option("--balancer", o->balancer,
                 "How a job's worker is chosen: " + BalancerSummaries())
      ->capture_default_str()
      ->check(CLI::IsMember(BalancerNames()));
  app.add_option("--advertise", o->advertise,
                 "Durable mode: the host producers and workers reach this "
                 "broker at, for discovery (default: the bound address; a "
                 "wildcard bind advertises the host name)");
  return max_queue;
}

// Durable mode: the queue in Redis.
void AddDurableFlags(CLI::App& app, BrokerOptions* o,
                     cli::RedisAuthFlags* auth) {
  CLI::Option* redis = app.add_option(
      "--redis", o->redis.url,
      "Durable mode: keep jobs in Redis: "
      "redis://[USER[:PASSWORD]@]HOST:PORT[/DB], "
      "or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] for a "
      "Sentinel-managed primary (resolved again on every "
      "reconnect), or cluster://HOST:PORT[,HOST:PORT...] for a "
      "Redis Cluster (the queue is split into shards spread over "
      "its primaries); without it jobs live in this process's "
      "memory");
  cli::AddRedisAuthFlags(app, auth, redis);
  app.add_option("--redis-shards", o->redis.shards,
                 "Durable mode: split the queue into this many shards, each "
                 "under its own hash tag (stored in Redis on first use; every "
                 "broker of the queue must agree). Default: the stored count, "
                 "else the cluster's primaries for cluster://, else 1")
      ->check(CLI::Range(0, kMaxQueueShards));
  app.add_option("--queue", o->redis.queue,
                 "Durable mode: the queue this broker serves")
      ->capture_default_str();
  app.add_option("--lease-ms", o->redis.lease_ms,
                 "Durable mode: a claimed job's lease; a dead broker's jobs "
                 "run again after it")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{100}, int64_t{3600000}));
  app.add_option("--result-ttl", o->redis.result_ttl_s,
                 "Durable mode: seconds results are kept for `yard result` "
                 "(0: not kept)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{30} * 86400));
  app.add_option("--dedupe-ttl", o->redis.dedupe_ttl_s,
                 "Durable mode: seconds an idempotency key is remembered")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{30} * 86400));
  app.add_option("--max-delay", o->max_delay_s,
                 "Seconds ahead a job's not-before time may be at most "
                 "(later ones are refused; 0: no cap)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100} * 365 * 86400));
  app.add_option("--max-dead", o->redis.max_dead,
                 "Durable mode: dead letters kept at most; the oldest are "
                 "trimmed and counted (dead_trimmed; 0: unbounded)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-expiries", o->retry.max_expiries,
                 "Durable mode: expired leases before a job is dead-lettered")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--redis-wait-replicas", o->redis.wait_replicas,
                 "Durable mode: answer a submit 'accepted' only once this many "
                 "replicas hold it (Redis WAIT); fewer within "
                 "--redis-wait-timeout-ms: Unavailable, the producer resends. "
                 "1 keeps a Sentinel failover from losing accepted jobs; with "
                 "a single replica, submits are refused after a failover until "
                 "a replica is back (0: no WAIT)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--redis-wait-timeout-ms", o->redis.wait_timeout_ms,
                 "Durable mode: how long a WAIT waits for the replicas (at "
                 "most a third of --lease-ms)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1200000}));
  app.add_option("--dedupe-ids", o->redis.dedupe_ids_ttl_s,
                 "Durable mode: for this many seconds, a producer's resend of "
                 "a job any broker already queued is not queued again (one "
                 "SET per job; 0: off)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  app.add_flag("--require-fsync", o->redis.require_fsync,
               "Durable mode: refuse to start unless Redis fsyncs every write "
               "(appendonly yes, appendfsync always)");
}

// CURVE: the broker's key and the three role key sets.
void AddCurveFlags(CLI::App& app, BrokerOptions* o) {
  auto* secret = app.add_option(
      "--curve-secret", o->curve.secret_key_file,
      "CURVE on both sockets: this broker's secret key file (yard keygen); "
      "plaintext peers are refused at the handshake");
  app.add_option("--producer-keys", o->curve.keys.producers,
                 "CURVE: producers' public keys: a directory of *.public "
                 "files or a file with one Z85 key per line (re-read on "
                 "SIGHUP)")
      ->needs(secret);
  app.add_option("--worker-keys", o->curve.keys.workers,
                 "CURVE: workers' public keys (same forms)")
      ->needs(secret);
  app.add_option("--admin-keys", o->curve.keys.admins,
                 "CURVE: admins' public keys (same forms): they may also "
                 "read stats")
      ->needs(secret);
}

// The checks of durable mode CLI11 cannot make: 0, or the exit code of a
// one-line usage error.
// Gives the URL its password (cli::ResolveRedisUrl).
int CheckDurableFlags(const char* command, const cli::RedisAuthFlags& auth,
                      BrokerOptions* o) {
  if (o->redis.url.empty()) return 0;
  auto url = cli::ResolveRedisUrl(o->redis.url, auth);
  if (!url.ok()) return cli::UsageError(command, url.status().message());
  o->redis.url = std::move(url).value();
  if (auto s = ParseRedisTarget(o->redis.url); !s.ok()) {
    return cli::UsageError(command, "--redis: " + s.status().message());
  }
  if (o->redis.wait_replicas > 0 &&
      o->redis.wait_timeout_ms > o->redis.lease_ms / 3) {
    return cli::UsageError(
        command, "--redis-wait-timeout-ms: at most a third of --lease-ms (" +
                     std::to_string(o->redis.lease_ms / 3) + ")");
  }
  if (auto s = ValidateQueueName(o->redis.queue); !s.ok()) {
    return cli::UsageError(command, "--queue: " + s.message());
  }
  return 0;
}

}  // namespace

int RunBroker(int argc, char** argv) {
  CLI::App app{"Route jobs from producers (frontend) to workers (backend).",
               argv[0]};
  BrokerOptions o;
  cli::LogFlags log;
  CLI::Option* max_queue = AddServingFlags(app, &o);
  cli::RedisAuthFlags redis_auth;
  AddDurableFlags(app, &o, &redis_auth);
  AddCurveFlags(app, &o);
  std::string metrics;
  cli::AddMetricsFlag(app, &metrics);
  cli::AddLogFlags(app, &log);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;

  if (max_queue->count()) o.redis.capacity = o.max_queue;
  if (int rc = CheckDurableFlags(argv[0], redis_auth, &o)) return rc;
  if (!o.curve.secret_key_file.empty() &&
      (o.curve.keys.producers.empty() || o.curve.keys.workers.empty())) {
    return cli::UsageError(
        argv[0], "--curve-secret needs --producer-keys and --worker-keys");
  }
  cli::StartLogging("broker", log);
  InstallStopHandlers();
  // SIGHUP re-reads the key sets; without CURVE it keeps its default.
  if (!o.curve.secret_key_file.empty()) InstallReloadHandler();
  auto broker = Broker::Create(o);
  if (!broker.ok()) return cli::UsageError(argv[0], broker.status().message());
  // Scripts and tests wait for this line; with tcp://HOST:* it names the port.
  std::cout << "yard broker ready frontend=" << (*broker)->frontend_endpoint()
            << " backend=" << (*broker)->backend_endpoint() << std::endl;
  // After the ready line, which scripts expect first. Declared after the
  // broker, so it stops before the broker goes.
  std::unique_ptr<MetricsServer> metrics_server;
  if (int rc = cli::StartMetrics(argv[0], "broker", metrics,
                                 BrokerEndpoints(**broker), &metrics_server)) {
    return rc;
  }
  cli::ServiceNotifier systemd;  // Type=notify: bound, so ready
  Status s = (*broker)->Run();
  if (!s.ok()) {
    std::cerr << argv[0] << ": error: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace yard
