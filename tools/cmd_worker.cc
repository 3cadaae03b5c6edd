// yard worker: runs the built-in handlers (echo, sleep, sha256, fail) for
// one or more brokers until SIGTERM/SIGINT, then drains and exits 0.
//
//   yard worker --connect tcp://127.0.0.1:5556,tcp://10.0.0.2:5556
//   --concurrency 8
//   yard worker --connect ... --isolate process --job-cpu-seconds 10
//   --job-memory-mb 512 --exec resize='python3 resize.py'
//   (handlers in child processes with limits: worker/isolate_pool.h)
//   yard worker --discover redis://127.0.0.1:6379   (every live broker,
//   following brokers that join and leave; registry/registry.h)
//
// Exit codes: 0 after a graceful drain (or --help), 1 when the worker could
// not run, 2 for a bad flag or value (one line on stderr).
#include <spdlog/spdlog.h>

#include <string>
#include <thread>
#include <vector>

#include "balancer/placement.h"
#include "common/heartbeat.h"
#include "common/logging.h"
#include "common/signals.h"
#include "metrics/service_metrics.h"
#include "tools/cli.h"
#include "tools/systemd_notify.h"
#include "worker/isolate_child.h"
#include "worker/isolate_pool.h"
#include "worker/worker.h"

namespace yard {
namespace {

// The worker library's defaults (--help shows them).
const WorkerOptions& Defaults() {
  static const WorkerOptions defaults;
  return defaults;
}

// The flags of `yard worker`.
struct WorkerFlags {
  std::string connect, discover, queue;
  cli::RedisAuthFlags redis_auth;
  int64_t discover_wait_ms = 10000;
  int concurrency =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int prefetch = Defaults().prefetch;
  int64_t heartbeat_ms = kDefaultHeartbeatIntervalMs;
  int64_t drain_timeout_ms = Defaults().drain_timeout_ms;
  std::string name;
  std::string tags;
  std::string taints;
  cli::LogFlags log;
  size_t max_frame_bytes = Defaults().limits.max_frame_bytes;
  cli::CurveFlags curve;
  // Isolation (worker/isolate_pool.h).
  std::string isolate = "thread";
  std::vector<std::string> exec;  // TASK=COMMAND
  int64_t job_cpu_seconds = 0;
  int64_t job_memory_mb = 0;
  int64_t run_timeout_ms = 0;
  int64_t cancel_grace_ms = IsolateOptions().cancel_grace_ms;
  bool misbehaving_handlers = false;
  std::string metrics;  // --metrics HOST:PORT
};

void AddIsolateFlags(CLI::App& app, WorkerFlags* f) {
  app.add_option("--isolate", f->isolate,
                 "where built-in handlers run: thread (in the worker) or "
                 "process (one child process per slot, with limits)")
      ->capture_default_str()
      ->check(CLI::IsMember({"thread", "process"}));
  app.add_option("--exec", f->exec,
                 "TASK=COMMAND: run TASK in child processes started as "
                 "/bin/sh -c COMMAND, one per slot, speaking "
                 "docs/exec-protocol.md (repeatable)");
  app.add_option("--job-cpu-seconds", f->job_cpu_seconds,
                 "CPU seconds a job may use in a child process "
                 "(RLIMIT_CPU; 0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--job-memory-mb", f->job_memory_mb,
                 "address space of a child process in MiB (RLIMIT_AS; "
                 "0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--run-timeout-ms", f->run_timeout_ms,
                 "kill a child process whose job runs longer, for jobs that "
                 "set no run timeout (0: only jobs' own)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--cancel-grace-ms", f->cancel_grace_ms,
                 "how long a cancelled job's child process may still take "
                 "before it is killed")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_flag("--misbehaving-handlers", f->misbehaving_handlers,
               "with --isolate process: also serve spin, alloc and segv, "
               "which burn CPU, eat memory and crash (to try the limits)");
}

void AddWorkerFlags(CLI::App& app, WorkerFlags* f) {
  cli::AddMetricsFlag(app, &f->metrics);
  auto* discover_opt = cli::AddBrokerSourceFlags(app, "backend", &f->connect,
                                                 &f->discover, &f->redis_auth);
  app.add_option("--queue", f->queue,
                 "with --discover: serve only brokers of this queue "
                 "(default: every broker)")
      ->needs(discover_opt);
  app.add_option("--discover-wait-ms", f->discover_wait_ms,
                 "with --discover: how long to wait for a first broker")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
      ->needs(discover_opt);
  app.add_option("--concurrency", f->concurrency, "jobs run at once (threads)")
      ->capture_default_str();
  app.add_option("--prefetch", f->prefetch,
                 "job slots granted beyond --concurrency")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", f->heartbeat_ms, "heartbeat interval (ms)")
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", f->drain_timeout_ms,
                 "on SIGTERM, how long running jobs may take to finish (ms)")
      ->capture_default_str();
  app.add_option("--name", f->name,
                 "name shown in broker logs and stats (default host:pid)");
  app.add_option("--tags", f->tags,
                 "worker tags, comma-separated (jobs may require them)");
  app.add_option(
      "--taints", f->taints,
      "worker taints, comma-separated (only jobs tolerating them run here)");
  cli::AddLogFlags(app, &f->log);
  app.add_option("--max-frame-bytes", f->max_frame_bytes,
                 "largest message accepted or sent")
      ->capture_default_str();
  cli::AddCurveClientFlags(app, &f->curve);
  AddIsolateFlags(app, f);
}

// Checks the flags and fills *options (all but the brokers): 0, or the exit
// code of a one-line usage error.
int MakeOptions(const std::string& command, const WorkerFlags& f,
                WorkerOptions* options) {
  if (f.concurrency < 1) {
    return cli::UsageError(command, "--concurrency must be at least 1, got " +
                                        std::to_string(f.concurrency));
  }
  if (f.prefetch < 0) {
    return cli::UsageError(command, "--prefetch must be 0 or more, got " +
                                        std::to_string(f.prefetch));
  }
  if (f.heartbeat_ms < 1) {
    return cli::UsageError(command, "--heartbeat-ms must be at least 1, got " +
                                        std::to_string(f.heartbeat_ms));
  }
  if (f.drain_timeout_ms < 0) {
    return cli::UsageError(command,
                           "--drain-timeout-ms must be 0 or more, got " +
                               std::to_string(f.drain_timeout_ms));
  }
  constexpr size_t kMinFrameBytes = 4096;
  if (f.max_frame_bytes < kMinFrameBytes) {
    return cli::UsageError(command, "--max-frame-bytes must be at least " +
                                        std::to_string(kMinFrameBytes) +
                                        ", got " +
                                        std::to_string(f.max_frame_bytes));
  }
  options->concurrency = f.concurrency;
  options->prefetch = f.prefetch;
  options->heartbeat_ms = f.heartbeat_ms;
  options->drain_timeout_ms = f.drain_timeout_ms;
  options->name = f.name;
  options->tags = cli::SplitList(f.tags);
  options->taints = cli::SplitList(f.taints);
  std::vector<std::string_view> t(options->tags.begin(), options->tags.end()),
      n(options->taints.begin(), options->taints.end());
  if (Status st = ValidateLabels(t, n); !st.ok()) {
    return cli::UsageError(command, st.message());
  }
  options->limits.max_frame_bytes = f.max_frame_bytes;
  if (f.misbehaving_handlers && f.isolate != "process") {
    return cli::UsageError(command,
                           "--misbehaving-handlers needs --isolate process");
  }
  for (const std::string& e : f.exec) {
    const size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || eq + 1 == e.size()) {
      return cli::UsageError(command,
                             "--exec must be TASK=COMMAND, got '" + e + "'");
    }
  }
  return 0;
}

