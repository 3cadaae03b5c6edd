#include "tools/cli.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/logging.h"
#include "redis/redis_client.h"
#include "redis/redis_target.h"
#include "schemas/frames.h"

namespace yard::cli {

namespace {

// Set while `yard completion` collects the commands' definitions.
AppVisitor* describe_hook = nullptr;

// The commands that run until stopped ("yard broker" -> "broker"), which
// take --config and read $YARD_<COMMAND>_<FLAG>; null for the others.
const char* LongRunningCommand(std::string_view name) {
  for (const char* cmd : {"broker", "worker", "loadtest"}) {
    if (name == std::string("yard ") + cmd) return cmd;
  }
  return nullptr;
}

std::string EnvName(const std::string& command, const std::string& flag) {
  std::string env = "YARD_" + command + "_" + flag;
  for (char& c : env) {
    c = c == '-'
            ? '_'
            : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return env;
}

// Whether `args` (before any "--") give `opt` itself, in any of its forms:
// --name, --name=VALUE, -n, -nVALUE.
bool GivenOnCommandLine(const CLI::Option& opt,
                        const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--") break;
    for (const std::string& l : opt.get_lnames()) {
      if (a == "--" + l || a.starts_with("--" + l + "=")) return true;
    }
    for (const std::string& s : opt.get_snames()) {
      if (!a.starts_with("--") && a.starts_with("-" + s)) return true;
    }
  }
  return false;
}

// For every option of `app` (those added by anyone, after the fact) that
// the command line does not give: $YARD_<COMMAND>_<FLAG>, when set and not
// empty, becomes "--flag=VALUE" ahead of the command line. A config file
// fills only options still unset after that, so the order is flags >
// environment > config file > defaults.
void AddEnvironmentArgs(const CLI::App& app, const std::string& command,
                        std::vector<std::string>* args) {
  std::vector<std::string> from_env;
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_lnames().empty() || opt == app.get_help_ptr() ||
        opt == app.get_help_all_ptr()) {
      continue;
    }
    const std::string& flag = opt->get_lnames().front();
    const char* value = std::getenv(EnvName(command, flag).c_str());
    if (value == nullptr || *value == '\0' || GivenOnCommandLine(*opt, *args)) {
      continue;
    }
    from_env.push_back("--" + flag + "=" + value);
  }
  args->insert(args->begin(), from_env.begin(), from_env.end());
}

// One line of --print-config with a password inside a URL
// (redis://USER:PASSWORD@HOST) as "***": settings get pasted into tickets
// and chat.
std::string Redacted(const std::string& line, bool* redacted) {
  if (line.find("://") == std::string::npos) return line;
  std::string out = RedactRedisUrl(line);
  if (out != line) *redacted = true;
  return out;
}

// The settings in effect as a config file: what flags, the environment and
// the config file set, then the defaults as comments, so that the output
// read back as --config sets exactly the same (some commands tell a flag
// left at its default from one given: `yard broker --max-queue`), except
// for a password inside a URL, which is never printed.
void PrintConfig(const CLI::App& app) {
  const std::string set = app.config_to_str(false, false);
  bool redacted = false;
  std::stringstream given(set);
  for (std::string line; std::getline(given, line);) {
    std::cout << Redacted(line, &redacted) << "\n";
  }
  std::stringstream all(app.config_to_str(true, false));
  for (std::string line; std::getline(all, line);) {
    const std::string key = line.substr(0, line.find('=') + 1);
    if (set.starts_with(key) || set.find("\n" + key) != std::string::npos) {
      continue;
    }
    std::cout << "# " << Redacted(line, &redacted) << "\n";
  }
  if (redacted) {
    std::cout << "# a password inside a URL is shown as ***: keep it in "
                 "--redis-password-file or $YARD_REDIS_PASSWORD instead\n";
  }
}

}  // namespace

void SetDescribeHook(AppVisitor* hook) { describe_hook = hook; }

bool Parse(CLI::App& app, int argc, char** argv, int* exit_code) {
  const std::string name = argv[0];
  if (app.get_name().empty()) app.name(name);
  const char* command = LongRunningCommand(name);
  CLI::Option* print_config = nullptr;
  if (command != nullptr) {
    app.set_config("--config", "",
                   "read flags from this TOML or INI file: one `flag = value` "
                   "per line, the flag's name without its dashes; flags and "
                   "$" +
                       EnvName(command, "<flag>") +
                       " (dashes as underscores) override it");
    app.allow_config_extras(CLI::config_extras_mode::error);
    static const std::string kPrintConfigHelp =
        "print the settings in effect (flags, environment, config file and "
        "defaults) as a config file, and exit";
    print_config = app.add_flag("--print-config", kPrintConfigHelp);
    print_config->configurable(false);
  }
  if (describe_hook != nullptr) {
    (*describe_hook)(app);
    *exit_code = 0;
    return false;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (command != nullptr) AddEnvironmentArgs(app, command, &args);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    *exit_code = 0;
    return false;
  } catch (const CLI::CallForAllHelp& e) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    *exit_code = 0;
    return false;
  } catch (const CLI::ParseError& e) {
    *exit_code = UsageError(app.get_name(), e.what());
    return false;
  }
  if (print_config != nullptr && print_config->count() > 0) {
    PrintConfig(app);
    *exit_code = 0;
    return false;
  }
  return true;
}

