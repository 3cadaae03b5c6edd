// Shared pieces of the Redis fixtures (redis_server.cc, redis_sentinel.cc,
// redis_cluster.cc): one blocking command on a connection of its own,
// waiting for a condition, starting and stopping a server. Private to
// testing/.
#ifndef YARD_TESTING_REDIS_SPAWN_H_
#define YARD_TESTING_REDIS_SPAWN_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "redis/redis_call.h"
#include "testing/process.h"

namespace yard::fixture {

// How long a server may take to answer PING after a start, and to exit
// after SIGTERM.
inline constexpr std::chrono::seconds kStartTimeout(10);
inline constexpr std::chrono::seconds kStopTimeout(10);

// One command to 127.0.0.1:port on a connection of its own (which sends
// AUTH first when `auth` is not empty), all within timeout_ms
// (RedisCallOnce: an error reply is a Status too).
Result<RedisReply> Query(uint16_t port, std::vector<std::string> args,
                         int64_t timeout_ms, const RedisCredentials& auth = {});
// True when redis answers PING with PONG within ~500 ms.
bool Pings(uint16_t port, const RedisCredentials& auth = {});
// The value of `field:` in an INFO text ("" when absent).
std::string InfoField(const std::string& info, const std::string& field);
// Polls `check` (which sets *last to what it saw) every 50 ms until it
// holds or `timeout` passes.
Status PollFor(const std::function<bool(std::string*)>& check,
               std::chrono::milliseconds timeout, const std::string& what);
// Debian's /usr/bin/redis-server, or $YARD_REDIS_SERVER.
std::string RedisBinary();
// Unavailable, with how to install it, when `binary` cannot be run.
Status CheckBinary(const std::string& binary);
// Spawns a server (redis-server or sentinel) and waits up to 10 s until it
// answers PING on `port`. `what` names it in errors; `log_tail` reads its
// logs for them.
Status SpawnAndAwaitPing(std::vector<std::string> args,
                         const std::string& stderr_path, uint16_t port,
                         const std::string& what,
                         const std::function<std::string()>& log_tail,
                         std::unique_ptr<Process>* process,
                         const RedisCredentials& auth = {});
// SIGTERM, again every 500 ms (Redis ignores one that comes while it writes
// its initial AOF, e.g. right after a replica's full sync), SIGKILL after
// 10 s.
Status StopGracefully(std::unique_ptr<Process>* process,
                      const std::string& what);
// The last 2,000 bytes of a server's log and stderr, for error messages.
std::string TailOf(const std::string& log, const std::string& err);

}  // namespace yard::fixture

#endif  // YARD_TESTING_REDIS_SPAWN_H_
