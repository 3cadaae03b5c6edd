// yard result JOB_ID --redis URL [--queue NAME] [--json]: the stored result
// of a finished job (admin::StoredResult: a durable queue keeps it for the
// result TTL, in one of its shards).
// With --json a missing result is {"found": false, "id": ID} on stdout (a
// found one has "found": true), so scripts need not parse stderr.
// Exit 0: found; 1: none stored (or unreadable); 2: usage.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "admin/queue_admin.h"
#include "common/logging.h"
#include "tools/cli.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

void PrintResult(const Json& j) {
  for (const auto& [key, value] : j.items()) {
    if (value.is_null()) continue;
    const std::string text =
        value.is_string() ? value.get<std::string>() : value.dump();
    std::printf("%-14s %s\n", key.c_str(), text.c_str());
  }
}

}  // namespace

int RunResult(int argc, char** argv) {
  CLI::App app{"Print the stored result of a finished job (durable queue).",
               argv[0]};
  std::string id_text;
  cli::QueueFlags flags;
  app.add_option("JOB_ID", id_text, "the job's id: 32 hex digits")->required();
  cli::AddQueueFlags(app, &flags);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  cli::StartLogging("result", flags.log);
  const std::string name = app.get_name();

  const std::optional<JobId> id = JobId::Parse(id_text);
  if (!id) {
    return cli::UsageError(name,
                           "JOB_ID '" + id_text + "': expected 32 hex digits");
  }
  Result<admin::QueueConnection> connection = cli::ConnectQueue(flags);
  if (!connection.ok()) {
    return cli::UsageError(name, connection.status().message());
  }
  const Result<Json> result = admin::StoredResult(*connection, *id);
  if (result.status().code() == StatusCode::kNotFound) {
    std::cerr << "no result for " << id->ToString()
              << " (unknown, not finished, or expired)\n";
    if (flags.json) {
      std::cout << Json{{"found", false}, {"id", id->ToString()}}.dump()
                << std::endl;
    }
    return 1;
  }
  if (!result.ok()) return cli::RuntimeError(name, result.status());
  Json answer = result.value();
  if (flags.json) answer["found"] = true;
  cli::PrintAnswer(answer, flags.json, PrintResult);
  return 0;
}

}  // namespace yard
