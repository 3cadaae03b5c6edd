// Roles and the decision who may connect where.
//
// Three key sets (key_set.h), one per role: producers submit and cancel
// their jobs on a broker's frontend; workers register, take jobs and send
// results on its backend; admins may also read stats (and later purge,
// requeue, cancel anyone's job) on the frontend. A broker's two server
// sockets carry different ZAP domains ("frontend", "backend"), so the ZAP
// handler knows which side a handshake is for:
//
//   domain     accepted keys            User-Id given
//   frontend   admin, else producer     "admin:<z85>" / "producer:<z85>"
//   backend    worker                   "worker:<z85>"
//
// A key in more than one set gets its strongest role on the frontend (admin
// over producer). Every message then carries the User-Id of its
// connection (zmq_msg_gets "User-Id"; RouterMessage::user_id()), which
// ParseUserId turns back into a role and a key.
//
// Thread-safety: plain values and pure functions.
#ifndef YARD_SECURITY_ROLES_H_
#define YARD_SECURITY_ROLES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "security/key_set.h"

namespace yard {

inline constexpr char kFrontendDomain[] = "frontend";
inline constexpr char kBackendDomain[] = "backend";

enum class Role : uint8_t { kNone, kProducer, kWorker, kAdmin };
const char* RoleName(Role role);

// Why a peer or a message was refused (stats keys: RefusalName).
enum class Refusal : uint8_t {
  kUnknownKey,    // handshake: the key is in no set
  kWrongRole,     // handshake: the key's role does not serve this side
  kPlaintext,     // handshake: no CURVE (a NULL-mechanism peer)
  kHungUp,        // handshake: the peer closed it before it was done; mostly
                  // a plaintext peer that saw the mismatch first (ZMTP
                  // greetings cross), else a probe or a client going away
  kBadHandshake,  // handshake: CURVE failed (e.g. a wrong broker key)
  kRemovedKey,    // message: its key left the sets since the handshake
  kCount
};
const char* RefusalName(Refusal why);

// Who sent a message.
struct Peer {
  Role role = Role::kNone;
  std::string_view key;  // Z85; empty without CURVE
};
std::string MakeUserId(Role role, std::string_view key);
// "producer:<z85>" -> {kProducer, z85}; anything else -> {kNone, ""}.
Peer ParseUserId(std::string_view user_id);

// The three sets, as loaded from the broker's flags.
struct RoleKeyPaths {
  std::string producers, workers, admins;  // admins may be empty
};
struct RoleKeys {
  KeySet producers, workers, admins;
  static Result<RoleKeys> Load(const RoleKeyPaths& paths);
};

struct AccessDecision {
  bool ok = false;
  Role role = Role::kNone;             // when ok
  Refusal why = Refusal::kUnknownKey;  // when not
};
// The handshake rule of the table above.
AccessDecision DecideAccess(const RoleKeys& keys, std::string_view domain,
                            std::string_view mechanism, std::string_view key);

}  // namespace yard

#endif  // YARD_SECURITY_ROLES_H_
