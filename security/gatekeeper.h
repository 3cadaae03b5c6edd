// Gatekeeper: everything a broker does for CURVE, behind one object the
// broker's loop drives: its key pair, the three role key sets (re-read on
// Reload, e.g. on SIGHUP), the ZAP handler that decides each handshake, the
// monitors that see handshakes failing before ZAP (plaintext peers), the
// per-message role check, the refusal counters and the audit lines.
//
//   auto gate = Gatekeeper::Create(context, options);   // binds ZAP first
//   gate->SecureServer(frontend, kFrontendDomain);      // before bind
//   gate->SecureServer(backend, kBackendDomain);
//   ... bind ...
//   gate->Watch(frontend, kFrontendDomain);             // plaintext refusals
//   loop: n = gate->PollItems(items); poll; gate->OnPollEvents(items, n, now);
//         if (!gate->Admit(kFrontendDomain, msg.user_id(), need, now)) refuse;
//
// Counting is exact; log and audit lines are rate-limited to one per second
// per (event, key) (common/audit.h).
//
// Keys removed by a reload: new handshakes are refused by ZAP; connections
// made before keep their socket (libzmq cannot drop one ROUTER peer), but
// every message on them is refused from then on (Refusal::kRemovedKey), so
// they get nothing and can do nothing.
//
// Thread-safety: the broker's loop thread only.
#ifndef YARD_SECURITY_GATEKEEPER_H_
#define YARD_SECURITY_GATEKEEPER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/audit.h"
#include "common/status.h"
#include "security/curve_keys.h"
#include "security/roles.h"
#include "security/zap_handler.h"

namespace yard {

struct GatekeeperOptions {
  std::string secret_key_file;  // the broker's secret key (--curve-secret)
  RoleKeyPaths keys;            // re-read on Reload
};

class Gatekeeper {
 public:
  static constexpr int kMaxPollItems = 3;  // ZAP + a monitor per side

  // Loads the keys and binds the ZAP handler in `context`.
  static Result<std::unique_ptr<Gatekeeper>> Create(zmq::context_t& context,
                                                    GatekeeperOptions options);
  const std::string& public_key() const { return keys_.public_key; }

  // Before bind: CURVE server, secret key, ZAP domain.
  Status SecureServer(zmq::socket_t& socket, const char* domain);
  // After SecureServer: counts handshakes that fail before ZAP.
  Status Watch(zmq::socket_t& socket, const char* domain);

  // The sockets to poll (ZAP, monitors) and what to do when they are ready.
  int PollItems(zmq_pollitem_t* out);
  void OnPollEvents(const zmq_pollitem_t* items, int n, int64_t now_ms);

  // Re-reads the three key sets; on any error keeps the old ones (logged).
  Status Reload();

  // A message from `user_id` (RouterMessage::user_id()) on `domain` that
  // needs one of `allowed` roles: true when its key is still in the set of
  // its role and that role is allowed. Otherwise counts, audits and returns
  // false; *why says why ("needs the admin role", ...).
  bool Admit(const char* domain, std::string_view user_id,
             std::initializer_list<Role> allowed, std::string_view what,
             int64_t now_ms, std::string* why);

  // {"auth_refused": {reason: n, ...}, "role_violations": n,
  //  "auth": {"accepted": n, "reloads": n, "keys": {...}}}, merged into *j.
  void DescribeStats(nlohmann::json* j) const;

  uint64_t refused(Refusal why) const {
    return refused_[static_cast<size_t>(why)];
  }
  uint64_t role_violations() const { return role_violations_; }

 private:
  Gatekeeper(zmq::context_t& context, GatekeeperOptions options)
      : context_(context), options_(std::move(options)) {}
  AccessDecision OnZapRequest(const ZapRequest& req, int64_t now_ms);
  void Refused(Refusal why, std::string_view key, std::string_view domain,
               std::string_view address, int64_t now_ms);

  struct Watched {
    std::string domain;
    std::unique_ptr<HandshakeMonitor> monitor;
  };

  zmq::context_t& context_;
  const GatekeeperOptions options_;
  CurveKeyPair keys_;
  RoleKeys roles_;
  std::unique_ptr<ZapHandler> zap_;
  std::vector<Watched> watched_;
  AuditLog audit_;
  std::array<uint64_t, static_cast<size_t>(Refusal::kCount)> refused_{};
  uint64_t accepted_ = 0;
  uint64_t role_violations_ = 0;
  uint64_t reloads_ = 0;
};

}  // namespace yard

#endif  // YARD_SECURITY_GATEKEEPER_H_
