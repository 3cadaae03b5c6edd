// RedisClient against a real redis-server (testing/redis_server.h), driven by
// a zmq::poll loop the way the broker will drive it.
#include "redis/redis_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "testing/redis_server.h"

namespace yard {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using Type = RedisReply::Type;

// hiredis writes with write(2); the broker ignores SIGPIPE (common/signals).
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// Turns the loop until `until()` holds or `timeout` passes (false then), or
// the client is gone or disconnected (then: until()).
bool RunUntil(std::unique_ptr<RedisClient>& client,
              const std::function<bool()>& until,
              milliseconds timeout = milliseconds(10000)) {
  const auto deadline = Clock::now() + timeout;
  while (!until()) {
    if (Clock::now() >= deadline) return false;
    if (client == nullptr || client->fd() < 0) return until();
    zmq::pollitem_t item{nullptr, client->fd(), client->events(), 0};
    zmq::poll(&item, 1, milliseconds(50));
    client->HandleEvents(item.revents);
  }
  return true;
}

std::unique_ptr<RedisClient> MustConnect(const RedisServer& server) {
  Result<RedisAddress> address = ParseRedisUrl(server.url());
  EXPECT_TRUE(address.ok()) << address.status().ToString();
  if (!address.ok()) return nullptr;
  Result<std::unique_ptr<RedisClient>> client =
      RedisClient::Connect(*address, 5000);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (!client.ok()) return nullptr;
  return std::move(client).value();
}

// Runs one command to completion.
Result<RedisReply> RunCommand(std::unique_ptr<RedisClient>& client,
                              std::vector<std::string> args) {
  std::optional<Result<RedisReply>> out;
  client->Command(std::move(args),
                  [&out](Result<RedisReply> r) { out = std::move(r); });
  if (!RunUntil(client, [&out] { return out.has_value(); })) {
    return Status::DeadlineExceeded("no reply in 10 s");
  }
  return std::move(*out);
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<RedisServer>> server = RedisServer::Create();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    client_ = MustConnect(*server_);
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisClientTest, Ping) {
  EXPECT_TRUE(client_->connected());
  EXPECT_GE(client_->fd(), 0);
  EXPECT_TRUE(client_->events() & ZMQ_POLLIN);
  Result<RedisReply> r = RunCommand(client_, {"PING"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->type, Type::kStatus);
  EXPECT_EQ(r->str, "PONG");
  EXPECT_EQ(client_->pending(), 0u);
}

TEST_F(RedisClientTest, BinarySafeSetGet) {
  std::string key("k\0ey", 4);
  std::string value;
  for (int i = 0; i < 3; ++i) {
    for (int b = 0; b < 256; ++b) value.push_back(static_cast<char>(b));
  }
  value += std::string(5, '\0');
  Result<RedisReply> set = RunCommand(client_, {"SET", key, value});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->type, Type::kStatus);
  EXPECT_EQ(set->str, "OK");
  Result<RedisReply> get = RunCommand(client_, {"GET", key});
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->type, Type::kString);
  EXPECT_EQ(get->str, value);
  // The key with its NUL is distinct from "k".
  Result<RedisReply> missing = RunCommand(client_, {"GET", "k"});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->is_nil());
}

TEST_F(RedisClientTest, PipelineOfThousandIncrsAnsweredInOrder) {
  constexpr int kN = 1000;
  std::vector<int64_t> got;
  int errors = 0;
  for (int i = 0; i < kN; ++i) {
    client_->Command({"INCR", "counter"}, [&](Result<RedisReply> r) {
      if (!r.ok() || r->type != Type::kInteger) {
        ++errors;
        return;
      }
      got.push_back(r->integer);
    });
  }
  EXPECT_EQ(client_->pending(), static_cast<size_t>(kN));
  EXPECT_TRUE(client_->events() & ZMQ_POLLOUT);  // output waiting
  int turns = 0;
  ASSERT_TRUE(RunUntil(client_, [&] {
    ++turns;
    return got.size() + errors == kN;
  }));
  EXPECT_EQ(errors, 0);
  for (int i = 0; i < kN; ++i) ASSERT_EQ(got[i], i + 1) << i;
  EXPECT_EQ(client_->pending(), 0u);
  EXPECT_FALSE(client_->events() & ZMQ_POLLOUT);
  EXPECT_LT(turns, 1000);  // pipelined: fewer turns than commands
}

