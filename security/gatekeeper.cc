#include "security/gatekeeper.h"

#include <spdlog/spdlog.h>

namespace yard {

Result<std::unique_ptr<Gatekeeper>> Gatekeeper::Create(
    zmq::context_t& context, GatekeeperOptions options) {
  if (!CurveAvailable()) {
    return Status::InvalidArgument(
        "this libzmq was built without CURVE (libsodium)");
  }
  std::unique_ptr<Gatekeeper> g(new Gatekeeper(context, std::move(options)));
  Result<CurveKeyPair> keys = LoadSecretKeyFile(g->options_.secret_key_file);
  if (!keys.ok()) {
    return Status::InvalidArgument("--curve-secret: " +
                                   keys.status().message());
  }
  g->keys_ = std::move(keys).value();
  Result<RoleKeys> roles = RoleKeys::Load(g->options_.keys);
  if (!roles.ok()) return roles.status();
  g->roles_ = std::move(roles).value();
  Result<std::unique_ptr<ZapHandler>> zap = ZapHandler::Bind(context);
  if (!zap.ok()) return zap.status();
  g->zap_ = std::move(zap).value();
  spdlog::info("CURVE on: public key {}; {} producer, {} worker, {} admin keys",
               g->keys_.public_key, g->roles_.producers.size(),
               g->roles_.workers.size(), g->roles_.admins.size());
  return g;
}

Status Gatekeeper::SecureServer(zmq::socket_t& socket, const char* domain) {
  return ApplyCurveServer(socket, keys_.secret_key, domain);
}

Status Gatekeeper::Watch(zmq::socket_t& socket, const char* domain) {
  // Unique per broker and side: the socket's address names it.
  const std::string name =
      std::string(domain) + "-" +
      std::to_string(reinterpret_cast<uintptr_t>(socket.handle()));
  auto monitor = HandshakeMonitor::Watch(context_, socket, name);
  if (!monitor.ok()) return monitor.status();
  watched_.push_back({domain, std::move(monitor).value()});
  return Status::OK();
}

int Gatekeeper::PollItems(zmq_pollitem_t* out) {
  int n = 0;
  out[n++] = {zap_->socket().handle(), 0, ZMQ_POLLIN, 0};
  for (Watched& w : watched_) {
    out[n++] = {w.monitor->socket().handle(), 0, ZMQ_POLLIN, 0};
  }
  return n;
}

void Gatekeeper::OnPollEvents(const zmq_pollitem_t* items, int n,
                              int64_t now_ms) {
  if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
    zap_->Serve(
        [&](const ZapRequest& req) { return OnZapRequest(req, now_ms); });
  }
  for (int i = 1; i < n && static_cast<size_t>(i - 1) < watched_.size(); ++i) {
    if (!(items[i].revents & ZMQ_POLLIN)) continue;
    const std::string& domain = watched_[static_cast<size_t>(i - 1)].domain;
    watched_[static_cast<size_t>(i - 1)].monitor->Drain(
        [&](Refusal why) { Refused(why, "", domain, "", now_ms); });
  }
}

AccessDecision Gatekeeper::OnZapRequest(const ZapRequest& req, int64_t now_ms) {
  AccessDecision d = DecideAccess(roles_, req.domain, req.mechanism, req.key);
  if (d.ok) {
    ++accepted_;
  } else {
    Refused(d.why, req.key, req.domain, req.address, now_ms);
  }
  return d;
}

void Gatekeeper::Refused(Refusal why, std::string_view key,
                         std::string_view domain, std::string_view address,
                         int64_t now_ms) {
  ++refused_[static_cast<size_t>(why)];
  nlohmann::json fields = {{"reason", RefusalName(why)}, {"domain", domain}};
  if (!address.empty()) fields["address"] = address;
  // One rate-limit key per reason and domain for peers without a key.
  const std::string limit_key =
      key.empty() ? std::string(RefusalName(why)) + "@" + std::string(domain)
                  : std::string(key);
  audit_.Write("handshake_refused", limit_key, std::move(fields), now_ms);
}

Status Gatekeeper::Reload() {
  Result<RoleKeys> roles = RoleKeys::Load(options_.keys);
  if (!roles.ok()) {
    spdlog::error("key reload failed, keeping the keys loaded before: {}",
                  roles.status().message());
    return roles.status();
  }
  roles_ = std::move(roles).value();
  ++reloads_;
  spdlog::info("keys reloaded: {} producer, {} worker, {} admin keys",
               roles_.producers.size(), roles_.workers.size(),
               roles_.admins.size());
  return Status::OK();
}

bool Gatekeeper::Admit(const char* domain, std::string_view user_id,
                       std::initializer_list<Role> allowed,
                       std::string_view what, int64_t now_ms,
                       std::string* why) {
  const Peer peer = ParseUserId(user_id);
  const KeySet* set = peer.role == Role::kProducer ? &roles_.producers
                      : peer.role == Role::kWorker ? &roles_.workers
                      : peer.role == Role::kAdmin  ? &roles_.admins
                                                   : nullptr;
  const bool listed = set && set->Contains(peer.key);
  bool role_ok = false;
  for (Role r : allowed) role_ok = role_ok || r == peer.role;
  if (listed && role_ok) return true;
  nlohmann::json fields = {
      {"domain", domain}, {"message", what}, {"role", RoleName(peer.role)}};
  if (!listed) {
    ++refused_[static_cast<size_t>(Refusal::kRemovedKey)];
    *why = "this key is no longer accepted";
    fields["reason"] = RefusalName(Refusal::kRemovedKey);
  } else {
    ++role_violations_;
    *why = std::string(what) + " needs the " + RoleName(*allowed.begin()) +
           " role";
    fields["reason"] = "role";
  }
  audit_.Write("message_refused", peer.key, std::move(fields), now_ms);
  return false;
}

void Gatekeeper::DescribeStats(nlohmann::json* j) const {
  nlohmann::json refused = nlohmann::json::object();
  for (size_t i = 0; i < refused_.size(); ++i) {
    refused[RefusalName(static_cast<Refusal>(i))] = refused_[i];
  }
  (*j)["auth_refused"] = std::move(refused);
  (*j)["role_violations"] = role_violations_;
  (*j)["auth"] = {{"curve", true},
                  {"public_key", keys_.public_key},
                  {"accepted", accepted_},
                  {"reloads", reloads_},
                  {"keys",
                   {{"producer", roles_.producers.size()},
                    {"worker", roles_.workers.size()},
                    {"admin", roles_.admins.size()}}}};
}

}  // namespace yard