// The isolate pool the flags ask for, with its handlers registered on
// `worker`; null (and the built-ins in threads) when none is asked for.
std::unique_ptr<IsolatePool> MakePool(const WorkerFlags& f,
                                      const WorkerOptions& options,
                                      Worker& worker) {
  if (f.isolate != "process" && f.exec.empty()) {
    RegisterBuiltinHandlers(worker);
    return nullptr;
  }
  IsolateOptions io;
  io.slots = f.concurrency;
  io.cpu_seconds = f.job_cpu_seconds;
  io.memory_mb = f.job_memory_mb;
  io.run_timeout_ms = f.run_timeout_ms;
  io.cancel_grace_ms = f.cancel_grace_ms;
  io.max_frame_bytes = options.limits.max_frame_bytes;
  io.misbehaving_handlers = f.misbehaving_handlers;
  auto pool = std::make_unique<IsolatePool>(io);
  if (f.isolate == "process") {
    const IsolateHandlers in_child = pool->AddBuiltin();
    NamedHandlers tasks = BuiltinHandlers();
    if (f.misbehaving_handlers) {
      for (auto& h : MisbehavingHandlers()) tasks.push_back(std::move(h));
    }
    for (const auto& [task, unused] : tasks) {
      worker.Register(task, in_child.handler, in_child.batch);
    }
  } else {
    RegisterBuiltinHandlers(worker);
  }
  for (const std::string& e : f.exec) {
    const size_t eq = e.find('=');
    const std::string task = e.substr(0, eq);
    const IsolateHandlers h = pool->AddExec(task, e.substr(eq + 1));
    worker.Register(task, h.handler, h.batch);
  }
  return pool;
}

}  // namespace

