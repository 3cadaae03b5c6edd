#include "redis/redis_cluster.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "common/clock.h"
#include "redis/redis_call.h"

namespace yard {
namespace {

constexpr std::array<uint16_t, 256> MakeCrcTable() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021
                                                 : crc << 1);
    }
    table[static_cast<size_t>(i)] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrcTable = MakeCrcTable();

// An integer element of a CLUSTER SLOTS reply (RESP2 integers; a string is
// accepted too).
bool SlotNumber(const RedisReply& r, int64_t max, int64_t* out) {
  if (r.type == RedisReply::Type::kInteger) {
    if (r.integer < 0 || r.integer > max) return false;
    *out = r.integer;
    return true;
  }
  return r.type == RedisReply::Type::kString && ParseDecimal(r.str, max, out);
}

}  // namespace

uint16_t Crc16Xmodem(std::string_view data) {
  uint16_t crc = 0;
  for (char c : data) {
    const auto byte = static_cast<uint8_t>(c);
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrcTable[((crc >> 8) ^ byte) & 0xff]);
  }
  return crc;
}

std::string ShardHashTag(std::string_view queue, int shard, int shards) {
  std::string base = "jq:";
  base.append(queue).append(":").append(std::to_string(shard));
  const int64_t lo = int64_t{shard} * kRedisClusterSlots / shards;
  const int64_t hi = int64_t{shard + 1} * kRedisClusterSlots / shards;
  for (int64_t salt = 0;; ++salt) {
    std::string tag = base;
    if (salt > 0) tag.append("~").append(std::to_string(salt));
    const int64_t slot =
        Crc16Xmodem(tag) % kRedisClusterSlots;  // KeySlot of "{tag}"
    if (slot >= lo && slot < hi) return tag;
  }
}

uint16_t KeySlot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(Crc16Xmodem(key) & (kRedisClusterSlots - 1));
}

std::optional<RedisRedirect> ParseRedisRedirect(std::string_view error) {
  if (error.starts_with("redis: ")) error.remove_prefix(7);
  if (error.starts_with('-')) error.remove_prefix(1);
  RedisRedirect out;
  if (error.starts_with("MOVED ")) {
    out.kind = RedisRedirect::Kind::kMoved;
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    out.kind = RedisRedirect::Kind::kAsk;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view endpoint = error.substr(space + 1);
  // Nothing may follow the endpoint but the line end.
  while (!endpoint.empty() &&
         (endpoint.back() == '\r' || endpoint.back() == '\n')) {
    endpoint.remove_suffix(1);
  }
  const size_t colon = endpoint.rfind(':');
  int64_t slot = 0, port = 0;
  if (colon == std::string_view::npos ||
      endpoint.find(' ') != std::string_view::npos ||
      !ParseDecimal(error.substr(0, space), kRedisClusterSlots - 1, &slot) ||
      !ParseDecimal(endpoint.substr(colon + 1), 65535, &port) || port == 0) {
    return std::nullopt;
  }
  out.slot = static_cast<uint16_t>(slot);
  out.host = std::string(endpoint.substr(0, colon));
  out.port = static_cast<uint16_t>(port);
  return out;
}

std::string RedisHostPort(const RedisAddress& a) {
  std::string out;
  const bool v6 = a.host.find(':') != std::string::npos;
  if (v6) out.push_back('[');
  out.append(a.host);
  if (v6) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(a.port));
  return out;
}

// ---------------------------------------------------------------- slot map

