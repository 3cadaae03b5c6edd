// Loadtest: drives a Switchyard cluster with a bounded, shaped load, breaks
// parts of it on a schedule, and audits every job (`yard loadtest`).
//
// A run: start a local cluster (LocalCluster) or use --connect endpoints;
// wait until every producer hears every broker; then P producers, each on a
// thread of its own with its own Producer, submit jobs in batches, closed
// loop (at most `window` in flight per producer) or open loop (`rate` jobs/s
// in total, latency counted from each job's intended send time so that a
// stall is not hidden by the producer waiting: no coordinated omission).
// The main thread fires the chaos schedule, samples the series (points of
// 100 ms in a short run, longer as the run goes on: SeriesSpanUs) and draws
// the progress line. The run ends when every job has an
// outcome, or at the hard bound (`timeout_s`), or on SIGINT/SIGTERM; then
// each producer's Ledger audits its jobs.
//
//   lost      = submitted jobs with no result: timed out, or unanswered at
//               the end (a job the system accepted and then dropped)
//   failed    = a non-Ok result (handler error, expired, unknown task) or a
//               refusal for good: failed by design, reported, not lost
//   duplicated = extra results for a job that already had one
//               (at-least-once redelivery after a broker or worker death)
//   corrupt   = an echo result whose bytes are not the job's payload
//
// Thread-safety: ExecuteLoadtest is called from the main thread (it forks).
#ifndef YARD_LOADTEST_LOADTEST_H_
#define YARD_LOADTEST_LOADTEST_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/histogram.h"
#include "common/status.h"
#include "loadtest/ledger.h"
#include "security/curve_keys.h"

namespace yard {

struct LoadtestOptions {
  // Cluster: `connect` non-empty drives an existing one; otherwise a local
  // cluster of `brokers` x `workers` (each `concurrency` threads) starts.
  std::vector<std::string> connect;
  int brokers = 1;
  int workers = 2;
  int concurrency = 2;
  std::string redis;  // "": memory mode; "local": own redis-server; a URL
  // With a `redis` URL: the same URL with its password filled in (from a
  // password file or the environment, tools/cli.h), for the loadtest's own
  // reads of the registry and queue; "" when it is `redis` as it is. The
  // brokers and --discover workers get `redis` itself, plus
  // --redis-password-file `redis_password_file` when that is set (else they
  // inherit $YARD_REDIS_PASSWORD), so no password reaches their argv.
  std::string redis_with_password;
  std::string redis_password_file;
  bool redis_fsync_always = false;  // local: appendfsync always
  // > 0: durable mode on a local Redis Cluster of this many primaries,
  // started instead of `redis` (which stays empty); the brokers get its
  // cluster:// URL and split the queue into shards (by default one per
  // primary; --broker-arg=--redis-shards=K sets it).
  int redis_cluster = 0;
  int64_t heartbeat_ms = 500;
  std::vector<std::string> broker_args;  // extra flags for local brokers
  std::vector<std::string> worker_args;  // ... and workers
  std::string yard_binary;               // "": this executable
  // CURVE: `curve` makes the local cluster generate keys and run with CURVE
  // on every socket (LocalClusterOptions::curve); with `connect`,
  // curve_client is what the producers use (enabled: CURVE).
  bool curve = false;
  CurveClientOptions curve_client;

  // Load shape.
  int producers = 1;
  uint64_t jobs = 0;      // total over producers; 0: until duration_s
  double duration_s = 0;  // submit for this long; 0: until `jobs` are sent
  int64_t size = 64;      // payload bytes
  std::string payload;    // instead of `size` random bytes (e.g. sleep ms)
  bool payload_given = false;
  std::string task = "echo";
  std::string queue;
  int64_t window = 1000;     // per producer, closed loop
  double rate = 0;           // jobs/s in total, open loop; 0: closed loop
  int64_t batch = 256;       // jobs per Submit message (and per SubmitBatch)
  double job_timeout_s = 0;  // per-job deadline; 0: the run's bound
  double timeout_s = 0;      // hard bound on the run; 0: derived
  double connect_timeout_s = 5;