int RunWorker(int argc, char** argv) {
  CLI::App app{
      "Run job handlers (echo, sleep, sha256, fail) for one or more brokers.",
      argv[0]};
  WorkerFlags f;
  AddWorkerFlags(app, &f);
  int exit_code = 0;
  if (!cli::Parse(app, argc, argv, &exit_code)) return exit_code;
  const std::string command = app.get_name();
  WorkerOptions options;
  if (int rc = MakeOptions(command, f, &options)) return rc;

  cli::StartLogging("worker", f.log);
  cli::BrokerSource source;
  if (int rc = cli::ResolveBrokerSource(command, f.connect, f.discover,
                                        f.redis_auth, Discovery::Side::kBackend,
                                        f.queue, f.discover_wait_ms, &source)) {
    return rc;
  }
  if (int rc =
          cli::ResolveCurveClient(command, f.curve, source, &options.curve)) {
    return rc;
  }
  options.brokers = source.endpoints;
  InstallStopHandlers();

  // The pool outlives the worker, whose runners may be inside it.
  std::unique_ptr<IsolatePool> pool;
  Worker worker(options);
  pool = MakePool(f, options, worker);
  if (pool) {
    if (Status st = pool->Start(); !st.ok()) {
      spdlog::error("worker failed: {}", st.ToString());
      return 1;
    }
  }
  // After the handlers are registered (Observe reads them); stops before
  // the worker goes.
  std::unique_ptr<MetricsServer> metrics_server;
  if (int rc = cli::StartMetrics(command, "worker", f.metrics,
                                 WorkerEndpoints(worker), &metrics_server)) {
    return rc;
  }
  if (source.discovery) {
    source.discovery->Start([&worker](const std::vector<std::string>& set) {
      worker.SetBrokers(set);
    });
  }
  cli::ServiceNotifier systemd;  // Type=notify: serving from here on
  Status st = worker.Run();
  source.discovery.reset();  // before the worker it calls
  if (pool) {
    pool->Shutdown();  // frees runners still inside children
    const IsolateCounters ic = pool->counters();
    spdlog::info(
        "isolate: {} child processes started, {} replaced; {} jobs in {} "
        "writes",
        ic.spawned, ic.replaced, ic.jobs_written, ic.writes);
  }
  if (!st.ok()) {
    spdlog::error("worker failed: {}", st.ToString());
    return 1;
  }
  return 0;
}

int RunWorkerChild(int argc, char** argv) {
  CLI::App app{"A child process of `yard worker` (not for direct use).",
               argv[0]};
  ChildOptions o;
  app.add_option("--parent-pid", o.parent_pid);
  app.add_option("--memory-mb", o.memory_mb);
  app.add_option("--exec", o.exec);
  app.add_option("--max-frame-bytes", o.max_frame_bytes);
  app.add_flag("--misbehaving", o.misbehaving);
  int exit_code = 0;
  if (!cli::Parse(app, argc, argv, &exit_code)) return exit_code;
  return RunIsolatedChild(o);
}

}  // namespace yard
