#include "schemas/frames.h"

#include <cstdint>

namespace yard {
namespace {

// Drains the rest of a multipart message after a framing error.
void DrainRest(zmq::socket_t& s, zmq::message_t& scratch) {
  while (s.get(zmq::sockopt::rcvmore)) {
    (void)s.recv(scratch, zmq::recv_flags::none);
  }
}

// libzmq hands out large frames as slices of its receive buffer, at any
// offset. FlatBuffers reads scalars in place and its Verifier checks
// alignment relative to the buffer start only, so a misaligned frame is moved
// to a fresh (malloc-aligned) message before anyone reads it.
void Align(zmq::message_t& m) {
  constexpr uintptr_t kAlign = 8;  // the widest scalar in the schema
  if (reinterpret_cast<uintptr_t>(m.data()) % kAlign == 0) return;
  // A fresh message's buffer is 8-aligned (heap block or inline storage).
  zmq::message_t copy(m.data(), m.size());
  m.move(copy);
}

Status FromZmq(const zmq::error_t& e) {
  if (e.num() == EHOSTUNREACH) return Status::Unavailable("peer is gone");
  if (e.num() == EAGAIN) return Status::ResourceExhausted("send pipe is full");
  return Status::IoError(e.what());
}

// Reads [""][body] (the rest of a message after any identity frame).
// `first` is the delimiter frame, already received.
const char* RecvDelimitedBody(zmq::socket_t& s, zmq::message_t& first,
                              zmq::message_t* body) {
  if (first.size() != 0 || !first.more()) {
    body->rebuild(0);
    DrainRest(s, first);
    return "expected an empty delimiter frame before the body";
  }
  (void)s.recv(*body, zmq::recv_flags::none);
  if (body->more()) {
    DrainRest(s, first);
    body->rebuild(0);
    return "too many frames (expected one envelope frame)";
  }
  Align(*body);
  return nullptr;
}

}  // namespace

bool RecvRouter(zmq::socket_t& s, RouterMessage* out) {
  out->framing_error = nullptr;
  if (!s.recv(out->identity, zmq::recv_flags::dontwait)) return false;
  if (!out->identity.more()) {
    out->framing_error = "message has no delimiter and no body";
    out->delimiter.rebuild(0);
    out->body.rebuild(0);
    return true;
  }
  (void)s.recv(out->delimiter, zmq::recv_flags::none);
  out->framing_error = RecvDelimitedBody(s, out->delimiter, &out->body);
  return true;
}

std::string_view RouterMessage::user_id() const {
  const char* user = zmq_msg_gets(delimiter.handle(), "User-Id");
  return user ? std::string_view(user) : std::string_view();
}

std::string_view RouterMessage::peer_address() const {
  const char* address = zmq_msg_gets(delimiter.handle(), "Peer-Address");
  return address ? std::string_view(address) : std::string_view();
}

std::string_view RouterMessage::principal() const {
  std::string_view user = user_id();
  const auto colon = user.find(':');
  if (colon == std::string_view::npos) return identity_view();
  return user.substr(colon + 1);
}

bool RecvDealer(zmq::socket_t& s, DealerMessage* out) {
  zmq::message_t delimiter;
  if (!s.recv(delimiter, zmq::recv_flags::dontwait)) return false;
  out->framing_error = RecvDelimitedBody(s, delimiter, &out->body);
  return true;
}

Status SendRouter(zmq::socket_t& s, std::string_view identity, Bytes body) {
  try {
    auto flags = zmq::send_flags::dontwait | zmq::send_flags::sndmore;
    if (!s.send(zmq::buffer(identity.data(), identity.size()), flags)) {
      return Status::ResourceExhausted("send pipe is full");
    }
    // Once the identity frame is queued, the rest of the message is accepted.
    (void)s.send(zmq::const_buffer(nullptr, 0), flags);
    (void)s.send(zmq::buffer(body.data(), body.size()),
                 zmq::send_flags::dontwait);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return FromZmq(e);
  }
}

Status SendDealer(zmq::socket_t& s, Bytes body) {
  try {
    if (!s.send(zmq::const_buffer(nullptr, 0),
                zmq::send_flags::dontwait | zmq::send_flags::sndmore)) {
      return Status::ResourceExhausted("send pipe is full");
    }
    (void)s.send(zmq::buffer(body.data(), body.size()),
                 zmq::send_flags::dontwait);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return FromZmq(e);
  }
}

void ConfigureSocket(zmq::socket_t& s, const Limits& limits, int linger_ms) {
  s.set(zmq::sockopt::linger, linger_ms);
  s.set(zmq::sockopt::sndhwm, 100000);
  s.set(zmq::sockopt::rcvhwm, 100000);
  s.set(zmq::sockopt::maxmsgsize,
        static_cast<int64_t>(limits.max_frame_bytes) * 4);
  if (s.get(zmq::sockopt::type) == static_cast<int>(zmq::socket_type::router)) {
    s.set(zmq::sockopt::router_mandatory, 1);
  }
}

Status ValidateEndpoint(std::string_view ep) {
  auto rest_after = [&](std::string_view scheme) -> std::string_view {
    return ep.substr(scheme.size());
  };
  if (ep.starts_with("tcp://")) {
    auto rest = rest_after("tcp://");
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0 ||
        colon + 1 == rest.size()) {
      return Status::InvalidArgument("endpoint '" + std::string(ep) +
                                     "' needs tcp://HOST:PORT");
    }
    // HOST: a name, an address ([v6] in brackets), an interface or `*`, and
    // ZeroMQ's `source;host` form; PORT: 1..65535 or `*`.
    for (char c : rest.substr(0, colon)) {
      const bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') ||
          std::string_view(".-_:[]*;%").find(c) != std::string_view::npos;
      if (!ok) {
        return Status::InvalidArgument("endpoint '" + std::string(ep) +
                                       "': the host may not contain '" +
                                       std::string(1, c) + "'");
      }
    }
    const std::string_view port = rest.substr(colon + 1);
    if (port != "*") {
      int value = 0;
      for (char c : port) {
        if (c < '0' || c > '9' || (value = value * 10 + (c - '0')) > 65535) {
          return Status::InvalidArgument("endpoint '" + std::string(ep) +
                                         "': the port must be 1..65535 or *");
        }
      }
      if (value == 0) {
        return Status::InvalidArgument("endpoint '" + std::string(ep) +
                                       "': the port must be 1..65535 or *");
      }
    }
    return Status::OK();
  }
  if ((ep.starts_with("ipc://") && ep.size() > 6) ||
      (ep.starts_with("inproc://") && ep.size() > 9)) {
    return Status::OK();
  }
  return Status::InvalidArgument("endpoint '" + std::string(ep) +
                                 "' is not tcp://HOST:PORT, ipc://PATH or "
                                 "inproc://NAME");
}

Status Bind(zmq::socket_t& s, const std::string& ep) {
  if (auto st = ValidateEndpoint(ep); !st.ok()) return st;
  try {
    s.bind(ep);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument("cannot bind " + ep + ": " + e.what());
  }
}

Status Connect(zmq::socket_t& s, const std::string& ep) {
  if (auto st = ValidateEndpoint(ep); !st.ok()) return st;
  try {
    s.connect(ep);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument("cannot connect to " + ep + ": " + e.what());
  }
}

std::string LastEndpoint(zmq::socket_t& s) {
  return s.get(zmq::sockopt::last_endpoint);
}

}  // namespace yard
