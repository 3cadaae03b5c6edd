#include "link/broker_link.h"

#include <gtest/gtest.h>

#include <zmq.hpp>

#include "common/heartbeat.h"
#include "link/broker_set.h"
#include "schemas/frames.h"

namespace yard {
namespace {

constexpr int64_t kBeat = 1000;  // µs: the link does arithmetic only
constexpr int64_t kExpiry = kBeat * kHeartbeatLiveness;

// A broker stand-in: a ROUTER on inproc that the link connects to.
class BrokerLinkTest : public ::testing::Test {
 protected:
  BrokerLinkTest() : router_(ctx_, zmq::socket_type::router) {
    router_.bind("inproc://broker");
  }
  zmq::context_t ctx_;
  zmq::socket_t router_;
  Limits limits_;
};

TEST_F(BrokerLinkTest, ExpiresAfterLivenessIntervalsOfSilence) {
  BrokerLink link("inproc://broker", kBeat);
  ASSERT_TRUE(link.Open(ctx_, limits_, 0).ok());
  ASSERT_NE(link.socket(), nullptr);
  EXPECT_FALSE(link.alive());
  // Never heard: counted from the socket's opening.
  EXPECT_FALSE(link.Expired(kExpiry));
  EXPECT_TRUE(link.Expired(kExpiry + 1));

  EXPECT_TRUE(link.Heard(500));   // became alive
  EXPECT_FALSE(link.Heard(600));  // already alive
  EXPECT_TRUE(link.alive());
  EXPECT_TRUE(link.was_alive());
  // Alive: counted from the last message heard.
  EXPECT_FALSE(link.Expired(600 + kExpiry));
  EXPECT_TRUE(link.Expired(600 + kExpiry + 1));
  EXPECT_EQ(link.ExpiresAt(), 600 + kExpiry);
}

TEST_F(BrokerLinkTest, ReopenGivesAFreshSocketThatIsNotAliveYet) {
  BrokerLink link("inproc://broker", kBeat);
  ASSERT_TRUE(link.Open(ctx_, limits_, 0).ok());
  link.Heard(100);
  ASSERT_TRUE(link.Open(ctx_, limits_, 5000).ok());
  EXPECT_NE(link.socket(), nullptr);
  EXPECT_FALSE(link.alive());
  EXPECT_TRUE(link.was_alive());
  EXPECT_EQ(link.opened_us(), 5000);
  EXPECT_FALSE(link.Expired(5000 + kExpiry));
  EXPECT_TRUE(link.Expired(5000 + kExpiry + 1));
  link.Close();
  EXPECT_EQ(link.socket(), nullptr);
  EXPECT_FALSE(link.alive());
  EXPECT_EQ(link.Send(Bytes{}).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(link.HeartbeatDue(1 << 30));  // no socket, no heartbeat
}

TEST_F(BrokerLinkTest, OneHeartbeatPerIntervalReachesTheBroker) {
  BrokerLink link("inproc://broker", kBeat);
  ASSERT_TRUE(link.Open(ctx_, limits_, 0).ok());
  EXPECT_TRUE(link.HeartbeatDue(0));  // the first goes out at once
  Writer w;
  ASSERT_TRUE(link.Beat(w.EncodeHeartbeat(), 0).ok());
  EXPECT_FALSE(link.HeartbeatDue(kBeat - 1));
  EXPECT_TRUE(link.HeartbeatDue(kBeat));
  EXPECT_EQ(link.HeartbeatAt(), kBeat);
  // Other traffic does not put the heartbeat off.
  ASSERT_TRUE(link.Send(w.EncodeHeartbeat()).ok());
  EXPECT_TRUE(link.HeartbeatDue(kBeat));

  RouterMessage in;
  for (int i = 0; i < 2; ++i) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, std::chrono::milliseconds(5000)), 1);
    ASSERT_TRUE(RecvRouter(router_, &in));
    Decoded d = Decode(in.bytes(), limits_);
    ASSERT_TRUE(d.ok()) << d.message;
    EXPECT_EQ(d.kind(), wire::Body::Heartbeat);
  }
}

struct Entry : BrokerLink {
  using BrokerLink::BrokerLink;
};

TEST(BrokerSetTest, MergeRetiresReturnsAndAdds) {
  std::vector<Entry> brokers;
  brokers.emplace_back("tcp://127.0.0.1:1", kBeat);
  brokers.emplace_back("tcp://127.0.0.1:2", kBeat);
  std::vector<std::string> log;
  auto merge = [&](std::vector<std::string> set) {
    MergeBrokerSet(
        brokers, std::move(set), "test: ", ValidateEndpoint,
        [&](Entry& b) { log.push_back("retire " + b.endpoint()); },
        [&](Entry& b) { log.push_back("back " + b.endpoint()); },
        [&](const std::string& ep) {
          log.push_back("add " + ep);
          brokers.emplace_back(ep, kBeat);
        });
  };
  merge({"tcp://127.0.0.1:2", "tcp://127.0.0.1:3", "not-an-endpoint"});
  EXPECT_EQ(log, (std::vector<std::string>{"retire tcp://127.0.0.1:1",
                                           "add tcp://127.0.0.1:3"}));
  ASSERT_EQ(brokers.size(), 3u);
  EXPECT_TRUE(brokers[0].retired);
  EXPECT_FALSE(brokers[1].retired);
  log.clear();
  merge({"tcp://127.0.0.1:1"});
  EXPECT_EQ(log, (std::vector<std::string>{"back tcp://127.0.0.1:1",
                                           "retire tcp://127.0.0.1:2",
                                           "retire tcp://127.0.0.1:3"}));
  EXPECT_EQ(brokers.size(), 3u);  // entries are kept, never erased
}

}  // namespace
}  // namespace yard
