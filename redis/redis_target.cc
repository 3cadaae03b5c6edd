#include "redis/redis_target.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <utility>

#include "redis/redis_call.h"
#include "redis/redis_cluster.h"

namespace yard {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kRedisScheme = "redis://";
constexpr std::string_view kSentinelScheme = "sentinel://";
constexpr std::string_view kClusterScheme = "cluster://";
// The connect after a resolution that used up (nearly) all the time.
constexpr int64_t kMinConnectMs = 100;

int64_t MillisLeft(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                               Clock::now())
      .count();
}

bool ValidMasterName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

// Asks one Sentinel for the primary and checks its ROLE; "" or why not.
// The primary gets `auth` (the data nodes' credentials); the Sentinel is
// asked without.
std::string TrySentinel(const RedisAddress& sentinel,
                        const std::string& master_name,
                        const RedisCredentials& auth,
                        Clock::time_point deadline, RedisAddress* primary) {
  auto answer = RedisCallOnce(
      sentinel, {"SENTINEL", "get-master-addr-by-name", master_name},
      MillisLeft(deadline));
  if (!answer.ok()) return answer.status().message();
  if (answer->is_nil()) return "does not monitor '" + master_name + "'";
  if (answer->type != RedisReply::Type::kArray ||
      answer->elements.size() != 2) {
    return "unexpected reply to get-master-addr-by-name";
  }
  if (answer->elements[0].type != RedisReply::Type::kString ||
      answer->elements[0].str.empty() ||
      answer->elements[1].type != RedisReply::Type::kString) {
    return "unexpected reply to get-master-addr-by-name";
  }
  RedisAddress found;
  found.host = answer->elements[0].str;
  found.auth = auth;
  int64_t port = 0;
  if (!ParseDecimal(answer->elements[1].str, 65535, &port) || port == 0) {
    return "bad port in its answer '" + answer->elements[1].str + "'";
  }
  found.port = static_cast<uint16_t>(port);
  auto role = RedisCallOnce(found, {"ROLE"}, MillisLeft(deadline));
  const std::string says = "says " + RedisHostPort(found) + ", which ";
  if (!role.ok())
    return says + "does not answer (" + role.status().message() + ")";
  if (role->type != RedisReply::Type::kArray || role->elements.empty() ||
      role->elements[0].type != RedisReply::Type::kString) {
    return says + "gave an unexpected ROLE reply";
  }
  if (role->elements[0].str != "master") {
    return says + "is a " + role->elements[0].str + ", not a master";
  }
  *primary = std::move(found);
  return "";
}

// "HOST:PORT[,HOST:PORT...]" into `out`; "" or why not (`what` names an
// address in the message: "sentinel", "seed").
std::string ParseHostList(std::string_view hosts, const char* what,
                          std::vector<RedisAddress>* out) {
  const std::string empty = std::string("empty ") + what + " address";
  if (hosts.empty()) return std::string("no ") + what + " address";
  while (!hosts.empty()) {
    const size_t comma = hosts.find(',');
    std::string_view one = hosts.substr(0, comma);
    hosts = comma == std::string_view::npos ? std::string_view()
                                            : hosts.substr(comma + 1);
    if (one.empty()) return empty;
    std::string url(kRedisScheme);
    url.append(one);
    auto address = ParseRedisUrl(url);
    if (!address.ok() || address->db != 0) {
      return std::string("bad ") + what + " address '" + std::string(one) +
             "' (want HOST:PORT)";
    }
    out->push_back(std::move(address).value());
    if (comma != std::string_view::npos && hosts.empty()) return empty;
  }
  return "";
}

// The primary serving target.key's slot, from a fresh slot map.
Result<RedisAddress> ResolveCluster(RedisTarget& target, int64_t timeout_ms) {
  size_t answered = 0;
  std::vector<RedisAddress> seeds = target.addresses;
  for (RedisAddress& seed : seeds) {
    if (seed.auth.empty()) seed.auth = target.auth;
  }
  auto map = FetchSlotMap(seeds, timeout_ms, &answered);
  if (!map.ok()) {
    return Status::Unavailable(target.ToString() + ": " +
                               map.status().message());
  }
  std::rotate(target.addresses.begin(), target.addresses.begin() + answered,
              target.addresses.begin() + answered + 1);
  const uint16_t slot = KeySlot(target.key);
  const std::string which = target.ToString() + ": slot " +
                            std::to_string(slot) + " (key '" + target.key +
                            "')";
  const RedisAddress* owner = map->Lookup(slot);
  if (owner == nullptr) {
    return Status::Unavailable(which + " is served by no primary (" +
                               std::to_string(map->covered()) +
                               " of 16384 slots are)");
  }
  // (The caller's connect checks that it answers: RedisClient::Connect
  // PINGs.)
  RedisAddress out = *owner;
  out.db = 0;
  out.auth = target.auth;
  return out;
}

}  // namespace

std::string RedisTarget::ToString() const {
  std::string out(kind == Kind::kDirect     ? kRedisScheme
                  : kind == Kind::kSentinel ? kSentinelScheme
                                            : kClusterScheme);
  if (!auth.empty()) {
    out.append(PercentEncode(auth.user));
    if (!auth.password.empty()) out.append(":***");
    out.push_back('@');
  }
  if (kind == Kind::kDirect) {
    out.append(addresses.empty() ? std::string("?")
                                 : RedisHostPort(addresses[0]));
  } else {
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (i) out.push_back(',');
      out.append(RedisHostPort(addresses[i]));
    }
    if (kind == Kind::kSentinel) {
      out.push_back('/');
      out.append(master_name);
    }
  }
  if (db != 0) {
    out.push_back('/');
    out.append(std::to_string(db));
  }
  return out;
}

