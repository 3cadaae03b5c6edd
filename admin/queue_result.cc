// StoredResult: a finished job's result, as the durable queue keeps it in a
// result bucket (a HASH field, for the result TTL: queue/redis_layout.h).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "admin/queue_admin.h"
#include "admin/redis_reads.h"
#include "schemas/codec.h"

namespace yard::admin {
namespace {

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

// The stored JobResult blob of `id`, from whichever shard holds it.
Result<std::string> FindStoredBlob(const QueueConnection& q, const JobId& id) {
  // A sharded queue keeps a result in the shard that ran the job: any one.
  Result<std::string> stored = Status::NotFound("no shard");
  for (const QueueShard& shard : q.shards) {
    stored = FindResult(*shard.client, shard.keys, id, RedisTimeoutMs());
    if (stored.status().code() != StatusCode::kNotFound) break;
  }
  return stored;
}

// The job's last progress report (P pg:<id>), from whichever shard ran it:
// {fraction, message, at_ms}, or null when none is kept.
Result<Json> StoredProgress(const QueueConnection& q, const JobId& id) {
  for (const QueueShard& shard : q.shards) {
    Result<RedisReply> r =
        Call(*shard.client, {"HGETALL", shard.keys.ProgressKey(id)});
    if (!r.ok()) return r.status();
    if (r->elements.empty()) continue;
    Json p = {{"fraction", nullptr}, {"message", ""}, {"at_ms", nullptr}};
    for (const auto& [field, value] : PairsOf(*r)) {
      if (field == "f") p["fraction"] = std::strtod(value.c_str(), nullptr);
      if (field == "m") p["message"] = IsUtf8(value) ? value : Base64(value);
      if (field == "t") p["at_ms"] = ToInt(value);
    }
    return p;
  }
  return Json(nullptr);
}

}  // namespace

Result<Json> StoredResult(const QueueConnection& q, const JobId& id) {
  Result<std::string> stored = FindStoredBlob(q, id);
  if (!stored.ok() && stored.status().code() != StatusCode::kNotFound) {
    return stored.status();
  }
  Result<Json> progress = StoredProgress(q, id);
  if (!progress.ok()) return progress.status();
  if (!stored.ok()) {
    if (progress->is_null()) return stored.status();
    // Not finished (or its result expired first): what it last reported.
    return Json{{"id", id.ToString()},
                {"status", "Unfinished"},
                {"progress", std::move(*progress)}};
  }
  const wire::JobResult* result = VerifiedRoot<wire::JobResult>(*stored);
  if (result == nullptr) {
    return Status::Corruption("the stored result of " + id.ToString() +
                              " is not a valid yard.wire.JobResult");
  }
  Json j = ResultJson(id, *result);
  if (!progress->is_null()) j["progress"] = std::move(*progress);
  return j;
}

}  // namespace yard::admin
