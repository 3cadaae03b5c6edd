#include "security/roles.h"

namespace yard {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kProducer:
      return "producer";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

const char* RefusalName(Refusal why) {
  switch (why) {
    case Refusal::kUnknownKey:
      return "unknown_key";
    case Refusal::kWrongRole:
      return "wrong_role";
    case Refusal::kPlaintext:
      return "plaintext";
    case Refusal::kHungUp:
      return "hung_up";
    case Refusal::kBadHandshake:
      return "bad_handshake";
    case Refusal::kRemovedKey:
      return "removed_key";
    case Refusal::kCount:
      break;
  }
  return "unknown";
}

std::string MakeUserId(Role role, std::string_view key) {
  return std::string(RoleName(role)) + ":" + std::string(key);
}

Peer ParseUserId(std::string_view user_id) {
  const auto colon = user_id.find(':');
  if (colon == std::string_view::npos) return {};
  const std::string_view role = user_id.substr(0, colon);
  const std::string_view key = user_id.substr(colon + 1);
  for (Role r : {Role::kProducer, Role::kWorker, Role::kAdmin}) {
    if (role == RoleName(r)) return {r, key};
  }
  return {};
}

Result<RoleKeys> RoleKeys::Load(const RoleKeyPaths& paths) {
  RoleKeys keys;
  struct Part {
    const std::string* path;
    KeySet* set;
    const char* flag;
  };
  for (const Part& p :
       {Part{&paths.producers, &keys.producers, "--producer-keys"},
        Part{&paths.workers, &keys.workers, "--worker-keys"},
        Part{&paths.admins, &keys.admins, "--admin-keys"}}) {
    if (p.path->empty()) continue;
    Result<KeySet> set = KeySet::Load(*p.path);
    if (!set.ok()) {
      return Status(set.status().code(),
                    std::string(p.flag) + ": " + set.status().message());
    }
    *p.set = std::move(set).value();
  }
  return keys;
}

AccessDecision DecideAccess(const RoleKeys& keys, std::string_view domain,
                            std::string_view mechanism, std::string_view key) {
  if (mechanism != "CURVE") return {false, Role::kNone, Refusal::kPlaintext};
  const bool admin = keys.admins.Contains(key);
  const bool producer = keys.producers.Contains(key);
  const bool worker = keys.workers.Contains(key);
  if (!admin && !producer && !worker) {
    return {false, Role::kNone, Refusal::kUnknownKey};
  }
  if (domain == kFrontendDomain) {
    if (admin) return {true, Role::kAdmin, {}};
    if (producer) return {true, Role::kProducer, {}};
  } else if (domain == kBackendDomain) {
    if (worker) return {true, Role::kWorker, {}};
  }
  return {false, Role::kNone, Refusal::kWrongRole};
}

}  // namespace yard
