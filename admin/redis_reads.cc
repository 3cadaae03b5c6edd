#include "admin/redis_reads.h"

#include <algorithm>
#include <charconv>
#include <utility>

namespace yard::admin {
namespace {

using ReplyType = RedisReply::Type;

std::string TextOf(const RedisReply& r) {
  return r.type == ReplyType::kInteger ? std::to_string(r.integer) : r.str;
}

// A stream or consumer group that does not exist.
bool IsMissingStream(const Status& s) {
  const std::string& m = s.message();
  // (RedisClient puts "redis: " before the server's words.)
  return m.find("NOGROUP ") != std::string::npos ||
         m.find("ERR no such key") != std::string::npos;
}

// Adds one shard's answer to the answers so far (OverShards says how).
void AddUp(Json* sum, const Json& one) {
  if (sum->is_null()) {
    *sum = one;
  } else if (sum->is_object() && one.is_object()) {
    for (const auto& [key, value] : one.items()) AddUp(&(*sum)[key], value);
  } else if (sum->is_array() && one.is_array()) {
    sum->insert(sum->end(), one.begin(), one.end());
  } else if (sum->is_number_integer() && one.is_number_integer()) {
    *sum = sum->get<int64_t>() + one.get<int64_t>();
  }
}

}  // namespace

// ---- Replies

Fields PairsOf(const RedisReply& flat) {
  Fields out;
  for (size_t i = 0; i + 1 < flat.elements.size(); i += 2) {
    out[TextOf(flat.elements[i])] = TextOf(flat.elements[i + 1]);
  }
  return out;
}

const std::string& Field(const Fields& f, const std::string& name) {
  static const std::string kEmpty;
  auto it = f.find(name);
  return it == f.end() ? kEmpty : it->second;
}

int64_t ToInt(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::vector<Entry> EntriesOf(const RedisReply& xrange) {
  std::vector<Entry> out;
  for (const RedisReply& e : xrange.elements) {
    if (e.elements.size() == 2) {
      out.push_back({e.elements[0].str, PairsOf(e.elements[1])});
    }
  }
  return out;
}

int64_t JobsIn(const Fields& f) { return RecordJobCount(Field(f, "n")); }

// ---- Commands to Redis

Result<RedisReply> Call(RedisClient& c, std::vector<std::string> args) {
  return RedisCall(c, std::move(args), RedisTimeoutMs());
}

Result<RedisReply> CallOrNil(RedisClient& c, std::vector<std::string> args) {
  Result<RedisReply> r = Call(c, std::move(args));
  if (!r.ok() && IsMissingStream(r.status())) return RedisReply{};
  return r;
}

Result<int64_t> CallInt(RedisClient& c, std::vector<std::string> args) {
  const std::string command = args.front();
  Result<RedisReply> r = Call(c, std::move(args));
  if (!r.ok()) return r.status();
  if (r->type != ReplyType::kInteger) {
    return Status::Internal(command + ": expected an integer reply");
  }
  return r->integer;
}

Result<std::set<std::string>> LeasedAmong(RedisClient& c,
                                          const std::string& stream,
                                          const std::vector<Entry>& entries) {
  std::set<std::string> out;
  if (entries.empty()) return out;
  // Entries leave a stream with XACK and XDEL together, so the PEL has no
  // ids in this range that the stream lacks: entries.size() is enough.
  Result<RedisReply> r =
      CallOrNil(c, {"XPENDING", stream, kRedisGroup, entries.front().id,
                    entries.back().id, std::to_string(entries.size())});
  if (!r.ok()) return r.status();
  for (const RedisReply& pending : r->elements) {
    if (!pending.elements.empty()) out.insert(pending.elements[0].str);
  }
  return out;
}

Status ForEachPage(
    RedisClient& c, const std::string& stream,
    const std::function<Status(const std::vector<Entry>&)>& page) {
  std::string start = "-";
  for (;;) {
    Result<RedisReply> r = Call(
        c, {"XRANGE", stream, start, "+", "COUNT", std::to_string(kChunk)});
    if (!r.ok()) return r.status();
    const std::vector<Entry> entries = EntriesOf(*r);
    if (entries.empty()) return Status::OK();
    if (Status s = page(entries); !s.ok()) return s;
    if (r->elements.size() < static_cast<size_t>(kChunk)) return Status::OK();
    start = "(" + entries.back().id;
  }
}

Result<int64_t> JobsInStream(RedisClient& c, const std::string& stream) {
  int64_t jobs = 0;
  Status s = ForEachPage(c, stream, [&](const std::vector<Entry>& entries) {
    for (const Entry& e : entries) jobs += JobsIn(e.fields);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return jobs;
}

Result<int64_t> CallInChunks(RedisClient& c, const QueueKeys& keys,
                             std::string_view function,
                             const std::vector<std::string>& args,
                             int64_t limit) {
  int64_t total = 0;
  while (total < limit) {
    const int64_t chunk = std::min(kChunk, limit - total);
    std::vector<std::string> command = keys.Fcall(function);
    command.insert(command.end(), args.begin(), args.end());
    command.push_back(std::to_string(chunk));
    Result<int64_t> n = CallInt(c, std::move(command));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    total += *n;
  }
  return total;
}

// ---- Shards

Result<Json> OverShards(const QueueConnection& q, const ShardRun& run) {
  Json sum = Json::object();
  for (const QueueShard& shard : q.shards) {
    Result<Json> one = run(shard, sum);
    if (!one.ok()) return one.status();
    for (Json& value : *one) {
      if (!value.is_array()) continue;
      for (Json& line : value) line["shard"] = shard.index;
    }
    AddUp(&sum, *one);
  }
  return sum;
}

int64_t SoFar(const Json& so_far, const char* key) {
  if (!so_far.contains(key)) return 0;
  const Json& value = so_far[key];
  return value.is_array() ? static_cast<int64_t>(value.size())
                          : value.get<int64_t>();
}

}  // namespace yard::admin
