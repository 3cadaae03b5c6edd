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

// The flags of `yard loadtest`: the options of the run, and what only the
// command uses (output, progress, flags whose presence matters).
struct LoadtestFlags {
  LoadtestOptions o;
  std::string connect, json_path, html_path;
  cli::LogFlags log{.level = "error"};
  std::string redis_fsync = "everysec";
  cli::RedisAuthFlags redis_auth;
  bool quiet = false;
  double progress_every = 5;
  cli::CurveFlags curve;
  CLI::Option* redis_url_opt = nullptr;
  CLI::Option* redis_cluster_opt = nullptr;
  CLI::Option* jobs_opt = nullptr;
  CLI::Option* payload_opt = nullptr;
  CLI::Option* rate_opt = nullptr;
  CLI::Option* kill_worker_opt = nullptr;
  CLI::Option* kill_broker_opt = nullptr;
  CLI::Option* add_broker_opt = nullptr;
  CLI::Option* restart_redis_opt = nullptr;
  CLI::Option* migrate_opt = nullptr;
};

// The cluster: an existing one, or the local one and its Redis.
void AddClusterFlags(CLI::App& app, LoadtestFlags* f) {
  LoadtestOptions& o = f->o;
  app.add_option("--connect", f->connect,
                 "drive an existing cluster: broker frontend endpoint(s), "
                 "comma-separated (loopback only)");
  app.add_option("--brokers", o.brokers, "local brokers")
      ->capture_default_str();
  app.add_option("--workers", o.workers, "local workers")
      ->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "handler threads per worker")
      ->capture_default_str();
  f->redis_url_opt =
      app.add_option("--redis", o.redis,
                     "durable mode: 'local' starts a redis-server, or a "
                     "redis://[USER[:PASSWORD]@]HOST:PORT URL (default: "
                     "memory mode)");
  cli::AddRedisAuthFlags(app, &f->redis_auth, f->redis_url_opt);
  f->redis_cluster_opt = app.add_option(
      "--redis-cluster", o.redis_cluster,
      "durable mode on a Redis Cluster of N primaries it starts (the queue "
      "in one shard per primary; --broker-arg=--redis-shards=K sets K)");
  app.add_option("--redis-fsync", f->redis_fsync,
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
  app.add_flag("--curve", o.curve,
               "CURVE on every socket of the local cluster: generates a "
               "broker, producer, worker and admin key pair in its logs "
               "directory (keys/)");
  cli::AddCurveClientFlags(app, &f->curve);
}