int UsageError(const std::string& command, const std::string& message) {
  std::string one_line = message;
  for (char& c : one_line) {
    if (c == '\n') c = ' ';
  }
  std::cerr << command << ": error: " << one_line << "\n";
  return kExitUsage;
}

void AddLogFlags(CLI::App& app, LogFlags* flags, const char* level_help) {
  app.add_option("--log-level", flags->level,
                 level_help ? level_help : "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  AddLogFormatFlag(app, &flags->format);
}

void AddLogFormatFlag(CLI::App& app, std::string* format) {
  app.add_option("--log-format", *format,
                 "text|json: json writes one object per line (time, level, "
                 "component, message, job_id, trace_id)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
}

void StartLogging(const char* component, const LogFlags& flags) {
  // Parse checked the value: anything else than json is text.
  InitLogging(component, flags.level,
              ParseLogFormat(flags.format).value_or(LogFormat::kText));
}

void AddMetricsFlag(CLI::App& app, std::string* address) {
  app.add_option("--metrics", *address,
                 "Serve /metrics (Prometheus), /healthz and /readyz over "
                 "HTTP on HOST:PORT (PORT 0: any free port)");
}

int StartMetrics(const std::string& command, const char* what,
                 const std::string& address, MetricsEndpoints endpoints,
                 std::unique_ptr<MetricsServer>* server) {
  if (address.empty()) return 0;
  auto started = MetricsServer::Start(address, std::move(endpoints));
  if (!started.ok()) {
    return UsageError(command, "--metrics: " + started.status().message());
  }
  *server = std::move(started).value();
  std::cout << "yard " << what << " metrics=" << (*server)->address()
            << std::endl;
  return 0;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

CLI::Option* AddRedisAuthFlags(CLI::App& app, RedisAuthFlags* flags,
                               CLI::Option* needs) {
  CLI::Option* o = app.add_option(
      "--redis-password-file", flags->password_file,
      std::string("Redis password: the first line of this file (used when "
                  "the URL has none; then $") +
          kRedisPasswordEnv + ")");
  CLI::Option* t =
      app.add_option("--redis-timeout-ms", flags->timeout_ms,
                     "how long a Redis command or connect may go unanswered "
                     "before the connection counts as lost (a broker then "
                     "answers submits Unavailable and reconnects)")
          ->check(CLI::Range(int64_t{1}, int64_t{600000}))
          ->capture_default_str();
  if (needs != nullptr) {
    o->needs(needs);
    t->needs(needs);
  }
  return o;
}

namespace {

// The first line of `path`, without its line end.
Result<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::InvalidArgument("--redis-password-file: cannot read " +
                                   path + ": " + std::strerror(errno));
  }
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    return Status::InvalidArgument("--redis-password-file: " + path +
                                   " has no password on its first line");
  }
  return line;
}

}  // namespace

Result<std::string> ResolveRedisUrl(const std::string& url,
                                    const RedisAuthFlags& flags) {
  SetRedisTimeoutMs(flags.timeout_ms);
  std::string password;
  if (!flags.password_file.empty()) {
    auto read = ReadPasswordFile(flags.password_file);
    if (!read.ok()) return read.status();
    password = std::move(read).value();
  } else if (const char* env = std::getenv(kRedisPasswordEnv)) {
    password = env;
  }
  // The URL's own password, when it has one, wins.
  return RedisUrlWithPassword(url, password);
}

const char kRedisUrlForms[] =
    "redis://[USER[:PASSWORD]@]HOST:PORT[/DB], "
    "sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/MASTER[/DB] or "
    "cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]";

void AddQueueFlags(CLI::App& app, QueueFlags* flags) {
  app.add_option(
      "--redis", flags->redis_url,
      std::string("Redis holding the queue (required): ") + kRedisUrlForms);
  AddRedisAuthFlags(app, &flags->auth, nullptr);
  app.add_option("--queue", flags->queue, "queue name")->capture_default_str();
  app.add_flag("--json", flags->json, "print one JSON object instead of text");
  AddLogFormatFlag(app, &flags->log.format);
}

