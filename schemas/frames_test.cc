#include "schemas/frames.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(FramesTest, ValidatesEndpoints) {
  EXPECT_TRUE(ValidateEndpoint("tcp://127.0.0.1:5555").ok());
  EXPECT_TRUE(ValidateEndpoint("tcp://127.0.0.1:*").ok());
  EXPECT_TRUE(ValidateEndpoint("ipc:///tmp/x.sock").ok());
  EXPECT_TRUE(ValidateEndpoint("inproc://a").ok());
  EXPECT_FALSE(ValidateEndpoint("127.0.0.1:5555").ok());
  EXPECT_FALSE(ValidateEndpoint("tcp://127.0.0.1").ok());
  EXPECT_FALSE(ValidateEndpoint("udp://x:1").ok());
  EXPECT_FALSE(ValidateEndpoint("").ok());
  EXPECT_TRUE(ValidateEndpoint("tcp://*:5555").ok());
  EXPECT_TRUE(ValidateEndpoint("tcp://[::1]:5555").ok());
  EXPECT_TRUE(ValidateEndpoint("tcp://broker-1.internal:65535").ok());
  // A host or port that cannot be (an --advertise typo, a registry record).
  EXPECT_FALSE(ValidateEndpoint("tcp://bad host/x:5555").ok());
  EXPECT_FALSE(ValidateEndpoint("tcp://h:0").ok());
  EXPECT_FALSE(ValidateEndpoint("tcp://h:65536").ok());
  EXPECT_FALSE(ValidateEndpoint("tcp://h:55a").ok());
}

TEST(FramesTest, RouterDealerRoundTripAndFramingErrors) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  Limits limits;
  ConfigureSocket(router, limits, 0);
  ConfigureSocket(dealer, limits, 0);
  ASSERT_TRUE(Bind(router, "inproc://frames").ok());
  ASSERT_TRUE(Connect(dealer, "inproc://frames").ok());

  ASSERT_TRUE(SendDealer(dealer, AsBytes("hello")).ok());
  RouterMessage in;
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(1000));
  ASSERT_TRUE(RecvRouter(router, &in));
  EXPECT_EQ(in.framing_error, nullptr);
  EXPECT_EQ(AsString(in.bytes()), "hello");

  ASSERT_TRUE(SendRouter(router, in.identity_view(), AsBytes("back")).ok());
  DealerMessage back;
  zmq::pollitem_t ditem{dealer.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&ditem, 1, std::chrono::milliseconds(1000));
  ASSERT_TRUE(RecvDealer(dealer, &back));
  EXPECT_EQ(AsString(back.bytes()), "back");

  // No delimiter: a framing error, not a crash.
  dealer.send(zmq::str_buffer("raw"), zmq::send_flags::none);
  zmq::poll(&item, 1, std::chrono::milliseconds(1000));
  ASSERT_TRUE(RecvRouter(router, &in));
  EXPECT_NE(in.framing_error, nullptr);

  // Too many frames.
  dealer.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
  dealer.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);
  dealer.send(zmq::str_buffer("b"), zmq::send_flags::none);
  zmq::poll(&item, 1, std::chrono::milliseconds(1000));
  ASSERT_TRUE(RecvRouter(router, &in));
  EXPECT_NE(in.framing_error, nullptr);
  EXPECT_FALSE(RecvRouter(router, &in));  // the whole message was drained

  // Sending to an unknown identity is an error, not a silent drop.
  EXPECT_EQ(SendRouter(router, "nobody", AsBytes("x")).code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace yard