TEST_F(RedisClientTest, ErrorReplyIsAnErrorResult) {
  ASSERT_TRUE(RunCommand(client_, {"LPUSH", "list", "x"}).ok());
  Result<RedisReply> r = RunCommand(client_, {"GET", "list"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("WRONGTYPE"), std::string::npos)
      << r.status().message();
  Result<RedisReply> unknown = RunCommand(client_, {"NOSUCHCOMMAND"});
  EXPECT_FALSE(unknown.ok());
  // An error inside an array (EXEC) stays an element of an ok() reply.
  ASSERT_TRUE(RunCommand(client_, {"MULTI"}).ok());
  ASSERT_TRUE(RunCommand(client_, {"INCR", "list"}).ok());  // QUEUED
  ASSERT_TRUE(RunCommand(client_, {"INCR", "n"}).ok());
  Result<RedisReply> exec = RunCommand(client_, {"EXEC"});
  ASSERT_TRUE(exec.ok()) << exec.status().ToString();
  ASSERT_EQ(exec->type, Type::kArray);
  ASSERT_EQ(exec->elements.size(), 2u);
  EXPECT_EQ(exec->elements[0].type, Type::kError);
  EXPECT_NE(exec->elements[0].str.find("WRONGTYPE"), std::string::npos);
  EXPECT_EQ(exec->elements[1].type, Type::kInteger);
  EXPECT_EQ(exec->elements[1].integer, 1);
  // The connection is still fine.
  EXPECT_TRUE(client_->connected());
  EXPECT_TRUE(RunCommand(client_, {"PING"}).ok());
}

TEST_F(RedisClientTest, EmptyCommandIsInvalidArgument) {
  std::optional<Status> s;
  client_->Command({}, [&s](Result<RedisReply> r) { s = r.status(); });
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), StatusCode::kInvalidArgument);
}

TEST(RedisConnectTest, ClosedPortFailsWithUnavailableAtTheRefusal) {
  Result<uint16_t> port = PickFreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  RedisAddress address{"127.0.0.1", *port, 0, {}};
  // The refusal itself ends the attempt: a client that waited out this
  // timeout instead would say "timed out".
  Result<std::unique_ptr<RedisClient>> c = RedisClient::Connect(address, 30000);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("connect failed"), std::string::npos)
      << c.status().message();
  EXPECT_EQ(c.status().message().find("timed out"), std::string::npos)
      << c.status().message();
}

TEST(RedisConnectTest, SilentServerTimesOutWithUnavailable) {
  // A listening socket that never answers: TCP connects, PING never returns.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  RedisAddress address{"127.0.0.1", ntohs(addr.sin_port), 0, {}};
  const auto start = Clock::now();
  Result<std::unique_ptr<RedisClient>> c = RedisClient::Connect(address, 300);
  const auto took = Clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  // The given timeout ended it (not a refusal, not some other limit), and
  // not before it was up (to the millisecond the client counts in).
  EXPECT_NE(c.status().message().find("timed out after 300 ms"),
            std::string::npos)
      << c.status().message();
  EXPECT_GE(took, milliseconds(299));
}

TEST_F(RedisClientTest, SelectsTheDbFromTheUrl) {
  ASSERT_TRUE(RunCommand(client_, {"SET", "where", "db0"}).ok());
  Result<RedisAddress> address = ParseRedisUrl(server_->url() + "/2");
  ASSERT_TRUE(address.ok());
  Result<std::unique_ptr<RedisClient>> c2 =
      RedisClient::Connect(*address, 5000);
  ASSERT_TRUE(c2.ok()) << c2.status().ToString();
  Result<RedisReply> r = RunCommand(*c2, {"GET", "where"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->is_nil());
  ASSERT_TRUE(RunCommand(*c2, {"SET", "where", "db2"}).ok());
  Result<RedisReply> r0 = RunCommand(client_, {"GET", "where"});
  ASSERT_TRUE(r0.ok());
  EXPECT_EQ(r0->str, "db0");
}

TEST_F(RedisClientTest, KillWithPendingCommandsAnswersEachOnceUnavailable) {
  constexpr int kSent = 100;
  constexpr int kQueued = 10;
  std::vector<int> calls(kSent + kQueued, 0);
  std::vector<StatusCode> codes(kSent + kQueued, StatusCode::kOk);
  std::vector<bool> connected_in_callback(kSent + kQueued, true);
  auto callback = [&](int i) {
    return [&, i](Result<RedisReply> r) {
      ++calls[i];
      codes[i] = r.status().code();
      connected_in_callback[i] = client_ != nullptr && client_->connected();
    };
  };
  // BLPOP blocks the connection on the server, so everything behind it
  // stays unanswered.
  client_->Command({"BLPOP", "never", "0"}, callback(0));
  for (int i = 1; i < kSent; ++i) {
    client_->Command({"INCR", "n"}, callback(i));
  }
  ASSERT_TRUE(RunUntil(client_, [&] {
    return !(client_->events() & ZMQ_POLLOUT);  // all written
  }));
  // The server has the BLPOP and blocked on it (the rest waits behind).
  std::unique_ptr<RedisClient> other = MustConnect(*server_);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(RunUntil(client_, [&] {
    Result<RedisReply> info = RunCommand(other, {"INFO", "clients"});
    return info.ok() &&
           info->str.find("blocked_clients:1\r\n") != std::string::npos;
  }));
  other.reset();
  EXPECT_EQ(client_->pending(), static_cast<size_t>(kSent));
  server_->Kill();
  for (int i = kSent; i < kSent + kQueued; ++i) {  // not written yet
    client_->Command({"INCR", "n"}, callback(i));
  }
  ASSERT_TRUE(RunUntil(client_, [&] { return !client_->connected(); }));
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(client_->fd(), -1);
  EXPECT_EQ(client_->events(), 0);
  EXPECT_EQ(client_->pending(), 0u);
  EXPECT_FALSE(client_->error().empty());
  for (int i = 0; i < kSent + kQueued; ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_EQ(codes[i], StatusCode::kUnavailable) << i;
    EXPECT_FALSE(connected_in_callback[i]) << i;
  }
  // A command now fails at once; polling a dead client is harmless.
  std::optional<Status> late;
  client_->Command({"PING"},
                   [&late](Result<RedisReply> r) { late = r.status(); });
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->code(), StatusCode::kUnavailable);
  client_->HandleEvents(ZMQ_POLLIN | ZMQ_POLLOUT);
  client_.reset();
  for (int i = 0; i < kSent + kQueued; ++i) EXPECT_EQ(calls[i], 1) << i;
}

