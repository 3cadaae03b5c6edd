#include "queue/redis_layout.h"

#include <zmq.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>

#include "common/clock.h"
#include "redis/redis_cluster.h"

namespace yard {
namespace {

// Generated at build time from queue/redis_functions.lua (CMake).
constexpr char kLibrary[] =
#include "queue/redis_functions.inc"
    ;

}  // namespace

QueueKeys::QueueKeys(std::string_view queue_name)
    : QueueKeys(queue_name, 0, 1) {}

QueueKeys::QueueKeys(std::string_view queue_name, int shard, int shards)
    : name(queue_name),
      tag(shards <= 1 ? "jq:" + name : ShardHashTag(name, shard, shards)),
      prefix("{" + tag + "}:") {
  for (int p = 0; p < kRedisPriorities; ++p) {
    stream[p] = prefix + "s:" + std::to_string(p);
  }
  delayed = prefix + "dly";
  delayed_jobs = prefix + "dlyh";
  dead = prefix + "dlq";
  stats = prefix + "stats";
  leader = prefix + "leader";
  control = prefix + "ctl";
  cancels = prefix + "cx";
  result_buckets = prefix + "resb";
}

QueueControl ParseQueueControl(const RedisReply& hash) {
  QueueControl c;
  for (size_t i = 0; i + 1 < hash.elements.size(); i += 2) {
    const std::string& field = hash.elements[i].str;
    const std::string& value = hash.elements[i + 1].str;
    const char* end = value.data() + value.size();
    if (field == "paused") {
      c.paused = value == "1";
    } else if (field == "rate") {
      double rate = 0;
      if (std::from_chars(value.data(), end, rate).ec == std::errc() &&
          rate > 0) {
        c.rate = rate;
      }
    } else if (field == "burst") {
      int64_t burst = 0;
      if (std::from_chars(value.data(), end, burst).ec == std::errc() &&
          burst > 0) {
        c.burst = burst;
      }
    }
  }
  return c;
}

int64_t DefaultBurst(double rate) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(rate / 10)));
}

std::string ShardCountKey(std::string_view queue_name) {
  std::string key = "{yard}:shards:";
  key.append(queue_name);
  return key;
}

namespace {

Result<int> ParseShardCount(const RedisReply& reply, std::string_view queue) {
  int n = 0;
  const std::string& s = reply.str;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < 1 ||
      n > kMaxQueueShards) {
    return Status::InvalidArgument(
        "the shard count of queue '" + std::string(queue) + "' in Redis (" +
        ShardCountKey(queue) + ") is not 1.." +
        std::to_string(kMaxQueueShards) + ": '" + s + "'");
  }
  return n;
}

}  // namespace

Result<int> ReadShardCount(RedisClient& client, std::string_view queue_name,
                           int64_t timeout_ms) {
  auto r = RedisCall(client, {"GET", ShardCountKey(queue_name)}, timeout_ms);
  if (!r.ok()) return r.status();
  if (r->is_nil()) return 1;
  return ParseShardCount(*r, queue_name);
}

Result<int> SettleShardCount(RedisClient& client, std::string_view queue_name,
                             int want, int fallback, int64_t timeout_ms,
                             const std::function<Status(int)>& before_storing) {
  if (want < 0 || want > kMaxQueueShards || fallback < 1 ||
      fallback > kMaxQueueShards) {
    return Status::InvalidArgument("the shard count must be 1.." +
                                   std::to_string(kMaxQueueShards));
  }
  const int n = want > 0 ? want : fallback;
  auto r = RedisCall(client, {"GET", ShardCountKey(queue_name)}, timeout_ms);
  if (r.ok() && r->is_nil()) {
    if (before_storing) {
      if (auto s = before_storing(n); !s.ok()) return s;
    }
    r = RedisCall(
        client,
        {"SET", ShardCountKey(queue_name), std::to_string(n), "NX", "GET"},
        timeout_ms);
  }
  if (!r.ok()) return r.status();
  int stored = n;
  if (!r->is_nil()) {
    auto parsed = ParseShardCount(*r, queue_name);
    if (!parsed.ok()) return parsed.status();
    stored = *parsed;
  }
  if (want > 0 && want != stored) {
    return Status::InvalidArgument(
        "queue '" + std::string(queue_name) + "' has " +
        std::to_string(stored) + " shard(s) in Redis (" +
        ShardCountKey(queue_name) + "), not " + std::to_string(want) +
        "; every broker of a queue must use the same count");
  }
  return stored;
}

std::vector<QueueKeys> ShardKeys(std::string_view queue_name, int shards) {
  std::vector<QueueKeys> keys;
  keys.reserve(static_cast<size_t>(std::max(shards, 1)));
  for (int k = 0; k < std::max(shards, 1); ++k) {
    keys.emplace_back(queue_name, k, shards);
  }
  return keys;
}

std::string QueueKeys::ProgressKey(const JobId& id) const {
  return prefix + "pg:" + id.ToString();
}

