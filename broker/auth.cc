// The broker's side of CURVE: the Gatekeeper (security/gatekeeper.h) set up
// on both sockets, key reloads on SIGHUP, and which role may send what.
//
//   frontend   Submit, Cancel, Heartbeat: producer or admin
//              StatsRequest: admin
//   backend    everything: worker
//
// The handshake already keeps each side to its roles (ZAP domains); the
// per-message check adds the admin-only requests and refuses keys removed
// by a reload on connections made before it.
#include "broker/broker_impl.h"

namespace yard {

Status Broker::Impl::InitCurve() {
  if (options_.curve.secret_key_file.empty()) return Status::OK();
  auto gate = Gatekeeper::Create(*context_, options_.curve);
  if (!gate.ok()) return gate.status();
  gate_ = std::move(gate).value();
  for (auto [socket, domain] : {std::pair{&frontend_, kFrontendDomain},
                                std::pair{&backend_, kBackendDomain}}) {
    if (Status s = gate_->SecureServer(*socket, domain); !s.ok()) return s;
    if (Status s = gate_->Watch(*socket, domain); !s.ok()) return s;
  }
  reload_generation_ = ReloadGeneration();
  return Status::OK();
}

void Broker::Impl::ReloadKeysIfAsked() {
  const uint64_t generation = ReloadGeneration();
  if (generation == reload_generation_) return;
  reload_generation_ = generation;
  (void)gate_->Reload();  // logged; the old sets stay on failure
}

bool Broker::Impl::Admit(const RouterMessage& msg, wire::Body kind,
                         bool frontend) {
  if (!gate_) return true;
  std::string why;
  const char* what = wire::EnumNameBody(kind);
  if (frontend) {
    const bool admin_only = kind == wire::Body::StatsRequest;
    if (gate_->Admit(kFrontendDomain, msg.user_id(),
                     admin_only ? std::initializer_list<Role>{Role::kAdmin}
                                : std::initializer_list<Role>{Role::kProducer,
                                                              Role::kAdmin},
                     what, MonoMillis(), &why)) {
      return true;
    }
    SendTo(frontend_, msg.identity_view(),
           writer_.EncodeError(wire::ErrorCode::Forbidden, why, {}));
    return false;
  }
  if (gate_->Admit(kBackendDomain, msg.user_id(), {Role::kWorker}, what,
                   MonoMillis(), &why)) {
    return true;
  }
  if (WorkerInfo* w = workers_.Find(msg.identity_view())) {
    spdlog::warn("worker {} refused ({}): its jobs go back to the queue",
                 w->name, why);
    uint64_t serial = w->serial;
    workers_.Remove(msg.identity_view());
    ++roster_;
    ReleaseWorkerJobs(serial, /*died=*/false);
  }
  SendTo(backend_, msg.identity_view(),
         writer_.EncodeError(wire::ErrorCode::Forbidden, why, {}));
  return false;
}

}  // namespace yard
