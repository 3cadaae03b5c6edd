// Frames: the routing envelope around one Envelope frame, over cppzmq.
//
//   ROUTER side:  [identity] [""] [Envelope]     (exactly three frames)
//   DEALER side:              [""] [Envelope]     (exactly two frames)
//
// Receivers read a whole multipart message and report a framing error
// (wrong frame count, missing delimiter) instead of guessing; the caller
// answers with an Error when an identity is known. Senders never block: a
// full pipe or an unknown peer is a Status, not a hang. cppzmq exceptions
// stop here and become a Status.
//
// Thread-safety: as the socket (one thread per socket).
#ifndef YARD_SCHEMAS_FRAMES_H_
#define YARD_SCHEMAS_FRAMES_H_

#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"
#include "schemas/codec.h"

namespace yard {

struct RouterMessage {
  zmq::message_t identity;
  // The empty delimiter, kept for the connection's metadata: the identity
  // frame is the ROUTER's own, and the body may be a copy (alignment).
  zmq::message_t delimiter;
  zmq::message_t body;
  // Non-null when the frames were not [identity][""][body]; body is empty.
  const char* framing_error = nullptr;
  Bytes bytes() const { return {body.data<uint8_t>(), body.size()}; }
  std::string_view identity_view() const { return identity.to_string_view(); }
  // The ZAP User-Id of the sender's connection: "role:<CURVE public key>"
  // (security/roles.h); empty without CURVE.
  std::string_view user_id() const;
  // Who sent it, for ownership checks: the CURVE public key when the
  // connection is authenticated, else the connection identity.
  std::string_view principal() const;
  // The address the sender connects from (ZeroMQ's Peer-Address: the IP of
  // a tcp:// peer); empty for inproc:// and ipc:// peers.
  std::string_view peer_address() const;
};

struct DealerMessage {
  zmq::message_t body;
  const char* framing_error = nullptr;
  Bytes bytes() const { return {body.data<uint8_t>(), body.size()}; }
};

// Read one whole message without blocking; false when none is waiting.
bool RecvRouter(zmq::socket_t& socket, RouterMessage* out);
bool RecvDealer(zmq::socket_t& socket, DealerMessage* out);

// ResourceExhausted when the pipe is full, Unavailable when the peer is
// unknown (ROUTER_MANDATORY), IoError otherwise.
Status SendRouter(zmq::socket_t& socket, std::string_view identity, Bytes body);
Status SendDealer(zmq::socket_t& socket, Bytes body);

// Options every Switchyard socket gets: high-water marks, linger, a hard
// frame-size cap (a multiple of the limit, so frames between the limit and
// the cap still get a TooLarge error reply), and ROUTER_MANDATORY on ROUTERs.
void ConfigureSocket(zmq::socket_t& socket, const Limits& limits,
                     int linger_ms);

// tcp://host:port, ipc://path or inproc://name; InvalidArgument otherwise.
Status ValidateEndpoint(std::string_view endpoint);
Status Bind(zmq::socket_t& socket, const std::string& endpoint);
Status Connect(zmq::socket_t& socket, const std::string& endpoint);
// The endpoint actually bound (resolves tcp://127.0.0.1:* to the port).
std::string LastEndpoint(zmq::socket_t& socket);

}  // namespace yard

#endif  // YARD_SCHEMAS_FRAMES_H_