std::string QueueKeys::ResultKey(int64_t bucket, const JobId& id) const {
  return prefix + "res:" + std::to_string(bucket) + ":" + id.ToString()[0];
}

// [u32 length][u32 zero][blob][zeros to a multiple of 8]: every blob
// starts 8-aligned when the packed string does (FlatBuffers structs such as
// Id need 8-byte alignment; malloc'd strings have it).
void PackJob(std::string_view blob, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(blob.size());
  const char head[8] = {static_cast<char>(n & 0xff),
                        static_cast<char>((n >> 8) & 0xff),
                        static_cast<char>((n >> 16) & 0xff),
                        static_cast<char>((n >> 24) & 0xff),
                        0,
                        0,
                        0,
                        0};
  out->append(head, 8);
  out->append(blob);
  out->append((8 - blob.size() % 8) % 8, '\0');
}

bool UnpackJobs(std::string_view packed, std::vector<std::string_view>* blobs) {
  blobs->clear();
  while (!packed.empty()) {
    if (packed.size() < 8) return false;
    const auto* b = reinterpret_cast<const unsigned char*>(packed.data());
    const size_t n =
        b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<size_t>(b[3]) << 24);
    const size_t padded = n + (8 - n % 8) % 8;
    if (padded > packed.size() - 8) return false;
    blobs->push_back(packed.substr(8, n));
    packed.remove_prefix(8 + padded);
  }
  return true;
}

int64_t RecordJobCount(std::string_view n) {
  int64_t v = 0;
  const auto [end, error] = std::from_chars(n.data(), n.data() + n.size(), v);
  return error == std::errc() && end == n.data() + n.size() ? v : 1;
}

std::string DecodeRecord(std::string_view n, std::string_view packed,
                         std::vector<RecordJob>* jobs) {
  jobs->clear();
  std::vector<std::string_view> blobs;
  std::string why;
  if (!UnpackJobs(packed, &blobs)) {
    why = "field p is not a list of jobs";
  } else if (blobs.empty() ||
             static_cast<int64_t>(blobs.size()) != RecordJobCount(n)) {
    why = "field n does not match the jobs in field p";
  }
  for (size_t i = 0; why.empty() && i < blobs.size(); ++i) {
    const auto* job = VerifiedRoot<wire::Job>(blobs[i]);
    if (!job) {
      why = "field p holds a job that is not a verifiable Job";
    } else {
      jobs->push_back(RecordJob{blobs[i], job});
    }
  }
  if (!why.empty()) jobs->clear();
  return why;
}

Result<std::string> FindResult(RedisClient& client, const QueueKeys& keys,
                               const JobId& id, int64_t timeout_ms) {
  auto buckets = RedisCall(
      client, {"ZRANGE", keys.result_buckets, "0", "-1", "REV"}, timeout_ms);
  if (!buckets.ok()) return buckets.status();
  for (const RedisReply& bucket : buckets->elements) {
    int64_t b = 0;
    std::from_chars(bucket.str.data(), bucket.str.data() + bucket.str.size(),
                    b);
    auto r = RedisCall(client, {"HGET", keys.ResultKey(b, id), id.ToString()},
                       timeout_ms);
    if (!r.ok()) return r.status();
    if (r->type == RedisReply::Type::kString) return r->str;
  }
  return Status::NotFound("no result for " + id.ToString() +
                          " (unknown, not finished, or expired)");
}

std::string QueueKeys::Inbox(std::string_view broker) const {
  return prefix + "in:" + std::string(broker);
}

std::vector<std::string> QueueKeys::Fcall(std::string_view function) const {
  return {"FCALL", std::string(function), "6",  stream[0], stream[1], stream[2],
          delayed, delayed_jobs,          dead, prefix};
}

Status ValidateQueueName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return Status::InvalidArgument("a queue name has 1 to 64 characters");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("queue name '" + std::string(name) +
                                     "': use letters, digits, '_', '.', '-'");
    }
  }
  return Status::OK();
}

std::string_view RedisFunctionLibrary() {
  return {kLibrary, sizeof kLibrary - 1};
}

Status EnsureQueue(RedisClient& client, const QueueKeys& keys,
                   int64_t timeout_ms) {
  const int64_t deadline = MonoMillis() + timeout_ms;
  auto left = [deadline] {
    return std::max<int64_t>(1, deadline - MonoMillis());
  };
  auto loaded = RedisCall(
      client,
      {"FUNCTION", "LOAD", "REPLACE", std::string(RedisFunctionLibrary())},
      left());
  if (!loaded.ok()) {
    return Status(loaded.status().code(), "loading the Functions library: " +
                                              loaded.status().message());
  }
  for (const std::string& s : keys.stream) {
    auto r = RedisCall(
        client, {"XGROUP", "CREATE", s, kRedisGroup, "0", "MKSTREAM"}, left());
    if (!r.ok() &&
        r.status().message().find("BUSYGROUP") == std::string::npos) {
      return r.status();
    }
  }
  return Status::OK();
}

}  // namespace yard
