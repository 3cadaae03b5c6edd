// yard result JOB_ID --redis URL [--queue NAME] [--json]: the stored result
// of a finished job (a durable queue keeps it in a result bucket, a HASH
// field, for the result TTL: queue/redis_layout.h; FindResult looks through
// the live buckets; a sharded queue's result is in one of its shards).
// Exit 0: found; 1: none stored (or unreadable); 2: usage.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "common/logging.h"
#include "tools/cli.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF), so that it can go out as a JSON string unchanged.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t extra;
    uint32_t cp, min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    const size_t n = std::min<size_t>(3, in.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) {
      v = (v << 8) | (k < n ? static_cast<uint8_t>(in[i + k]) : 0);
    }
    for (size_t k = 0; k < 4; ++k) {
      out += k <= n ? kAlphabet[(v >> (18 - 6 * k)) & 0x3F] : '=';
    }
  }
  return out;
}

Json ResultJson(const JobId& id, const wire::JobResult& r) {
  const std::string_view output = AsString(r.output());
  const std::string_view error = AsString(r.error());
  Json j = {{"id", id.ToString()},
            {"status", wire::EnumNameResultStatus(r.status())}};
  // Output is bytes: text when it is valid UTF-8, base64 otherwise.
  if (IsUtf8(output)) {
    j["output"] = std::string(output);
  } else {
    j["output_base64"] = Base64(output);
  }
  j["error"] = error.empty() ? Json(nullptr) : Json(std::string(error));
  j["attempt"] = r.attempt();
  j["duration_us"] = r.duration_us();
  return j;
}

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
  // Library warnings go to stderr, never into the JSON on stdout.
  InitLogging("result", "warn");
  const std::string name = app.get_name();

  const std::optional<JobId> id = JobId::Parse(id_text);
  if (!id) {
    return cli::UsageError(name,
                           "JOB_ID '" + id_text + "': expected 32 hex digits");
  }
  Result<cli::QueueConnection> connection = cli::ConnectQueue(flags);
  if (!connection.ok()) {
    return cli::UsageError(name, connection.status().message());
  }
  // A sharded queue keeps a result in the shard that ran the job: any one.
  Result<std::string> stored = Status::NotFound("no shard");
  for (const cli::QueueShard& shard : connection->shards) {
    stored = FindResult(*shard.client, shard.keys, *id);
    if (stored.status().code() != StatusCode::kNotFound) break;
  }
  if (!stored.ok()) {
    if (stored.status().code() == StatusCode::kNotFound) {
      std::cerr << "no result for " << id->ToString()
                << " (unknown, not finished, or expired)\n";
      return 1;
    }
    return cli::RuntimeError(name, stored.status());
  }
  const wire::JobResult* result = VerifiedRoot<wire::JobResult>(*stored);
  if (result == nullptr) {
    return cli::RuntimeError(
        name, Status::Corruption("the stored result of " + id->ToString() +
                                 " is not a valid yard.wire.JobResult"));
  }
  const Json out = ResultJson(*id, *result);
  if (flags.json) {
    std::cout << cli::DumpJson(out) << std::endl;
  } else {
    PrintResult(out);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace yard
