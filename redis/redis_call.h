// The one blocking way to send a Redis command, for set-up, tools and tests
// (never the broker's loop, which drives RedisClient from its poll):
//
//   RedisCall(client, {"GET", "k"}, 1000);          // on a client you hold
//   RedisCallOnce(address, {"PING"}, 1000);         // on a connection of
//                                                   // its own, then closed
//
// A top-level error reply is a Status (RedisClient's rule); errors inside
// an array stay elements of type kError.
#ifndef YARD_REDIS_REDIS_CALL_H_
#define YARD_REDIS_REDIS_CALL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "redis/redis_client.h"

namespace yard {

// Sends one command and waits up to timeout_ms (< 0: the client's
// command_timeout_ms()) for its reply (Unavailable when none came). On a
// timeout the command stays pending on the client: drop the client rather
// than reuse it.
Result<RedisReply> RedisCall(RedisClient& client, std::vector<std::string> args,
                             int64_t timeout_ms = -1);

// Connects to `address` (authenticating with address.auth, as
// RedisClient::Connect does), sends one command and waits for its reply, all
// within timeout_ms (DeadlineExceeded when the connect used it all).
Result<RedisReply> RedisCallOnce(const RedisAddress& address,
                                 std::vector<std::string> args,
                                 int64_t timeout_ms);

}  // namespace yard

#endif  // YARD_REDIS_REDIS_CALL_H_
