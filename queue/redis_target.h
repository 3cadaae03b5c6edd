// RedisTarget: where the durable queue's Redis is, either one server
// ("redis://HOST:PORT[/DB]") or a primary that Redis Sentinel manages
// ("sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]"), and how to find
// the current primary of the latter.
//
//   auto target =
//   ParseRedisTarget("sentinel://10.0.0.1:26379,10.0.0.2:26379/jobs"); auto
//   client = ConnectRedisTarget(*target, /*timeout_ms=*/2000);
//
// Sentinel resolution (research note redis-queue.md 4.1, redis-doc
// sentinel-clients.md), one pass over the Sentinels in order:
//   1. ask the Sentinel `SENTINEL get-master-addr-by-name MASTER_NAME`
//      (a Sentinel that does not answer, or answers nil, is skipped);
//   2. connect to the address it gives and check that `ROLE` says master
//      (a replica still being promoted, or an old primary, is skipped);
//   3. the first Sentinel whose answer passes goes to the front of
//      `addresses`, so the next resolution asks it first.
// Each Sentinel gets an equal share of the time left, so a Sentinel that
// hangs cannot starve the others. There is no retry loop: a caller that
// reconnects (RedisQueue) already retries with backoff, and must resolve
// again on every reconnect, because a failover moves the primary (Sentinel
// also kills the clients of the servers it reconfigures, which forces
// that reconnect).
//
// Thread-safety: none; a RedisTarget belongs to one caller. Resolution and
// connection block the caller (bounded by timeout_ms).
#ifndef YARD_QUEUE_REDIS_TARGET_H_
#define YARD_QUEUE_REDIS_TARGET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "queue/redis_client.h"

namespace yard {

struct RedisTarget {
  enum class Kind : uint8_t { kDirect, kSentinel };
  Kind kind = Kind::kDirect;
  // kDirect: the one server; kSentinel: the Sentinels, the one that answered
  // last first.
  std::vector<RedisAddress> addresses;
  std::string master_name;  // kSentinel only
  int db = 0;               // SELECTed on the primary when not 0

  // The URL form, for logs ("sentinel://127.0.0.1:26379,.../mymaster"); the
  // Sentinels in their current order.
  std::string ToString() const;
};

// "redis://HOST:PORT[/DB]" (exactly as ParseRedisUrl) or
// "sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]" (IPv6 hosts in
// brackets; a master name is 1..64 characters of [A-Za-z0-9_.-]). Anything
// else is InvalidArgument, with the reason.
Result<RedisTarget> ParseRedisTarget(std::string_view url);

// The primary's address (with the target's db). kDirect: the address, no
// I/O. kSentinel: the resolution above, bounded by timeout_ms in total;
// kUnavailable naming each Sentinel and why it did not help when none did.
// May reorder target.addresses.
Result<RedisAddress> ResolveRedisTarget(RedisTarget& target,
                                        int64_t timeout_ms);

// ResolveRedisTarget, then RedisClient::Connect (which SELECTs the db), both
// within timeout_ms (the connect gets at least 100 ms). kUnavailable when
// either fails.
Result<std::unique_ptr<RedisClient>> ConnectRedisTarget(RedisTarget& target,
                                                        int64_t timeout_ms);

}  // namespace yard

#endif  // YARD_QUEUE_REDIS_TARGET_H_
