// yard queue stats|inspect|dead|requeue-dead|purge|pause|resume|limit|
// concurrency
// --redis URL [--queue NAME] [--json]: what a durable (Redis) queue holds,
// the operator's repairs, and its controls.
//
// The work is admin/queue_admin.h (how a sharded queue adds up, and what
// counts jobs and what counts records); this file parses the flags and
// prints the answers: --json prints the library's JSON as it is, the text
// form is a table per subcommand.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "admin/queue_admin.h"
#include "common/audit.h"
#include "common/clock.h"
#include "common/logging.h"
#include "tools/cli.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kDefaultListLimit = 20;

std::string StringOr(const Json& v, const char* fallback) {
  return v.is_string() ? v.get<std::string>() : fallback;
}

// The brokers (as consumers of the streams, and as the registry knows
// them) and their workers.
void PrintBrokers(const Json& j) {
  std::printf("brokers (consumers): %zu\n", j["consumers"].size());
  for (const Json& b : j["consumers"]) {
    std::printf("  %-40s pending %-8lld idle %lld ms\n",
                b["name"].get<std::string>().c_str(),
                static_cast<long long>(b["pending"].get<int64_t>()),
                static_cast<long long>(b["idle_ms"].get<int64_t>()));
  }
  std::printf("brokers (registry, every queue): %zu\n", j["brokers"].size());
  for (const Json& b : j["brokers"]) {
    std::printf("  %-28s queue %-12s %s%s\n",
                b["id"].get<std::string>().c_str(),
                b["queue"].get<std::string>().c_str(),
                b["frontend"].get<std::string>().c_str(),
                b["draining"].get<bool>() ? " (draining)" : "");
  }
  std::printf(
      "workers: %zu (as their brokers last reported them, once a "
      "heartbeat)\n",
      j["workers"].size());
  for (const Json& w : j["workers"]) {
    std::printf("  %-28s capacity %-4lld brokers %zu  running %lld\n",
                w["name"].get<std::string>().c_str(),
                static_cast<long long>(w["capacity"].get<int64_t>()),
                w["brokers"].size(),
                static_cast<long long>(w["outstanding"].get<int64_t>()));
  }
}

// Each shard's own numbers, when there is more than one.
void PrintShards(const Json& j) {
  if (j["shards"].size() < 2) return;
  std::printf("shards: %zu\n", j["shards"].size());
  for (const Json& shard : j["shards"]) {
    std::printf(
        "  shard %-3d {%s}  ready %lld  running %lld  delayed %lld  dead %lld"
        "  leader %s\n",
        shard["shard"].get<int>(), shard["tag"].get<std::string>().c_str(),
        static_cast<long long>(shard["ready"].get<int64_t>()),
        static_cast<long long>(shard["running"].get<int64_t>()),
        static_cast<long long>(shard["delayed"].get<int64_t>()),
        static_cast<long long>(shard["dead"].get<int64_t>()),
        StringOr(shard["leader"], "(none)").c_str());
  }
}

void PrintStats(const Json& j) {
  std::printf("queue %s\n", j["queue"].get<std::string>().c_str());
  std::printf("  %-12s %10s %10s\n", "", "ready", "running");
  for (int p = kRedisPriorities - 1; p >= 0; --p) {
    const Json& row = j["priorities"][std::to_string(p)];
    std::printf("  priority %-3d %10lld %10lld\n", p,
                static_cast<long long>(row["ready"].get<int64_t>()),
                static_cast<long long>(row["running"].get<int64_t>()));
  }
  std::printf("  %-12s %10lld %10lld\n", "total",
              static_cast<long long>(j["ready"].get<int64_t>()),
              static_cast<long long>(j["running"].get<int64_t>()));
  std::printf("  %-12s %10lld %10lld\n", "(records)",
              static_cast<long long>(j["records"]["ready"].get<int64_t>()),
              static_cast<long long>(j["records"]["running"].get<int64_t>()));
  std::printf("delayed %lld  dead %lld  queued %lld  leader %s\n",
              static_cast<long long>(j["delayed"].get<int64_t>()),
              static_cast<long long>(j["dead"].get<int64_t>()),
              static_cast<long long>(j["queued"].get<int64_t>()),
              j["leader"].is_null() ? "(none)"
                                    : j["leader"].get<std::string>().c_str());
  if (j.value("paused", false)) std::printf("PAUSED: no jobs are claimed\n");
  if (j.contains("rate_limit") && j["rate_limit"].is_object()) {
    std::printf(
        "rate limit %g jobs/s, burst %lld\n",
        j["rate_limit"]["rate"].get<double>(),
        static_cast<long long>(j["rate_limit"]["burst"].get<int64_t>()));
  }
  if (j.contains("key_concurrency")) {
    const Json& kc = j["key_concurrency"];
    if (kc["default"] != 1 || !kc["keys"].empty()) {
      std::printf("running jobs per lock key: %lld",
                  static_cast<long long>(kc["default"].get<int64_t>()));
      for (const auto& [key, n] : kc["keys"].items()) {
        std::printf(", %s: %lld", key.c_str(),
                    static_cast<long long>(n.get<int64_t>()));
      }
      std::printf("\n");
    }
  }
  std::printf("counters:");
  for (const auto& [name, value] : j["counters"].items()) {
    std::printf(" %s=%lld", name.c_str(),
                static_cast<long long>(value.get<int64_t>()));
  }
  std::printf("\n");
  PrintBrokers(j);
  PrintShards(j);
}

