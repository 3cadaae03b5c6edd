// Command deadlines and TCP keepalive on RedisClient, against a real
// redis-server that is paused (SIGSTOP): it keeps its connections open and
// the kernel still accepts new ones, but nothing answers.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "redis/redis_call.h"
#include "redis/redis_client.h"
#include "testing/redis_fixture.h"

namespace yard {
namespace {

const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

constexpr int64_t kDeadlineMs = 300;
// "Returns at all": a bound far above the deadline, so only a call that
// ignores it fails.
constexpr int64_t kGenerousMs = 10 * kDeadlineMs;

// RedisFixture's admin connection is the client under test.
class RedisDeadlineTest : public RedisFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RedisFixture::SetUp());
    client_ = std::move(admin_);
    client_->set_command_timeout_ms(kDeadlineMs);
  }
  // Whatever a test did, the server runs again before it is stopped.
  void TearDown() override {
    if (server_) server_->Resume();
  }

  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisDeadlineTest, EveryConnectionHasKeepalive) {
  int on = 0;
  socklen_t len = sizeof on;
  ASSERT_EQ(getsockopt(client_->fd(), SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
  EXPECT_NE(on, 0);
}

TEST_F(RedisDeadlineTest, AnsweredCommandIsNeverOverdue) {
  auto r = RedisCall(*client_, {"PING"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(client_->Overdue(MonoMillis() + 10 * kDeadlineMs));
}

TEST_F(RedisDeadlineTest, CallToPausedServerFailsWithinTheDeadline) {
  server_->Pause();
  const int64_t start = MonoMillis();
  // No explicit timeout: the client's command deadline applies.
  auto r = RedisCall(*client_, {"PING"});
  const int64_t took = MonoMillis() - start;
  EXPECT_FALSE(r.ok());
  EXPECT_LT(took, kGenerousMs);
  // The unanswered command is still pending, and past its deadline.
  EXPECT_TRUE(client_->Overdue(MonoMillis()));
}

TEST_F(RedisDeadlineTest, PendingCommandBecomesOverdueOnlyAfterItsDeadline) {
  server_->Pause();
  const int64_t sent = MonoMillis();
  std::optional<Result<RedisReply>> out;
  client_->Command(
      {"PING"}, [&out](Result<RedisReply> r) { out = r; },
      /*blocks_ms=*/kDeadlineMs);
  // Not before the deadline plus what the command may block.
  EXPECT_FALSE(client_->Overdue(sent + kDeadlineMs));
  int64_t now = MonoMillis();
  for (int turns = 0; turns < 1000 && !client_->Overdue(now); ++turns) {
    zmq::pollitem_t item{nullptr, client_->fd(), client_->events(), 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    client_->HandleEvents(item.revents);
    now = MonoMillis();
  }
  EXPECT_TRUE(client_->Overdue(now));
  EXPECT_FALSE(out.has_value());
  EXPECT_LT(now - sent, kGenerousMs + kDeadlineMs);
  // The owner drops the client: the command is answered Unavailable.
  client_.reset();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status().code(), StatusCode::kUnavailable);
}

TEST_F(RedisDeadlineTest, ConnectToPausedServerFailsWithinItsTimeout) {
  server_->Pause();
  const int64_t start = MonoMillis();
  auto c = RedisClient::Connect(server_->address(), kDeadlineMs);
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(MonoMillis() - start, kGenerousMs);
}

// Begin returns before anything is exchanged; a PING on it is answered as
// the loop turns, or, on a paused server, becomes overdue.
TEST_F(RedisDeadlineTest, BegunConnectionAnswersOrGoesOverdue) {
  for (const bool paused : {false, true}) {
    if (paused) server_->Pause();
    // Before the client: its destructor answers the PING still pending
    // (paused), which writes here.
    std::optional<Result<RedisReply>> out;
    auto begun = RedisClient::Begin(server_->address());
    ASSERT_TRUE(begun.ok()) << begun.status().ToString();
    std::unique_ptr<RedisClient> c = std::move(begun).value();
    c->set_command_timeout_ms(kDeadlineMs);
    c->Command({"PING"}, [&out](Result<RedisReply> r) { out = r; });
    const int64_t sent = MonoMillis();
    for (int turns = 0;
         turns < 1000 && !out && !c->Overdue(MonoMillis()) && c->fd() >= 0;
         ++turns) {
      zmq::pollitem_t item{nullptr, c->fd(), c->events(), 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      c->HandleEvents(item.revents);
    }
    EXPECT_LT(MonoMillis() - sent, kGenerousMs);
    if (paused) {
      EXPECT_FALSE(out.has_value());
      EXPECT_TRUE(c->Overdue(MonoMillis()));
    } else {
      ASSERT_TRUE(out.has_value());
      EXPECT_TRUE(out->ok()) << out->status().ToString();
    }
  }
}

TEST_F(RedisDeadlineTest, ProcessDefaultIsWhatNewClientsGet) {
  const int64_t before = RedisTimeoutMs();
  SetRedisTimeoutMs(1234);
  auto c = RedisClient::Connect(server_->address(), 5000);
  SetRedisTimeoutMs(before);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->command_timeout_ms(), 1234);
}

}  // namespace
}  // namespace yard