std::string RedisUrlWithPassword(std::string_view url,
                                 std::string_view password) {
  if (password.empty()) return std::string(url);
  size_t scheme = 0;
  for (std::string_view s : {kRedisScheme, kSentinelScheme, kClusterScheme}) {
    if (url.starts_with(s)) scheme = s.size();
  }
  if (scheme == 0) return std::string(url);
  std::string_view rest = url.substr(scheme);
  const size_t at = rest.rfind('@');
  std::string user;
  if (at != std::string_view::npos) {
    std::string_view info = rest;
    auto auth = SplitRedisUserInfo(&info);
    if (!auth.ok() || !auth->password.empty()) return std::string(url);
    user = std::string(rest.substr(0, std::min(at, rest.find(':'))));
    rest.remove_prefix(at + 1);
  }
  std::string out(url.substr(0, scheme));
  out.append(user).append(":").append(PercentEncode(password));
  out.push_back('@');
  out.append(rest);
  return out;
}

Result<RedisTarget> ParseRedisTarget(std::string_view url) {
  RedisTarget target;
  if (url.starts_with(kRedisScheme)) {
    auto address = ParseRedisUrl(url);
    if (!address.ok()) return address.status();
    target.db = address->db;
    target.auth = address->auth;
    target.addresses.push_back(std::move(address).value());
    return target;
  }
  auto bad = [url](const std::string& why) {
    return Status::InvalidArgument(
        "redis url '" + RedactRedisUrl(url) + "': " + why +
        " (want redis://[USER[:PASSWORD]@]HOST:PORT[/DB], "
        "sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/MASTER_NAME"
        "[/DB] or cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...])");
  };
  const bool cluster = url.starts_with(kClusterScheme);
  if (!cluster && !url.starts_with(kSentinelScheme)) {
    return bad("unknown scheme");
  }
  std::string_view rest =
      url.substr(cluster ? kClusterScheme.size() : kSentinelScheme.size());
  auto auth = SplitRedisUserInfo(&rest);
  if (!auth.ok()) return bad(auth.status().message());
  target.auth = std::move(auth).value();
  if (cluster) {
    target.kind = RedisTarget::Kind::kCluster;
    if (rest.find('/') != std::string_view::npos) {
      return bad("no /DB: a Redis Cluster has only db 0");
    }
    std::string why = ParseHostList(rest, "seed", &target.addresses);
    if (!why.empty()) return bad(why);
    // The seeds are data nodes: they get the credentials too.
    for (RedisAddress& seed : target.addresses) seed.auth = target.auth;
    return target;
  }
  target.kind = RedisTarget::Kind::kSentinel;
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("no master name");
  std::string_view tail = rest.substr(slash + 1);
  std::string why =
      ParseHostList(rest.substr(0, slash), "sentinel", &target.addresses);
  if (!why.empty()) return bad(why);
  const size_t db_slash = tail.find('/');
  std::string_view name = tail.substr(0, db_slash);
  if (name.empty()) return bad("no master name");
  if (!ValidMasterName(name)) {
    return bad("bad master name '" + std::string(name) +
               "' (1..64 of A-Z a-z 0-9 _ . -)");
  }
  target.master_name = std::string(name);
  int64_t db = 0;
  if (db_slash != std::string_view::npos &&
      !ParseDecimal(tail.substr(db_slash + 1), INT_MAX, &db)) {
    return bad("bad db");
  }
  target.db = static_cast<int>(db);
  return target;
}

Result<RedisAddress> ResolveRedisTarget(RedisTarget& target,
                                        int64_t timeout_ms) {
  if (target.addresses.empty()) {
    return Status::InvalidArgument("redis target has no address");
  }
  if (target.kind == RedisTarget::Kind::kDirect) {
    RedisAddress a = target.addresses[0];
    a.db = target.db;
    if (a.auth.empty()) a.auth = target.auth;
    return a;
  }
  if (target.kind == RedisTarget::Kind::kCluster) {
    return ResolveCluster(target, timeout_ms);
  }
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 1));
  std::string why;
  const size_t n = target.addresses.size();
  for (size_t i = 0; i < n; ++i) {
    const RedisAddress& sentinel = target.addresses[i];
    const int64_t left = MillisLeft(deadline);
    if (left <= 0) {
      why += "; " + RedisHostPort(sentinel) + ": not tried (out of time)";
      continue;
    }
    // An equal share of what is left for each Sentinel still to ask.
    const Clock::time_point mine =
        Clock::now() + std::chrono::milliseconds(std::max<int64_t>(
                           1, left / static_cast<int64_t>(n - i)));
    RedisAddress primary;
    std::string error =
        TrySentinel(sentinel, target.master_name, target.auth, mine, &primary);
    if (error.empty()) {
      std::rotate(target.addresses.begin(), target.addresses.begin() + i,
                  target.addresses.begin() + i + 1);
      primary.db = target.db;
      return primary;
    }
    why += "; " + RedisHostPort(sentinel) + ": " + error;
  }
  return Status::Unavailable("no primary for '" + target.master_name +
                             "' from " + target.ToString() + " within " +
                             std::to_string(timeout_ms) + " ms" + why);
}

Result<std::unique_ptr<RedisClient>> ConnectRedisTarget(RedisTarget& target,
                                                        int64_t timeout_ms) {
  const Clock::time_point start = Clock::now();
  auto primary = ResolveRedisTarget(target, timeout_ms);
  if (!primary.ok()) return primary.status();
  const int64_t left =
      timeout_ms - std::chrono::duration_cast<std::chrono::milliseconds>(
                       Clock::now() - start)
                       .count();
  return RedisClient::Connect(*primary, std::max(left, kMinConnectMs));
}

}  // namespace yard