Result<admin::QueueConnection> ConnectQueue(const QueueFlags& flags) {
  if (flags.redis_url.empty()) {
    return Status::InvalidArgument("--redis is required");
  }
  Result<std::string> url = ResolveRedisUrl(flags.redis_url, flags.auth);
  if (!url.ok()) return url.status();
  if (Result<RedisTarget> target = ParseRedisTarget(*url); !target.ok()) {
    return Status::InvalidArgument("--redis: " + target.status().message());
  }
  if (Status s = ValidateQueueName(flags.queue); !s.ok()) {
    return Status::InvalidArgument("--queue: " + s.message());
  }
  // hiredis writes with write(2): a server that hangs up must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  return admin::ConnectQueue(*url, flags.queue);
}

std::string DumpJson(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false,
                nlohmann::ordered_json::error_handler_t::replace);
}

void PrintAnswer(
    const nlohmann::ordered_json& answer, bool json,
    const std::function<void(const nlohmann::ordered_json&)>& print_text) {
  if (json) {
    std::cout << DumpJson(answer) << std::endl;
  } else {
    print_text(answer);
    std::fflush(stdout);
  }
}

int RuntimeError(const std::string& command, const Status& status) {
  std::cerr << command << ": error: " << status.message() << "\n";
  return 1;
}

CLI::Option* AddBrokerSourceFlags(CLI::App& app, const std::string& what,
                                  std::string* connect, std::string* discover,
                                  RedisAuthFlags* auth) {
  auto* c = app.add_option(
      "--connect", *connect,
      "broker " + what + " endpoints, comma-separated (tcp://HOST:PORT)");
  auto* d = app.add_option(
      "--discover", *discover,
      std::string("find the brokers in the registry of this Redis (") +
          kRedisUrlForms + ") and follow brokers joining and leaving");
  c->excludes(d);
  d->excludes(c);
  AddRedisAuthFlags(app, auth, d);
  return d;
}

int ResolveBrokerSource(const std::string& command, const std::string& connect,
                        const std::string& discover, const RedisAuthFlags& auth,
                        Discovery::Side side, const std::string& queue,
                        int64_t wait_ms, BrokerSource* out) {
  if (discover.empty()) {
    out->endpoints = SplitList(connect);
    if (out->endpoints.empty()) {
      return UsageError(command, "give --connect or --discover");
    }
    for (const std::string& ep : out->endpoints) {
      if (Status st = ValidateEndpoint(ep); !st.ok()) {
        return UsageError(command, "--connect: " + st.message());
      }
    }
    return 0;
  }
  Result<std::string> url = ResolveRedisUrl(discover, auth);
  if (!url.ok()) return UsageError(command, url.status().message());
  Discovery::Options o;
  o.url = *url;
  o.side = side;
  o.queue = queue;
  o.wait_ms = wait_ms;
  auto d = Discovery::Create(o);
  if (!d.ok())
    return UsageError(command, "--discover: " + d.status().message());
  out->discovery = std::move(d).value();
  out->endpoints = out->discovery->endpoints();
  return 0;
}

void AddCurveClientFlags(CLI::App& app, CurveFlags* flags) {
  auto* secret = app.add_option(
      "--curve-secret", flags->secret_file,
      "CURVE: this client's secret key file (yard keygen); every socket to a "
      "broker is then encrypted and authenticated");
  app.add_option("--broker-key", flags->broker_key,
                 "CURVE: the brokers' public key, 40 Z85 characters or a file "
                 "holding it (with --discover: default, each broker's key "
                 "from its registry record)")
      ->needs(secret);
}

int ResolveCurveClient(const std::string& command, const CurveFlags& flags,
                       const BrokerSource& source, CurveClientOptions* out) {
  if (flags.secret_file.empty()) return 0;
  Result<CurveKeyPair> keys = LoadSecretKeyFile(flags.secret_file);
  if (!keys.ok()) {
    return UsageError(command, "--curve-secret: " + keys.status().message());
  }
  out->public_key = keys->public_key;
  out->secret_key = keys->secret_key;
  if (!flags.broker_key.empty()) {
    Result<std::string> key = ResolveKeyArgument(flags.broker_key);
    if (!key.ok()) {
      return UsageError(command, "--broker-key: " + key.status().message());
    }
    out->server_key = *key;
  } else if (source.discovery) {
    out->server_key_for = source.discovery->CurveKeyLookup();
  } else {
    return UsageError(command,
                      "--curve-secret needs --broker-key (or --discover)");
  }
  return 0;
}

}  // namespace yard::cli
