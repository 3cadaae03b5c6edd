// ZapHandler: a ZeroMQ Authentication Protocol (ZAP, RFC 27) server that a
// single-threaded loop polls; no thread of its own, none per connection.
//
// libzmq asks "inproc://zeromq.zap.01" of the socket's context about every
// CURVE handshake on a server socket and waits (asynchronously, in its I/O
// thread) for the answer; the peer's first message arrives only after a
// "200". Only one handler can bind per context, so Bind fails
// (AlreadyExists-like InvalidArgument) when another already serves it.
//
//   request (after REP strips the envelope):
//     "1.0" | request id | domain | address | routing id | mechanism | key
//   reply:
//     "1.0" | request id | "200" or "400" | status text | user id | ""
//
// Bind it before any server socket of the context binds: handshakes that
// start earlier would not consult it.
//
// HandshakeMonitor reports the handshakes that fail before ZAP is asked
// (a plaintext peer: mechanism mismatch, or a hang-up when the peer noticed
// the mismatch first; a CURVE peer using the wrong server key: a
// cryptographic error) through zmq_socket_monitor and a PAIR socket the
// loop polls too.
//
// Thread-safety: both belong to the thread that polls them.
#ifndef YARD_SECURITY_ZAP_HANDLER_H_
#define YARD_SECURITY_ZAP_HANDLER_H_

#include <functional>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/status.h"
#include "security/roles.h"

namespace yard {

inline constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";

struct ZapRequest {
  std::string domain;
  std::string address;    // the peer's IP address
  std::string mechanism;  // "CURVE", "NULL", "PLAIN"
  std::string key;        // CURVE: the client's public key in Z85
};

class ZapHandler {
 public:
  using Decide = std::function<AccessDecision(const ZapRequest&)>;

  static Result<std::unique_ptr<ZapHandler>> Bind(zmq::context_t& context);
  zmq::socket_t& socket() { return socket_; }

  // Answers the requests waiting, up to `budget`, each as `decide` says
  // (User-Id: MakeUserId of the role). Returns how many it answered.
  int Serve(const Decide& decide, int budget = 256);

 private:
  explicit ZapHandler(zmq::context_t& context)
      : socket_(context, zmq::socket_type::rep) {}
  zmq::socket_t socket_;
};

class HandshakeMonitor {
 public:
  // Watches `server` (before or after it binds); `name` must be unique in
  // the context (it names the inproc endpoint).
  static Result<std::unique_ptr<HandshakeMonitor>> Watch(
      zmq::context_t& context, zmq::socket_t& server, const std::string& name);
  ~HandshakeMonitor();
  zmq::socket_t& socket() { return pair_; }

  // Calls on_failure for each failed handshake waiting (up to `budget`).
  int Drain(const std::function<void(Refusal)>& on_failure, int budget = 256);

 private:
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& server)
      : server_(server), pair_(context, zmq::socket_type::pair) {}
  zmq::socket_t& server_;
  zmq::socket_t pair_;
};

}  // namespace yard

#endif  // YARD_SECURITY_ZAP_HANDLER_H_
