// yard loadtest: starts a local cluster (or drives one with --connect),
// pushes a shaped load through it, breaks parts of it on a schedule, and
// audits every job: completed, failed, duplicated, lost (loadtest/loadtest.h).
// The flag names and the --json keys are a contract (loadtest/report.h).
//
//   yard loadtest --jobs 200000 --workers 2 --kill-worker-every 2
//   yard loadtest --redis local --duration 20 --rate 50000 --json out.json
//       --html out.html --kill-broker-at 5 --restart-redis-at 10
//   yard loadtest --redis-cluster 3 --brokers 2 --jobs 200000
//       --migrate-slot-at 2
//
// Exit codes: 0 every job accounted for and nothing lost; 1 jobs lost (or
// corrupt, or a part of the cluster crashed by itself); 2 bad flags or the
// run could not start (cluster, unreachable broker); 130 interrupted.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/signals.h"
#include "loadtest/loadtest.h"
#include "loadtest/report.h"
#include "tools/cli.h"

namespace yard {
namespace {

constexpr uint64_t kDefaultJobs = 100000;

bool WriteFile(const std::string& path, const std::string& text,
               const std::string& name) {
  if (path == "-") {
    std::cout << text << std::flush;
    return true;
  }
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.close();
  if (!f) {
    std::cerr << name << ": error: cannot write " << path << "\n";
    return false;
  }
  return true;
}

}  // namespace

int RunLoadtest(int argc, char** argv) {
  CLI::App app{
      "Run a load through a Switchyard cluster (a local one it starts, or "
      "--connect), with optional chaos, and audit every job.",
      argv[0]};
  LoadtestOptions o;
  std::string connect, json_path, html_path, log_level = "error";
  bool quiet = false;
  double progress_every = 5;

  app.add_option("--connect", connect,
                 "drive an existing cluster: broker frontend endpoint(s), "
                 "comma-separated (loopback only)");
  app.add_option("--brokers", o.brokers, "local brokers")
      ->capture_default_str();
  app.add_option("--workers", o.workers, "local workers")
      ->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "handler threads per worker")
      ->capture_default_str();
  auto* redis_url_opt =
      app.add_option("--redis", o.redis,
                     "durable mode: 'local' starts a redis-server, or a "
                     "redis://127.0.0.1:PORT URL (default: memory mode)");
  auto* redis_cluster_opt = app.add_option(
      "--redis-cluster", o.redis_cluster,
      "durable mode on a Redis Cluster of N primaries it starts (the queue "
      "in one shard per primary; --broker-arg=--redis-shards=K sets K)");
  std::string redis_fsync = "everysec";
  app.add_option("--redis-fsync", redis_fsync,
                 "appendfsync of the --redis local server: everysec (a kill "
                 "of Redis loses nothing written; a power loss the last "
                 "second) or always")
      ->check(CLI::IsMember({"everysec", "always"}))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", o.heartbeat_ms,
                 "heartbeat of the local cluster and the producers")
      ->capture_default_str();
  app.add_option("--broker-arg", o.broker_args,
                 "extra flag for local brokers (repeat; --broker-arg=--x=1)");
  app.add_option("--worker-arg", o.worker_args,
                 "extra flag for local workers (repeat)");

  app.add_option("--producers", o.producers,
                 "producers, each with its own connection and thread")
      ->capture_default_str();
  auto* jobs_opt = app.add_option(
      "--jobs", o.jobs, "jobs in total (default 100000 without --duration)");
  app.add_option("--duration", o.duration_s,
                 "submit for this many seconds (with --jobs: whichever ends "
                 "first)");
  auto* size_opt =
      app.add_option("--size", o.size, "payload bytes")->capture_default_str();
  auto* payload_opt = app.add_option(
      "--payload", o.payload, "payload text instead (for sleep: milliseconds)");
  size_opt->excludes(payload_opt);
  payload_opt->excludes(size_opt);
  app.add_option("--task", o.task, "echo, sleep, sha256, fail, ...")
      ->capture_default_str();
  app.add_option("--queue", o.queue, "queue name (default: default)");
  app.add_option("--window", o.window,
                 "closed loop: jobs in flight per producer")
      ->capture_default_str();
  auto* rate_opt = app.add_option(
      "--rate", o.rate,
      "open loop: jobs per second in total; latency counts from each job's "
      "intended send time");
  app.add_option("--batch", o.batch, "max jobs per Submit message")
      ->capture_default_str();
  app.add_option("--job-timeout", o.job_timeout_s,
                 "per-job deadline in seconds (default: the run's bound)");
  app.add_option("--timeout", o.timeout_s,
                 "hard bound on the run in seconds; unanswered jobs are lost "
                 "(default: 300, or --duration + 60)");
  app.add_option("--connect-timeout", o.connect_timeout_s,
                 "seconds to wait for every broker to answer before the run")
      ->capture_default_str();

  auto* kill_worker_opt =
      app.add_option("--kill-worker-every", o.kill_worker_every_s,
                     "SIGKILL a worker every S seconds and start a new one");
  auto* kill_broker_opt = app.add_option(
      "--kill-broker-at", o.kill_broker_at_s,
      "SIGKILL broker 0 at S seconds, restart it --broker-down later");
  app.add_option("--broker-down", o.broker_down_s,
                 "seconds a killed broker stays down")
      ->capture_default_str();
  app.add_flag("--broker-stays-down", o.broker_stays_down,
               "a broker killed by --kill-broker-at is not restarted");
  auto* add_broker_opt =
      app.add_option("--add-broker-at", o.add_broker_at_s,
                     "start one more broker at S seconds (needs --discover)");
  app.add_flag("--discover", o.discover,
               "workers and producers find brokers in the Redis registry "
               "(needs --redis) and follow brokers joining and leaving");
  auto* redis_opt = app.add_option(
      "--restart-redis-at", o.restart_redis_at_s,
      "SIGKILL the local redis-server at S seconds and start it again");
  auto* migrate_opt = app.add_option(
      "--migrate-slot-at", o.migrate_slot_at_s,
      "move the slot of the queue's shard 0 to another primary at S seconds, "
      "a few keys per step (needs --redis-cluster N, N >= 2)");
  redis_cluster_opt->excludes(redis_url_opt)->excludes(redis_opt);

  app.add_option("--json", json_path,
                 "write the JSON report here ('-': stdout)");
  app.add_option("--html", html_path,
                 "write a self-contained HTML report with charts here");
  app.add_option("--logs", o.logs_dir,
                 "keep the cluster's logs in this directory (default: a "
                 "temporary one, kept only when the run fails)");
  app.add_flag("--keep-logs", o.keep_logs, "keep the temporary logs");
  app.add_flag("--quiet", quiet, "no progress display");
  app.add_option("--progress-every", progress_every,
                 "when stderr is not a terminal: a progress line every S "
                 "seconds (0: none)")
      ->capture_default_str();
  app.add_option("--log-level", log_level,
                 "the producers' log level: trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

  int exit_code = 0;
  if (!cli::Parse(app, argc, argv, &exit_code)) return exit_code;
  const std::string name = app.get_name();

  o.connect = cli::SplitList(connect);
  if (!connect.empty() && o.connect.empty()) {
    return cli::UsageError(name, "--connect: no endpoint given");
  }
  o.payload_given = payload_opt->count() > 0;
  o.redis_fsync_always = redis_fsync == "always";
  if (jobs_opt->count() > 0 && o.jobs == 0) {
    return cli::UsageError(name, "--jobs: must be at least 1");
  }
  if (jobs_opt->count() == 0 && !(o.duration_s > 0)) o.jobs = kDefaultJobs;
  if (rate_opt->count() > 0 && !(o.rate > 0)) {
    return cli::UsageError(name, "--rate: must be greater than 0");
  }
  if (kill_worker_opt->count() > 0 && !(o.kill_worker_every_s > 0)) {
    return cli::UsageError(name, "--kill-worker-every: must be greater than 0");
  }
  if (redis_cluster_opt->count() > 0 && o.redis_cluster < 1) {
    return cli::UsageError(name, "--redis-cluster: must be at least 1");
  }
  if ((kill_broker_opt->count() > 0 && o.kill_broker_at_s < 0) ||
      (add_broker_opt->count() > 0 && o.add_broker_at_s < 0) ||
      (redis_opt->count() > 0 && o.restart_redis_at_s < 0) ||
      (migrate_opt->count() > 0 && o.migrate_slot_at_s < 0)) {
    return cli::UsageError(name, "chaos times must be at least 0 seconds");
  }
  if (!(progress_every >= 0)) {
    return cli::UsageError(name, "--progress-every: must be at least 0");
  }
  if (Status st = ValidateLoadtest(o); !st.ok()) {
    return cli::UsageError(name, st.message());
  }
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  o.progress = !quiet && tty;
  o.progress_every_s = quiet || tty ? 0 : progress_every;

  InitLogging("loadtest", log_level);
  InstallStopHandlers();
  Result<LoadtestReport> run = ExecuteLoadtest(o, stderr);
  if (!run.ok()) {
    if (StopRequested()) return 130;
    return cli::UsageError(name, run.status().message());
  }
  const LoadtestReport& r = *run;
  if (json_path != "-") std::cout << ReportTable(r) << std::flush;
  bool wrote = true;
  if (!json_path.empty()) {
    wrote &= WriteFile(json_path, ReportJson(r).dump(2) + "\n", name);
  }
  if (!html_path.empty()) wrote &= WriteFile(html_path, ReportHtml(r), name);
  const int code = r.ExitCode();
  return code == 0 && !wrote ? 1 : code;
}

}  // namespace yard