void PrintJobs(const Json& j) {
  std::printf("%-32s %-8s %3s %7s %-16s %9s %-12s %s\n", "ID", "STATE", "PRI",
              "ATTEMPT", "TASK", "BYTES", "LOCK", "BROKER");
  for (const Json& job : j["jobs"]) {
    const std::string id = StringOr(job["id"], "?");
    if (job["state"] == "delayed") {
      std::printf("%-32s %-8s due at %lld ms\n", id.c_str(), "delayed",
                  static_cast<long long>(job["due_ms"].get<int64_t>()));
      continue;
    }
    const std::string attempt =
        std::to_string(job["attempt"].get<int64_t>()) + "/" +
        std::to_string(job["max_attempts"].get<int64_t>());
    const std::string bytes =
        job["payload_bytes"].is_null() ? "-" : job["payload_bytes"].dump();
    std::printf("%-32s %-8s %3d %7s %-16s %9s %-12s %s\n", id.c_str(),
                StringOr(job["state"], "?").c_str(), job["priority"].get<int>(),
                attempt.c_str(), StringOr(job["task"], "(undecodable)").c_str(),
                bytes.c_str(), StringOr(job["lock_key"], "-").c_str(),
                StringOr(job["broker"], "-").c_str());
  }
  if (j["jobs"].empty()) std::printf("(no jobs)\n");
}

void PrintDead(const Json& j) {
  std::printf("%-32s %-13s %3s %8s %-16s %s\n", "ID", "WHY", "PRI", "ATTEMPTS",
              "TASK", "ERROR");
  for (const Json& d : j["dead"]) {
    std::printf("%-32s %-13s %3lld %8lld %-16s %s\n",
                StringOr(d["id"], "?").c_str(), StringOr(d["why"], "?").c_str(),
                static_cast<long long>(d["priority"].get<int64_t>()),
                static_cast<long long>(d["attempts"].get<int64_t>()),
                StringOr(d["task"], "(undecodable)").c_str(),
                StringOr(d["error"], "").c_str());
  }
  std::printf("%zu of %lld dead jobs shown\n", j["dead"].size(),
              static_cast<long long>(j["total"].get<int64_t>()));
}

// Prints "<key> <n> <what> in queue <name>": "purged 3 waiting jobs ...".
void PrintCount(const Json& j, const char* key, const char* what) {
  std::printf("%s %lld %s in queue %s\n", key,
              static_cast<long long>(j[key].get<int64_t>()), what,
              j["queue"].get<std::string>().c_str());
}

// The flags of `yard queue` and the subcommand they chose.
struct QueueCommand {
  cli::QueueFlags flags;
  size_t inspect_limit = kDefaultListLimit;
  size_t dead_limit = kDefaultListLimit;
  int64_t requeue_limit = 0;  // all
  bool purge_dead = false;
  double rate = 0;
  int64_t burst = 0;
  int64_t per_key = 1;
  std::string lock_key;
  CLI::App* stats = nullptr;
  CLI::App* inspect = nullptr;
  CLI::App* dead = nullptr;
  CLI::App* requeue = nullptr;
  CLI::App* purge = nullptr;
  CLI::App* pause = nullptr;
  CLI::App* resume = nullptr;
  CLI::App* limit = nullptr;
  CLI::App* concurrency = nullptr;
};

