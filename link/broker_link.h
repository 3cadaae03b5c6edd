// BrokerLink: a producer's or a worker's connection to one broker -- its
// DEALER socket, and whether the broker is alive (after the Majordomo
// protocol, RFC 7/MDP, and common/heartbeat.h).
//
//   - Any message heard from the broker counts as a heartbeat. We send one
//     heartbeat every interval (HeartbeatDue, Beat) whatever else we send:
//     the broker answers it with its own, whose instance id tells a broker
//     that restarted between two heartbeats.
//   - A link that heard nothing for kHeartbeatLiveness intervals -- since
//     the last message, or since the socket opened when none came on it --
//     has expired (Expired): the owner presumes the broker gone, deals with
//     what the broker held, and opens a fresh socket (Open), which drops
//     whatever the old one still queued (a reconnect on the same socket
//     would deliver stale messages to a restarted broker).
//   - `retired`: the broker left the broker set (discovery); the owner stops
//     giving it work and closes the link once it holds nothing (broker_set.h).
//
//   BrokerLink link("tcp://127.0.0.1:5555", heartbeat_us);
//   link.Open(context, limits, now);       // alive() false until Heard()
//   link.Send(writer.EncodeReady(...), now);
//   if (RecvDealer(*link.socket(), &msg)) link.Heard(now);
//   if (link.Expired(now)) { ...; link.Open(context, limits, now); }
//   else if (link.HeartbeatDue(now)) link.Beat(writer.EncodeHeartbeat(), now);
//
// Times are monotonic microseconds (common/clock.h MonoMicros).
// Thread-safety: none; the owner's I/O thread uses it.
#ifndef YARD_LINK_BROKER_LINK_H_
#define YARD_LINK_BROKER_LINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/status.h"
#include "schemas/codec.h"
#include "security/curve_keys.h"

namespace yard {

class BrokerLink {
 public:
  BrokerLink(std::string endpoint, int64_t heartbeat_us);

  const std::string& endpoint() const { return endpoint_; }
  // Null before Open and after Close (or an Open that could not make one).
  zmq::socket_t* socket() const { return socket_.get(); }
  bool alive() const { return alive_; }
  // Alive at some time before (for log lines: "back" rather than "up").
  bool was_alive() const { return was_alive_; }
  int64_t last_heard_us() const { return last_heard_us_; }
  int64_t opened_us() const { return opened_us_; }

  // Drops the old socket (linger 0: the broker is presumed gone) and opens
  // and connects a fresh DEALER, with CURVE when `curve` is enabled (the
  // broker's key for this endpoint: curve.ServerKeyFor). Not alive until
  // Heard. Not OK when no socket could be made (socket() is null then: also
  // when no broker key is known yet), or the endpoint refused.
  Status Open(zmq::context_t& context, const Limits& limits, int64_t now_us,
              const CurveClientOptions& curve = {});
  // Closes the socket, waiting up to linger_ms for queued messages.
  void Close(int linger_ms = 0);

  // SendDealer: ResourceExhausted when the pipe is full; Unavailable
  // without a socket.
  Status Send(Bytes message);
  // Sends a heartbeat and schedules the next one an interval later, whether
  // or not this one went out (a full pipe: the broker hears other traffic).
  Status Beat(Bytes heartbeat, int64_t now_us);
  // Something came from the broker. True when that made the link alive.
  bool Heard(int64_t now_us);

  // Silent for kHeartbeatLiveness intervals (see above).
  bool Expired(int64_t now_us) const { return now_us > ExpiresAt(); }
  bool HeartbeatDue(int64_t now_us) const {
    return socket_ && now_us >= next_heartbeat_us_;
  }
  // When it expires, when a heartbeat falls due: for the poll timeout.
  int64_t ExpiresAt() const;
  int64_t HeartbeatAt() const { return next_heartbeat_us_; }

  bool retired = false;  // left the broker set (see above)

 private:
  std::string endpoint_;
  int64_t heartbeat_us_;
  std::unique_ptr<zmq::socket_t> socket_;
  bool alive_ = false;
  bool was_alive_ = false;
  int64_t opened_us_ = 0;
  int64_t last_heard_us_ = 0;
  int64_t next_heartbeat_us_ = 0;
};

}  // namespace yard

#endif  // YARD_LINK_BROKER_LINK_H_