  // Chaos (local cluster only); negative: off.
  double kill_worker_every_s = -1;
  double kill_broker_at_s = -1;
  double broker_down_s = 1;
  bool broker_stays_down = false;  // --kill-broker-at without a restart
  double add_broker_at_s = -1;     // start one more broker (needs discover)
  // Workers and producers find brokers in the Redis registry (--discover)
  // instead of a fixed list, and follow brokers that join and leave.
  bool discover = false;
  double restart_redis_at_s = -1;
  // Moves the slot of the queue's shard 0 to the next primary (needs
  // redis_cluster >= 2), a few keys per tick of the main loop, while the
  // load runs: RedisCluster's BeginMigration, MoveKeys, FinishMigration.
  double migrate_slot_at_s = -1;

  // Output.
  std::string logs_dir;  // "": temporary, removed unless the run fails
  bool keep_logs = false;
  bool progress = false;        // live line (a terminal)
  double progress_every_s = 0;  // plain lines every N s (not a terminal)
};

// `size` bytes of printable text (the same for a given size), the payload of
// `yard push` and `yard loadtest` jobs.
std::string TextPayload(int64_t size);

class Producer;
// Waits until each of `producers` hears every broker of `endpoints`
// (ProducerCounters::live_brokers) or `timeout_s` passes: the
// --connect-timeout of `yard push` and `yard loadtest`. Unavailable ("no
// broker answered at EP,...") when one is missing then, or on a stop request.
Status WaitForBrokers(const std::vector<const Producer*>& producers,
                      const std::vector<std::string>& endpoints,
                      double timeout_s);

// How long the series point that starts `elapsed_us` into the load spans:
// 100 ms at first, then a fiftieth of the time so far, so that a 4 s run
// has 40 points and a long one few (about 50 * (1 + ln(T / 5 s)): a minute
// ~175, a day ~540).
int64_t SeriesSpanUs(int64_t elapsed_us);

// Checks flags and shapes; InvalidArgument with a one-line message.
Status ValidateLoadtest(const LoadtestOptions& o);
// The bound RunLoadtest applies when timeout_s is 0.
double EffectiveTimeoutS(const LoadtestOptions& o);

struct SeriesPoint {
  double t = 0;  // seconds since the load started, at the end of the point
  double span_s = 0;
  uint64_t submitted = 0;  // in this point's span
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t lost = 0;
  uint64_t in_flight = 0;  // at its end
  double jobs_per_s = 0;   // (completed + failed) / span
  uint64_t p50_us = 0, p99_us = 0, max_us = 0;
};

struct LoadEvent {
  double t = 0;
  std::string what;  // "kill-worker", "kill-broker", "restart-broker", ...
  std::string detail;
  bool ok = true;
  // Extra figures, each an extra key of the event's JSON object (e.g.
  // "migrate-slot": slot, keys_moved, duration_ms). The initializer keeps
  // {t, what, detail, ok} aggregates free of missing-field warnings.
  std::vector<std::pair<std::string, int64_t>> numbers = {};
};

struct LoadtestReport {
  LoadtestOptions options;
  std::string mode;       // "memory" | "durable" | "external" (--connect)
  std::string redis_url;  // what the local brokers got as --redis (the
                          // password as ***)
  int redis_shards = 0;   // the queue's shard count (0: not known)
  std::vector<std::string> endpoints;
  Ledger::Totals totals;  // summed over producers
  uint64_t duplicated = 0;
  uint64_t resent = 0;
  uint64_t busy = 0;
  uint64_t lost = 0;      // timed_out + unanswered
  double jobs_per_s = 0;  // (completed + failed) / time to the last result
  double elapsed_s = 0;   // from the first submit to the last result
  double wall_s = 0;      // the whole load phase
  Histogram latency;      // completed and failed jobs
  std::vector<SeriesPoint> series;
  std::vector<LoadEvent> events;
  std::vector<std::string> problems;  // why the run failed, besides lost
  bool interrupted = false;
  bool hit_timeout = false;
  std::string logs_dir;  // kept logs (empty when removed)
  // With --discover: the brokers registered at the end, each
  // {id, frontend, accepted, dispatched, completed}.
  std::vector<std::map<std::string, std::string>> brokers;

  // 0: nothing lost, nothing corrupt, no problem; 1 otherwise;
  // 130 when interrupted.
  int ExitCode() const;
};

// Runs the whole thing. `log` gets event lines and the progress display
// (stderr). A non-OK status means the run could not start (bad cluster,
// unreachable broker): the caller exits 2.
Result<LoadtestReport> ExecuteLoadtest(const LoadtestOptions& options,
                                       std::FILE* log);

}  // namespace yard

#endif  // YARD_LOADTEST_LOADTEST_H_