void AddSubcommands(CLI::App& app, QueueCommand* c) {
  // `yard queue --redis URL stats` as well as `yard queue stats --redis URL`.
  cli::AddQueueFlags(app, &c->flags);
  c->stats = app.add_subcommand(
      "stats", "Ready, running, delayed and dead jobs; counters; brokers");
  c->inspect = app.add_subcommand(
      "inspect",
      "List jobs: ready and running (highest priority first), "
      "then delayed");
  c->inspect->add_option("--limit", c->inspect_limit, "jobs listed at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->dead = app.add_subcommand("dead", "List dead letters");
  c->dead->add_option("--limit", c->dead_limit, "dead jobs listed at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->requeue = app.add_subcommand(
      "requeue-dead",
      "Move dead letters back to their ready streams (attempts start over)");
  c->requeue
      ->add_option("--limit", c->requeue_limit,
                   "dead letters moved at most (default: all)")
      ->check(CLI::PositiveNumber);
  c->purge = app.add_subcommand(
      "purge", "Delete waiting jobs (ready and delayed), never running ones");
  c->purge->add_flag("--dead", c->purge_dead,
                     "delete the dead letters instead");
  c->pause = app.add_subcommand(
      "pause",
      "Stop handing the queue's jobs to workers (every broker, within 250 ms);"
      " submits are still accepted");
  c->resume = app.add_subcommand("resume", "Undo pause");
  c->limit = app.add_subcommand(
      "limit",
      "At most --rate jobs per second go to workers, all brokers together");
  c->limit
      ->add_option("--rate", c->rate, "jobs per second; 0 removes the limit")
      ->required()
      ->check(CLI::NonNegativeNumber);
  c->limit
      ->add_option("--burst", c->burst,
                   "jobs that may go at once after a quiet spell "
                   "(default: a tenth of a second's worth)")
      ->check(CLI::NonNegativeNumber);
  c->concurrency = app.add_subcommand(
      "concurrency",
      "At most --per-key N running jobs per lock key (default 1), all "
      "brokers together");
  c->concurrency
      ->add_option("--per-key", c->per_key,
                   "jobs per lock key that may run at once; 1 is the default")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  c->concurrency->add_option(
      "--key", c->lock_key,
      "only this lock key (default: every key without its own number)");
  for (CLI::App* sub : {c->stats, c->inspect, c->dead, c->requeue, c->purge,
                        c->pause, c->resume, c->limit, c->concurrency}) {
    cli::AddQueueFlags(*sub, &c->flags);
  }
}

// A subcommand's answer, and how to print it as text.
struct Answer {
  Result<Json> out = Status::Internal("no subcommand");
  std::function<void(const Json&)> print;
};

Answer RunSubcommand(const QueueCommand& c, const admin::QueueConnection& q) {
  Answer a;
  if (c.stats->parsed()) {
    a = {admin::QueueStats(q), PrintStats};
  } else if (c.inspect->parsed()) {
    a = {admin::InspectJobs(q, c.inspect_limit), PrintJobs};
  } else if (c.dead->parsed()) {
    a = {admin::ListDead(q, c.dead_limit), PrintDead};
  } else if (c.requeue->parsed()) {
    a = {admin::RequeueDead(q, c.requeue_limit),
         [](const Json& j) { PrintCount(j, "requeued", "dead letters"); }};
  } else if (c.purge->parsed()) {
    const bool dead = c.purge_dead;
    a = {dead ? admin::PurgeDead(q) : admin::PurgeWaiting(q),
         [dead](const Json& j) {
           PrintCount(j, "purged", dead ? "dead letters" : "waiting jobs");
         }};
  } else if (c.pause->parsed() || c.resume->parsed()) {
    a = {admin::PauseQueue(q, c.pause->parsed()), [](const Json& j) {
           std::printf("queue %s %s\n", j["queue"].get<std::string>().c_str(),
                       j["paused"].get<bool>() ? "paused" : "resumed");
         }};
  } else if (c.limit->parsed()) {
    a = {admin::LimitQueue(q, c.rate, c.burst), [](const Json& j) {
           if (j["burst"].is_null()) {
             std::printf("queue %s: no rate limit\n",
                         j["queue"].get<std::string>().c_str());
           } else {
             std::printf("queue %s: at most %g jobs/s, burst %lld\n",
                         j["queue"].get<std::string>().c_str(),
                         j["rate"].get<double>(),
                         static_cast<long long>(j["burst"].get<int64_t>()));
           }
         }};
  } else if (c.concurrency->parsed()) {
    a = {admin::SetKeyConcurrency(q, c.lock_key, c.per_key), [](const Json& j) {
           std::printf(
               "queue %s: at most %lld running jobs per lock key%s%s\n",
               j["queue"].get<std::string>().c_str(),
               static_cast<long long>(j["per_key"].get<int64_t>()),
               j["key"].is_null() ? "" : " for key ",
               j["key"].is_null() ? "" : j["key"].get<std::string>().c_str());
         }};
  }
  return a;
}

// Repairs that change what a queue holds leave an audit line on stderr:
// who ran it (the login), what, and what it did.
void AuditRepair(const QueueCommand& c, const Json& outcome) {
  const char* event = c.requeue->parsed()       ? "admin_requeue"
                      : c.purge->parsed()       ? "admin_purge"
                      : c.pause->parsed()       ? "admin_pause"
                      : c.resume->parsed()      ? "admin_resume"
                      : c.limit->parsed()       ? "admin_limit"
                      : c.concurrency->parsed() ? "admin_concurrency"
                                                : nullptr;
  if (event == nullptr) return;
  const char* user = std::getenv("USER");
  AuditLog().Write(
      event, user ? user : "",
      {{"dead", c.purge->parsed() && c.purge_dead}, {"outcome", outcome}},
      MonoMillis());
}

}  // namespace

int RunQueue(int argc, char** argv) {
  CLI::App app{"Inspect and administer a durable (Redis) queue.", argv[0]};
  app.require_subcommand(1);
  QueueCommand command;
  AddSubcommands(app, &command);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  cli::StartLogging("queue", command.flags.log);
  const std::string name = app.get_name();

  Result<admin::QueueConnection> connection = cli::ConnectQueue(command.flags);
  if (!connection.ok()) {
    return cli::UsageError(name, connection.status().message());
  }
  const Answer answer = RunSubcommand(command, *connection);
  if (!answer.out.ok()) return cli::RuntimeError(name, answer.out.status());
  AuditRepair(command, answer.out.value());
  cli::PrintAnswer(answer.out.value(), command.flags.json, answer.print);
  return 0;
}

}  // namespace yard