Result<RedisSlotMap> RedisSlotMap::Parse(const RedisReply& reply,
                                         const RedisAddress& asked) {
  auto bad = [](const std::string& why) {
    return Status::InvalidArgument("unexpected CLUSTER SLOTS reply: " + why);
  };
  if (reply.type != RedisReply::Type::kArray) return bad("not an array");
  RedisSlotMap map;
  for (const RedisReply& r : reply.elements) {
    int64_t first = 0, last = 0, port = 0;
    if (r.type != RedisReply::Type::kArray || r.elements.size() < 3 ||
        !SlotNumber(r.elements[0], kRedisClusterSlots - 1, &first) ||
        !SlotNumber(r.elements[1], kRedisClusterSlots - 1, &last) ||
        first > last) {
      return bad("a range is not [first, last, primary, ...]");
    }
    const RedisReply& node = r.elements[2];
    if (node.type != RedisReply::Type::kArray || node.elements.size() < 2 ||
        node.elements[0].type != RedisReply::Type::kString ||
        !SlotNumber(node.elements[1], 65535, &port) || port == 0) {
      return bad("the primary of slots " + std::to_string(first) + "-" +
                 std::to_string(last) + " is not [host, port, ...]");
    }
    Range range;
    range.first = static_cast<uint16_t>(first);
    range.last = static_cast<uint16_t>(last);
    range.primary.host = node.elements[0].str;
    // "" (does not know its own address yet) or "?" (hostname endpoints
    // without a hostname): the node that answered knows it as `asked`.
    if (range.primary.host.empty() || range.primary.host == "?") {
      range.primary.host = asked.host;
    }
    range.primary.port = static_cast<uint16_t>(port);
    // Every node of a cluster takes the same credentials.
    range.primary.auth = asked.auth;
    if (node.elements.size() > 2 &&
        node.elements[2].type == RedisReply::Type::kString) {
      range.node_id = node.elements[2].str;
    }
    map.ranges_.push_back(std::move(range));
  }
  std::sort(map.ranges_.begin(), map.ranges_.end(),
            [](const Range& a, const Range& b) { return a.first < b.first; });
  for (size_t i = 1; i < map.ranges_.size(); ++i) {
    if (map.ranges_[i].first <= map.ranges_[i - 1].last) {
      return bad("ranges overlap at slot " +
                 std::to_string(map.ranges_[i].first));
    }
  }
  return map;
}

const RedisSlotMap::Range* RedisSlotMap::LookupRange(uint16_t slot) const {
  // The first range that ends at or after `slot`.
  auto it =
      std::lower_bound(ranges_.begin(), ranges_.end(), slot,
                       [](const Range& r, uint16_t s) { return r.last < s; });
  if (it == ranges_.end() || it->first > slot) return nullptr;
  return &*it;
}

const RedisAddress* RedisSlotMap::Lookup(uint16_t slot) const {
  const Range* r = LookupRange(slot);
  return r == nullptr ? nullptr : &r->primary;
}

int RedisSlotMap::covered() const {
  int n = 0;
  for (const Range& r : ranges_) n += r.last - r.first + 1;
  return n;
}

std::vector<RedisAddress> RedisSlotMap::Primaries() const {
  std::vector<RedisAddress> out;
  for (const Range& r : ranges_) {
    const bool seen = std::any_of(out.begin(), out.end(), [&](const auto& a) {
      return a.host == r.primary.host && a.port == r.primary.port;
    });
    if (!seen) out.push_back(r.primary);
  }
  return out;
}

// ---------------------------------------------------------------- fetch

Result<RedisSlotMap> FetchSlotMap(const std::vector<RedisAddress>& seeds,
                                  int64_t timeout_ms, size_t* answered) {
  if (seeds.empty()) return Status::InvalidArgument("no cluster seed node");
  const int64_t deadline = MonoMillis() + std::max<int64_t>(timeout_ms, 1);
  std::string why;
  const size_t n = seeds.size();
  for (size_t i = 0; i < n; ++i) {
    const RedisAddress& seed = seeds[i];
    why += "; " + RedisHostPort(seed) + ": ";
    const int64_t left = deadline - MonoMillis();
    if (left <= 0) {
      why += "not tried (out of time)";
      continue;
    }
    // An equal share of what is left for each seed still to ask.
    const int64_t mine =
        std::max<int64_t>(1, left / static_cast<int64_t>(n - i));
    const int64_t my_deadline = MonoMillis() + mine;
    RedisAddress db0 = seed;
    db0.db = 0;  // a cluster has only db 0
    auto client = RedisClient::Connect(db0, mine);
    if (!client.ok()) {
      why += client.status().message();
      continue;
    }
    auto reply = RedisCall(**client, {"CLUSTER", "SLOTS"},
                           std::max<int64_t>(1, my_deadline - MonoMillis()));
    if (!reply.ok()) {
      why += reply.status().message();
      continue;
    }
    auto map = RedisSlotMap::Parse(*reply, db0);
    if (!map.ok()) {
      why += map.status().message();
      continue;
    }
    if (map->ranges().empty()) {
      why += "serves no slot (cluster not set up yet?)";
      continue;
    }
    if (answered != nullptr) *answered = i;
    return map;
  }
  return Status::Unavailable("no cluster slot map within " +
                             std::to_string(timeout_ms) + " ms" + why);
}

}  // namespace yard