// The load: producers, jobs, pace and deadlines.
void AddLoadFlags(CLI::App& app, LoadtestFlags* f) {
  LoadtestOptions& o = f->o;
  app.add_option("--producers", o.producers,
                 "producers, each with its own connection and thread")
      ->capture_default_str();
  f->jobs_opt = app.add_option(
      "--jobs", o.jobs, "jobs in total (default 100000 without --duration)");
  app.add_option("--duration", o.duration_s,
                 "submit for this many seconds (with --jobs: whichever ends "
                 "first)");
  auto* size_opt =
      app.add_option("--size", o.size, "payload bytes")->capture_default_str();
  f->payload_opt = app.add_option(
      "--payload", o.payload, "payload text instead (for sleep: milliseconds)");
  size_opt->excludes(f->payload_opt);
  f->payload_opt->excludes(size_opt);
  app.add_option("--task", o.task, "echo, sleep, sha256, fail, ...")
      ->capture_default_str();
  app.add_option("--queue", o.queue, "queue name (default: default)");
  app.add_option("--window", o.window,
                 "closed loop: jobs in flight per producer")
      ->capture_default_str();
  f->rate_opt = app.add_option(
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
}

// The chaos schedule (local cluster only).
void AddChaosFlags(CLI::App& app, LoadtestFlags* f) {
  LoadtestOptions& o = f->o;
  f->kill_worker_opt =
      app.add_option("--kill-worker-every", o.kill_worker_every_s,
                     "SIGKILL a worker every S seconds and start a new one");
  f->kill_broker_opt = app.add_option(
      "--kill-broker-at", o.kill_broker_at_s,
      "SIGKILL broker 0 at S seconds, restart it --broker-down later");
  app.add_option("--broker-down", o.broker_down_s,
                 "seconds a killed broker stays down")
      ->capture_default_str();
  app.add_flag("--broker-stays-down", o.broker_stays_down,
               "a broker killed by --kill-broker-at is not restarted");
  f->add_broker_opt =
      app.add_option("--add-broker-at", o.add_broker_at_s,
                     "start one more broker at S seconds (needs --discover)");
  app.add_flag("--discover", o.discover,
               "workers and producers find brokers in the Redis registry "
               "(needs --redis) and follow brokers joining and leaving");
  f->restart_redis_opt = app.add_option(
      "--restart-redis-at", o.restart_redis_at_s,
      "SIGKILL the local redis-server at S seconds and start it again");
  f->migrate_opt = app.add_option(
      "--migrate-slot-at", o.migrate_slot_at_s,
      "move the slot of the queue's shard 0 to another primary at S seconds, "
      "a few keys per step (needs --redis-cluster N, N >= 2)");
  f->redis_cluster_opt->excludes(f->redis_url_opt)
      ->excludes(f->restart_redis_opt);
}

// Reports, logs and the progress display.
void AddOutputFlags(CLI::App& app, LoadtestFlags* f) {
  LoadtestOptions& o = f->o;
  app.add_option("--json", f->json_path,
                 "write the JSON report here ('-': stdout)");
  app.add_option("--html", f->html_path,
                 "write a self-contained HTML report with charts here");
  app.add_option("--logs", o.logs_dir,
                 "keep the cluster's logs in this directory (default: a "
                 "temporary one, kept only when the run fails)");
  app.add_flag("--keep-logs", o.keep_logs, "keep the temporary logs");
  app.add_flag("--quiet", f->quiet, "no progress display");
  app.add_option("--progress-every", f->progress_every,
                 "when stderr is not a terminal: a progress line every S "
                 "seconds (0: none)")
      ->capture_default_str();
  cli::AddLogFlags(app, &f->log,
                   "the producers' log level: trace|debug|info|warn|error|off");
}

// Completes the options from the flags and checks them: 0, or the exit code
// of a one-line usage error.
int CheckFlags(const std::string& name, LoadtestFlags* f) {
  LoadtestOptions& o = f->o;
  o.connect = cli::SplitList(f->connect);
  if (!f->connect.empty() && o.connect.empty()) {
    return cli::UsageError(name, "--connect: no endpoint given");
  }
  o.payload_given = f->payload_opt->count() > 0;
  o.redis_fsync_always = f->redis_fsync == "always";
  if (f->jobs_opt->count() > 0 && o.jobs == 0) {
    return cli::UsageError(name, "--jobs: must be at least 1");
  }
  if (f->jobs_opt->count() == 0 && !(o.duration_s > 0)) o.jobs = kDefaultJobs;
  if (f->rate_opt->count() > 0 && !(o.rate > 0)) {
    return cli::UsageError(name, "--rate: must be greater than 0");
  }
  if (f->kill_worker_opt->count() > 0 && !(o.kill_worker_every_s > 0)) {
    return cli::UsageError(name, "--kill-worker-every: must be greater than 0");
  }
  if (f->redis_cluster_opt->count() > 0 && o.redis_cluster < 1) {
    return cli::UsageError(name, "--redis-cluster: must be at least 1");
  }
  if ((f->kill_broker_opt->count() > 0 && o.kill_broker_at_s < 0) ||
      (f->add_broker_opt->count() > 0 && o.add_broker_at_s < 0) ||
      (f->restart_redis_opt->count() > 0 && o.restart_redis_at_s < 0) ||
      (f->migrate_opt->count() > 0 && o.migrate_slot_at_s < 0)) {
    return cli::UsageError(name, "chaos times must be at least 0 seconds");
  }
  if (!(f->progress_every >= 0)) {
    return cli::UsageError(name, "--progress-every: must be at least 0");
  }
  if (o.curve && !o.connect.empty()) {
    return cli::UsageError(name,
                           "--curve: only for the local cluster; with "
                           "--connect give --curve-secret and --broker-key");
  }
  if (!f->curve.secret_file.empty()) {
    if (o.connect.empty()) {
      return cli::UsageError(
          name,
          "--curve-secret: only with --connect (--curve for the "
          "local cluster)");
    }
    cli::BrokerSource fixed;  // --connect: no discovery
    if (int rc =
            cli::ResolveCurveClient(name, f->curve, fixed, &o.curve_client)) {
      return rc;
    }
  }
  if (Status st = ValidateLoadtest(o); !st.ok()) {
    return cli::UsageError(name, st.message());
  }
  if (!o.redis.empty() && o.redis != "local") {
    auto url = cli::ResolveRedisUrl(o.redis, f->redis_auth);
    if (!url.ok()) return cli::UsageError(name, url.status().message());
    if (*url != o.redis) o.redis_with_password = std::move(url).value();
    o.redis_password_file = f->redis_auth.password_file;
  }
  return 0;
}

// The table on stdout (unless the JSON report goes there), then the JSON
// and HTML reports; the run's exit code, or 1 when a report could not be
// written.
int WriteReports(const std::string& name, const LoadtestFlags& f,
                 const LoadtestReport& r) {
  if (f.json_path != "-") std::cout << ReportTable(r) << std::flush;
  bool wrote = true;
  if (!f.json_path.empty()) {
    wrote &= WriteFile(f.json_path, ReportJson(r).dump(2) + "\n", name);
  }
  if (!f.html_path.empty()) {
    wrote &= WriteFile(f.html_path, ReportHtml(r), name);
  }
  const int code = r.ExitCode();
  return code == 0 && !wrote ? 1 : code;
}

}  // namespace

int RunLoadtest(int argc, char** argv) {
  CLI::App app{
      "Run a load through a Switchyard cluster (a local one it starts, or "
      "--connect), with optional chaos, and audit every job.",
      argv[0]};
  LoadtestFlags f;
  AddClusterFlags(app, &f);
  AddLoadFlags(app, &f);
  AddChaosFlags(app, &f);
  AddOutputFlags(app, &f);
  int exit_code = 0;
  if (!cli::Parse(app, argc, argv, &exit_code)) return exit_code;
  const std::string name = app.get_name();
  if (int rc = CheckFlags(name, &f)) return rc;
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  f.o.progress = !f.quiet && tty;
  f.o.progress_every_s = f.quiet || tty ? 0 : f.progress_every;

  cli::StartLogging("loadtest", f.log);
  InstallStopHandlers();
  Result<LoadtestReport> run = ExecuteLoadtest(f.o, stderr);
  if (!run.ok()) {
    if (StopRequested()) return 130;
    return cli::UsageError(name, run.status().message());
  }
  return WriteReports(name, f, *run);
}

}  // namespace yard
