#include "security/zap_handler.h"

#include <cstdint>
#include <cstring>
#include <vector>
#include <zmq_addon.hpp>

#include "security/curve_keys.h"

namespace yard {
namespace {

constexpr size_t kCurveKeyBytes = 32;
// ZAP request frames: version, request id, domain, address, routing id,
// mechanism, then the mechanism's credentials.
constexpr size_t kZapHeaderFrames = 6;

std::string Z85Of(const zmq::message_t& key) {
  if (key.size() != kCurveKeyBytes) return {};
  char text[kZ85KeyChars + 1];
  if (!zmq_z85_encode(text, key.data<uint8_t>(), kCurveKeyBytes)) return {};
  return text;
}

void Reply(zmq::socket_t& s, const zmq::message_t& request_id,
           const AccessDecision& d, const std::string& key) {
  const std::string user_id = d.ok ? MakeUserId(d.role, key) : "";
  std::vector<zmq::const_buffer> frames = {
      zmq::str_buffer("1.0"),
      zmq::buffer(request_id.data(), request_id.size()),
      d.ok ? zmq::str_buffer("200") : zmq::str_buffer("400"),
      d.ok ? zmq::str_buffer("OK")
           : zmq::buffer(std::string_view(RefusalName(d.why))),
      zmq::buffer(user_id),
      zmq::const_buffer(nullptr, 0)};
  (void)zmq::send_multipart(s, frames, zmq::send_flags::dontwait);
}

}  // namespace

Result<std::unique_ptr<ZapHandler>> ZapHandler::Bind(zmq::context_t& context) {
  std::unique_ptr<ZapHandler> h(new ZapHandler(context));
  try {
    h->socket_.set(zmq::sockopt::linger, 0);
    h->socket_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(
        std::string("cannot serve ZAP (") + e.what() +
        "): another CURVE broker already uses this ZeroMQ context; give each "
        "its own");
  }
  return h;
}

int ZapHandler::Serve(const Decide& decide, int budget) {
  int served = 0;
  std::vector<zmq::message_t> frames;
  while (served < budget) {
    frames.clear();
    std::optional<size_t> n;
    try {
      n = zmq::recv_multipart(socket_, std::back_inserter(frames),
                              zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return served;
    }
    if (!n) return served;
    ++served;
    // A malformed request cannot come from libzmq; refuse it all the same
    // (REP must answer before it reads the next one).
    static const zmq::message_t kNoId;
    if (frames.size() < kZapHeaderFrames) {
      Reply(socket_, kNoId, {false, Role::kNone, Refusal::kBadHandshake}, {});
      continue;
    }
    ZapRequest req;
    req.domain = frames[2].to_string();
    req.address = frames[3].to_string();
    req.mechanism = frames[5].to_string();
    if (req.mechanism == "CURVE" && frames.size() > kZapHeaderFrames) {
      req.key = Z85Of(frames[kZapHeaderFrames]);
    }
    AccessDecision d = decide(req);
    if (d.ok && req.key.empty()) d = {false, Role::kNone, Refusal::kPlaintext};
    Reply(socket_, frames[1], d, req.key);
  }
  return served;
}

Result<std::unique_ptr<HandshakeMonitor>> HandshakeMonitor::Watch(
    zmq::context_t& context, zmq::socket_t& server, const std::string& name) {
  std::unique_ptr<HandshakeMonitor> m(new HandshakeMonitor(context, server));
  const std::string endpoint = "inproc://yard-handshakes-" + name;
  if (zmq_socket_monitor(server.handle(), endpoint.c_str(),
                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
    return Status::IoError("cannot monitor handshakes: " +
                           std::string(zmq_strerror(zmq_errno())));
  }
  try {
    m->pair_.set(zmq::sockopt::linger, 0);
    m->pair_.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("cannot monitor handshakes: ") +
                           e.what());
  }
  return m;
}

HandshakeMonitor::~HandshakeMonitor() {
  // Stops the monitor before the PAIR goes, so libzmq does not queue events
  // for a peer that is gone.
  (void)zmq_socket_monitor(server_.handle(), nullptr, 0);
}

int HandshakeMonitor::Drain(const std::function<void(Refusal)>& on_failure,
                            int budget) {
  int seen = 0;
  std::vector<zmq::message_t> frames;
  while (seen < budget) {
    frames.clear();
    std::optional<size_t> n;
    try {
      n = zmq::recv_multipart(pair_, std::back_inserter(frames),
                              zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return seen;
    }
    if (!n) return seen;
    ++seen;
    // Frame 1: uint16 event, uint32 value (native byte order); frame 2: the
    // endpoint (the bound one: libzmq does not name the peer here).
    if (frames.empty() || frames[0].size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), 2);
    std::memcpy(&value, frames[0].data<uint8_t>() + 2, 4);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      on_failure(Refusal::kHungUp);
    } else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      on_failure(Refusal::kPlaintext);
    } else {
      on_failure(Refusal::kBadHandshake);
    }
  }
  return seen;
}

}  // namespace yard
