#include "redis/redis_call.h"

#include <zmq.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <utility>

#include "common/clock.h"

namespace yard {

Result<RedisReply> RedisCall(RedisClient& client, std::vector<std::string> args,
                             int64_t timeout_ms) {
  // Shared with the callback: on a timeout the command stays pending and
  // its callback runs later (at the latest when the client is destroyed).
  if (timeout_ms < 0) timeout_ms = client.command_timeout_ms();
  auto out = std::make_shared<std::optional<Result<RedisReply>>>();
  client.Command(std::move(args),
                 [out](Result<RedisReply> r) { out->emplace(std::move(r)); });
  const int64_t deadline = MonoMillis() + timeout_ms;
  while (!*out) {
    int64_t left = deadline - MonoMillis();
    if (left <= 0 || client.fd() < 0) break;
    zmq_pollitem_t item{nullptr, client.fd(), client.events(), 0};
    if (zmq_poll(&item, 1, static_cast<long>(left)) < 0 && errno != EINTR) {
      break;
    }
    client.HandleEvents(item.revents);
  }
  if (*out) return std::move(**out);
  return Status::Unavailable("no reply from Redis within " +
                             std::to_string(timeout_ms) + " ms");
}

Result<RedisReply> RedisCallOnce(const RedisAddress& address,
                                 std::vector<std::string> args,
                                 int64_t timeout_ms) {
  const int64_t deadline = MonoMillis() + timeout_ms;
  if (timeout_ms <= 0) return Status::DeadlineExceeded("no time left");
  auto client = RedisClient::Connect(address, timeout_ms);
  if (!client.ok()) return client.status();
  const int64_t left = deadline - MonoMillis();
  if (left <= 0) return Status::DeadlineExceeded("no time left");
  return RedisCall(**client, std::move(args), left);
}

}  // namespace yard
