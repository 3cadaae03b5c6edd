#include "link/broker_link.h"

#include <utility>

#include "common/heartbeat.h"
#include "schemas/frames.h"

namespace yard {

BrokerLink::BrokerLink(std::string endpoint, int64_t heartbeat_us)
    : endpoint_(std::move(endpoint)), heartbeat_us_(heartbeat_us) {}

Status BrokerLink::Open(zmq::context_t& context, const Limits& limits,
                        int64_t now_us, const CurveClientOptions& curve) {
  Close(0);
  opened_us_ = now_us;
  last_heard_us_ = now_us;
  next_heartbeat_us_ = now_us;  // the first one goes out at once
  try {
    auto s = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
    ConfigureSocket(*s, limits, 0);
    if (Status st = ApplyCurveClient(*s, curve, endpoint_); !st.ok()) {
      return Status(st.code(), endpoint_ + ": " + st.message());
    }
    socket_ = std::move(s);
  } catch (const zmq::error_t& e) {
    return Status::IoError("cannot open a socket to " + endpoint_ + ": " +
                           e.what());
  }
  return Connect(*socket_, endpoint_);
}

void BrokerLink::Close(int linger_ms) {
  alive_ = false;
  if (!socket_) return;
  try {
    socket_->set(zmq::sockopt::linger, linger_ms);
    socket_->close();
  } catch (const zmq::error_t&) {
    // A context already terminated: the socket is gone either way.
  }
  socket_.reset();
}

Status BrokerLink::Send(Bytes message) {
  if (!socket_) return Status::Unavailable("no socket to " + endpoint_);
  return SendDealer(*socket_, message);
}

Status BrokerLink::Beat(Bytes heartbeat, int64_t now_us) {
  next_heartbeat_us_ = now_us + heartbeat_us_;
  return Send(heartbeat);
}

bool BrokerLink::Heard(int64_t now_us) {
  last_heard_us_ = now_us;
  if (alive_) return false;
  alive_ = true;
  was_alive_ = true;
  return true;
}

int64_t BrokerLink::ExpiresAt() const {
  const int64_t since = alive_ ? last_heard_us_ : opened_us_;
  return since + heartbeat_us_ * kHeartbeatLiveness;
}

}  // namespace yard