TEST_F(RedisClientTest, DestructorAnswersPendingOnceAndNothingAfter) {
  std::vector<int> calls(5, 0);
  std::vector<StatusCode> codes(5, StatusCode::kOk);
  client_->Command({"BLPOP", "never", "0"}, [&](Result<RedisReply> r) {
    ++calls[0];
    codes[0] = r.status().code();
  });
  RunUntil(client_, [&] { return !(client_->events() & ZMQ_POLLOUT); });
  for (int i = 1; i < 5; ++i) {
    client_->Command({"INCR", "n"}, [&, i](Result<RedisReply> r) {
      ++calls[i];
      codes[i] = r.status().code();
    });
  }
  client_.reset();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_EQ(codes[i], StatusCode::kUnavailable) << i;
  }
  // The server never saw the unsent INCRs.
  std::unique_ptr<RedisClient> other = MustConnect(*server_);
  ASSERT_NE(other, nullptr);
  Result<RedisReply> n = RunCommand(other, {"GET", "n"});
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->is_nil());
}

TEST_F(RedisClientTest, DestroyFromInsideACallback) {
  std::vector<int> calls(4, 0);
  std::vector<StatusCode> codes(4, StatusCode::kInternal);
  client_->Command({"PING"}, [&](Result<RedisReply> r) {
    ++calls[0];
    codes[0] = r.status().code();
    client_.reset();  // the rest are already in the same read buffer
  });
  for (int i = 1; i < 4; ++i) {
    client_->Command({"PING"}, [&, i](Result<RedisReply> r) {
      ++calls[i];
      codes[i] = r.status().code();
      // A retry from a failure callback while destroying fails at once.
      if (!r.ok() && client_ != nullptr) {
        client_->Command({"PING"}, [](Result<RedisReply>) {});
      }
    });
  }
  RunUntil(client_, [&] { return client_ == nullptr; });
  ASSERT_EQ(client_, nullptr);
  EXPECT_EQ(calls, std::vector<int>({1, 1, 1, 1}));
  EXPECT_EQ(codes[0], StatusCode::kOk);
  // The others were either answered before the destroy or failed by it.
  for (int i = 1; i < 4; ++i) {
    EXPECT_TRUE(codes[i] == StatusCode::kOk ||
                codes[i] == StatusCode::kUnavailable)
        << i;
  }
}

TEST(RedisRecoveryTest, RestartedServerReplaysTheAof) {
  // appendfsync always: a write is in the AOF before Redis answers it (under
  // everysec a busy fsync may hold the write back for up to 2 s).
  RedisServer::Options options;
  options.appendfsync_always = true;
  Result<std::unique_ptr<RedisServer>> server = RedisServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::unique_ptr<RedisClient> client = MustConnect(**server);
  ASSERT_NE(client, nullptr);
  const std::string value("durable\0bytes", 13);
  ASSERT_TRUE(RunCommand(client, {"SET", "job:1", value}).ok());
  ASSERT_TRUE(RunCommand(client, {"RPUSH", "ready", "a", "b", "c"}).ok());
  (*server)->Kill();
  ASSERT_TRUE(RunUntil(client, [&] { return !client->connected(); }));
  client.reset();
  Status started = (*server)->Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  client = MustConnect(**server);
  ASSERT_NE(client, nullptr);
  Result<RedisReply> get = RunCommand(client, {"GET", "job:1"});
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->str, value);
  Result<RedisReply> list = RunCommand(client, {"LRANGE", "ready", "0", "-1"});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->type, Type::kArray);
  ASSERT_EQ(list->elements.size(), 3u);
  EXPECT_EQ(list->elements[2].str, "c");
  // A graceful stop and start keeps it too.
  client.reset();
  ASSERT_TRUE((*server)->Stop().ok());
  ASSERT_TRUE((*server)->Start().ok());
  client = MustConnect(**server);
  ASSERT_NE(client, nullptr);
  Result<RedisReply> again = RunCommand(client, {"GET", "job:1"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->str, value);
}

}  // namespace
}  // namespace yard
