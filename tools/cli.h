// Shared plumbing for the `yard` subcommands: CLI11 parsing with the exit
// contract (help: 0; any bad flag or value: one line on stderr, exit 2).
#ifndef YARD_TOOLS_CLI_H_
#define YARD_TOOLS_CLI_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "admin/queue_admin.h"
#include "common/status.h"
#include "metrics/metrics_server.h"
#include "registry/registry.h"
#include "schemas/codec.h"
#include "security/curve_keys.h"

namespace yard::cli {

inline constexpr int kExitUsage = 2;

// Parses; on --help prints help and returns 0 through *exit_code; on an
// error prints "yard <cmd>: error: ..." and sets *exit_code = 2. Returns
// true when the command should run.
//
// The long-running commands (broker, worker, loadtest) also get, for every
// option they define (whoever added it):
//   --config FILE   TOML or INI, `flag-name = value` (CLI11's reader; an
//                   unknown key is a usage error);
//   $YARD_<COMMAND>_<FLAG>  e.g. YARD_BROKER_REDIS for `yard broker --redis`,
//                   YARD_WORKER_HEARTBEAT_MS for `yard worker --heartbeat-ms`
//                   (an empty value counts as unset; a repeatable flag gets
//                   one value);
//   --print-config  prints the settings in effect as a config file, exits 0.
// Precedence: flags > environment > config file > defaults.
bool Parse(CLI::App& app, int argc, char** argv, int* exit_code);

// While set (non-null), Parse only hands each app to the hook, fully
// defined, and returns false with exit code 0: `yard completion` runs every
// command this way to learn its flags.
using AppVisitor = std::function<void(const CLI::App&)>;
void SetDescribeHook(AppVisitor* hook);

// A one-line usage error (exit code 2).
int UsageError(const std::string& command, const std::string& message);

// Logging on stderr (common/logging.h), for every subcommand:
//   --log-level trace|debug|info|warn|error|off (the command's default);
//   --log-format text|json (default text).
struct LogFlags {
  std::string level = "info";
  std::string format = "text";
};
// Adds --log-level (described by `level_help`, or the list of levels) and
// --log-format.
void AddLogFlags(CLI::App& app, LogFlags* flags,
                 const char* level_help = nullptr);
// Adds --log-format alone (a command whose level is fixed).
void AddLogFormatFlag(CLI::App& app, std::string* format);
// InitLogging for `component` with the flags' values.
void StartLogging(const char* component, const LogFlags& flags);

// --metrics HOST:PORT: the /metrics, /healthz and /readyz endpoints
// (metrics/metrics_server.h).
void AddMetricsFlag(CLI::App& app, std::string* address);
// With `address` set, starts the endpoints into *server and prints
// "yard <what> metrics=HOST:PORT" (the port resolved) on stdout. 0, or the
// exit code of a one-line usage error (a bad address, or one in use).
int StartMetrics(const std::string& command, const char* what,
                 const std::string& address, MetricsEndpoints endpoints,
                 std::unique_ptr<MetricsServer>* server);

// "a,b,c" -> {"a","b","c"}; empty items dropped.
std::vector<std::string> SplitList(const std::string& s);

// Redis credentials, for every subcommand that takes a Redis URL (--redis,
// --discover). The password comes from, first to last:
//   1. the URL itself (redis://USER:PASSWORD@HOST:PORT, redis://:PASSWORD@...);
//   2. --redis-password-file FILE: its first line, the line end stripped;
//   3. the environment variable YARD_REDIS_PASSWORD.
// The last two keep the password out of `ps`. The user, if any, is always
// the URL's (redis://USER@HOST:PORT with the password from 2 or 3).
inline constexpr char kRedisPasswordEnv[] = "YARD_REDIS_PASSWORD";

struct RedisAuthFlags {
  std::string password_file;
  // --redis-timeout-ms: how long any Redis command (and a connect) may go
  // unanswered before the connection counts as lost. ResolveRedisUrl makes
  // it the process's default (SetRedisTimeoutMs).
  int64_t timeout_ms = kDefaultRedisTimeoutMs;
};

// Adds --redis-password-file and --redis-timeout-ms; `needs` (optional) is
// the URL option they go with. Returns the former.
CLI::Option* AddRedisAuthFlags(CLI::App& app, RedisAuthFlags* flags,
                               CLI::Option* needs = nullptr);

// `url` with the password from the order above ("local" and other non-URLs
// as they are). InvalidArgument "--redis-password-file: ..." when the file
// cannot be read or is empty.
Result<std::string> ResolveRedisUrl(const std::string& url,
                                    const RedisAuthFlags& flags);

// The commands that administer a durable (Redis) queue: `yard queue ...`
// (tools/cmd_queue.cc) and `yard result` (tools/cmd_result.cc), over the
// library admin/queue_admin.h.

// The flags they all take.
struct QueueFlags {
  std::string redis_url;
  RedisAuthFlags auth;
  std::string queue = "default";
  bool json = false;
  // Library warnings go to stderr (never into the JSON on stdout).
  LogFlags log{.level = "warn"};
};

// Adds --redis, --redis-password-file, --queue, --json and --log-format to
// `app`. A command may add them to itself and to each subcommand, bound to
// the same flags, so that they work before the subcommand's name and after
// it: --redis is therefore not marked required here; ConnectQueue checks it.
void AddQueueFlags(CLI::App& app, QueueFlags* flags);

// Checks the flags and connects (admin::ConnectQueue). A bad URL, password
// file or queue name ("--redis: ...", "--redis-password-file: ...",
// "--queue: ..."), a stored shard count that is not one, or a server that
// does not answer or refuses the credentials ("cannot reach Redis at URL:
// ... authentication failed ...") are all usage errors (exit 2) for the
// caller.
Result<admin::QueueConnection> ConnectQueue(const QueueFlags& flags);

// JSON text for stdout. Strings from Redis (task names, tokens, errors) need
// not be UTF-8: invalid bytes become U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::ordered_json& j);

// Prints a command's answer on stdout: with `json`, as one line of JSON
// (DumpJson); otherwise as `print_text` formats it.
void PrintAnswer(
    const nlohmann::ordered_json& answer, bool json,
    const std::function<void(const nlohmann::ordered_json&)>& print_text);

// A runtime failure (after the flags were accepted): one line, exit 1.
int RuntimeError(const std::string& command, const Status& status);

// Where a worker or producer finds its brokers: a static --connect list or
// the registry behind --discover (registry/registry.h). Exactly one is given.
struct BrokerSource {
  std::vector<std::string> endpoints;    // to start with
  std::unique_ptr<Discovery> discovery;  // keeps them current; null: static
};

// Adds --connect and --discover (the one excludes the other), and
// --redis-password-file for --discover; `what` names the endpoints
// ("backend" or "frontend"). Returns --discover, for the options that mean
// something only with it (->needs()).
CLI::Option* AddBrokerSourceFlags(CLI::App& app, const std::string& what,
                                  std::string* connect, std::string* discover,
                                  RedisAuthFlags* auth);

// Checks the flags; with --discover, reads the registry (waiting up to
// wait_ms for a live broker of `queue`, all queues when empty). Returns 0
// with *out filled, or the exit code of a one-line error: 2 for a bad flag
// or an unreachable registry or no broker in time.
int ResolveBrokerSource(const std::string& command, const std::string& connect,
                        const std::string& discover, const RedisAuthFlags& auth,
                        Discovery::Side side, const std::string& queue,
                        int64_t wait_ms, BrokerSource* out);

// CURVE for a producer or worker: --curve-secret FILE (its own key pair,
// curve_keys.h) and --broker-key FILE_OR_Z85 (the brokers' public key).
struct CurveFlags {
  std::string secret_file;
  std::string broker_key;
};
void AddCurveClientFlags(CLI::App& app, CurveFlags* flags);

// Loads the keys into *out (left off without --curve-secret). Without
// --broker-key, --discover supplies each broker's key from its registry
// record. Returns 0, or the exit code of a one-line usage error.
int ResolveCurveClient(const std::string& command, const CurveFlags& flags,
                       const BrokerSource& source, CurveClientOptions* out);

}  // namespace yard::cli

namespace yard::cli {

// A subcommand of `yard`: its runner sees argv[0] = "yard <name>".
struct Command {
  const char* name;
  const char* summary;  // one line for `yard --help`; null: hidden
  int (*run)(int argc, char** argv);
};

// `yard completion bash|zsh`: prints a completion script for `commands`,
// built from their CLI11 definitions (each runner is called in describe mode,
// SetDescribeHook), so it lists every subcommand and flag there is.
int RunCompletion(int argc, char** argv, const std::vector<Command>& commands);

}  // namespace yard::cli

namespace yard {
int RunBroker(int argc, char** argv);
int RunWorker(int argc, char** argv);
// The hidden `yard worker-child`: a child of `yard worker --isolate process`
// or `--exec` (worker/isolate_child.h).
int RunWorkerChild(int argc, char** argv);
int RunPush(int argc, char** argv);
int RunLoadtest(int argc, char** argv);
int RunQueue(int argc, char** argv);
int RunResult(int argc, char** argv);
int RunKeygen(int argc, char** argv);
int RunCancel(int argc, char** argv);
int RunDashboard(int argc, char** argv);
int RunTop(int argc, char** argv);
}  // namespace yard

#endif  // YARD_TOOLS_CLI_H_
