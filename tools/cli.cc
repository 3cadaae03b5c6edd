#include "tools/cli.h"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "redis/redis_target.h"
#include "schemas/frames.h"

namespace yard::cli {

bool Parse(CLI::App& app, int argc, char** argv, int* exit_code) {
  try {
    app.parse(argc, argv);
    return true;
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    *exit_code = 0;
  } catch (const CLI::CallForAllHelp& e) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    *exit_code = 0;
  } catch (const CLI::ParseError& e) {
    *exit_code = UsageError(app.get_name(), e.what());
  }
  return false;
}

int UsageError(const std::string& command, const std::string& message) {
  std::string one_line = message;
  for (char& c : one_line) {
    if (c == '\n') c = ' ';
  }
  std::cerr << command << ": error: " << one_line << "\n";
  return kExitUsage;
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

void AddQueueFlags(CLI::App& app, QueueFlags* flags) {
  app.add_option("--redis", flags->redis_url,
                 "Redis holding the queue: redis://HOST:PORT[/DB], "
                 "sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] or "
                 "cluster://HOST:PORT[,HOST:PORT...]")
      ->required();
  app.add_option("--queue", flags->queue, "queue name")->capture_default_str();
  app.add_flag("--json", flags->json, "print one JSON object instead of text");
}

Result<admin::QueueConnection> ConnectQueue(const QueueFlags& flags) {
  if (Result<RedisTarget> target = ParseRedisTarget(flags.redis_url);
      !target.ok()) {
    return Status::InvalidArgument("--redis: " + target.status().message());
  }
  if (Status s = ValidateQueueName(flags.queue); !s.ok()) {
    return Status::InvalidArgument("--queue: " + s.message());
  }
  // hiredis writes with write(2): a server that hangs up must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  return admin::ConnectQueue(flags.redis_url, flags.queue);
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
                                  std::string* connect, std::string* discover) {
  auto* c = app.add_option(
      "--connect", *connect,
      "broker " + what + " endpoints, comma-separated (tcp://HOST:PORT)");
  auto* d = app.add_option(
      "--discover", *discover,
      "find the brokers in the registry of this Redis "
      "(redis://HOST:PORT[/DB], "
      "sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] or "
      "cluster://HOST:PORT[,HOST:PORT...]) and follow brokers joining and "
      "leaving");
  c->excludes(d);
  d->excludes(c);
  return d;
}

int ResolveBrokerSource(const std::string& command, const std::string& connect,
                        const std::string& discover, Discovery::Side side,
                        const std::string& queue, int64_t wait_ms,
                        BrokerSource* out) {
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
  Discovery::Options o;
  o.url = discover;
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

}  // namespace yard::cli
