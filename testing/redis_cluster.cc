#include "testing/redis_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "testing/redis_spawn.h"

namespace yard {

using fixture::CheckBinary;
using fixture::InfoField;
using fixture::PollFor;
using fixture::RedisBinary;
using fixture::SpawnAndAwaitPing;
using fixture::StopGracefully;
using fixture::TailOf;

namespace {

constexpr int kSlots = 16384;
constexpr std::chrono::seconds kClusterReadyTimeout(20);
constexpr std::chrono::seconds kSlotSettleTimeout(10);
constexpr int kMigratePage = 100;
constexpr int64_t kCommandTimeoutMs = 10000;  // MIGRATE waits up to 5 s

std::string JoinArgs(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    if (!out.empty()) out.push_back(' ');
    out.append(a.size() > 40 ? a.substr(0, 40) + "..." : a);
  }
  return out;
}

// One command to node `port`; an error reply or none is a Status naming
// the node and the command.
Result<RedisReply> Run(const RedisServer& node,
                       const std::vector<std::string>& args) {
  auto r = node.Call(args, kCommandTimeoutMs);
  if (!r.ok()) {
    const std::string port = std::to_string(node.port());
    return Status(r.status().code(), "127.0.0.1:" + port + " " +
                                         JoinArgs(args) + ": " +
                                         r.status().message());
  }
  return r;
}

// A node's CLUSTER SLOTS as "first-last=<primary id>" per range, in slot
// order ("" when it does not answer).
std::string SlotSignature(const RedisServer& server) {
  auto r = server.Call({"CLUSTER", "SLOTS"}, 1000);
  if (!r.ok() || r->type != RedisReply::Type::kArray) return "";
  std::vector<std::pair<int64_t, std::string>> ranges;
  for (const RedisReply& range : r->elements) {
    if (range.type != RedisReply::Type::kArray || range.elements.size() < 3)
      return "";
    const RedisReply& node = range.elements[2];
    if (node.type != RedisReply::Type::kArray || node.elements.size() < 3)
      return "";
    ranges.emplace_back(range.elements[0].integer,
                        std::to_string(range.elements[0].integer) + "-" +
                            std::to_string(range.elements[1].integer) + "=" +
                            node.elements[2].str);
  }
  std::sort(ranges.begin(), ranges.end());
  std::string out;
  for (const auto& [first, text] : ranges) out.append(text + " ");
  return out;
}

// The id of the primary that `slots` (a CLUSTER SLOTS reply) names for
// `slot` ("" when none does).
std::string SlotOwnerId(const RedisReply& slots, uint16_t slot) {
  if (slots.type != RedisReply::Type::kArray) return "";
  for (const RedisReply& range : slots.elements) {
    if (range.type != RedisReply::Type::kArray || range.elements.size() < 3 ||
        range.elements[2].type != RedisReply::Type::kArray ||
        range.elements[2].elements.size() < 3) {
      continue;
    }
    if (slot < range.elements[0].integer || slot > range.elements[1].integer) {
      continue;
    }
    return range.elements[2].elements[2].str;
  }
  return "";
}

}  // namespace

Result<std::unique_ptr<RedisCluster>> RedisCluster::Create(
    int primaries, int replicas_per_primary, const std::string& password) {
  if (primaries < 1) return Status::InvalidArgument("a cluster needs a node");
  if (replicas_per_primary < 0) {
    return Status::InvalidArgument("a negative replica count");
  }
  std::unique_ptr<RedisCluster> c(new RedisCluster());
  c->primaries_ = static_cast<size_t>(primaries);
  c->replicas_per_primary_ = replicas_per_primary;
  RedisServer::Options options;
  options.cluster = true;
  options.password = password;
  // With replicas: a short node timeout, so a failover takes seconds.
  if (replicas_per_primary > 0) options.cluster_node_timeout_ms = 1000;
  for (int i = 0; i < primaries * (1 + replicas_per_primary); ++i) {
    auto node = RedisServer::Create(options);
    if (!node.ok()) return node.status();
    auto id = Run(**node, {"CLUSTER", "MYID"});
    if (!id.ok()) return id.status();
    c->ids_.push_back(id->str);
    c->nodes_.push_back(std::move(node).value());
  }
  if (Status s = c->Join(); !s.ok()) {
    return Status(s.code(), s.message() + "\n" + c->LogTails());
  }
  if (Status s = c->AttachReplicas(); !s.ok()) {
    return Status(s.code(), s.message() + "\n" + c->LogTails());
  }
  return c;
}

RedisCluster::~RedisCluster() = default;

Status RedisCluster::Join() {
  const size_t n = primaries_;  // the replicas hold no slots
  for (size_t i = 0; i < n; ++i) {
    const int first = static_cast<int>(i * kSlots / n);
    const int last = static_cast<int>((i + 1) * kSlots / n) - 1;
    auto r = Run(*nodes_[i], {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first),
                              std::to_string(last)});
    if (!r.ok()) return r.status();
  }
  for (size_t i = 1; i < nodes_.size(); ++i) {
    auto r = Run(*nodes_[0], {"CLUSTER", "MEET", "127.0.0.1",
                              std::to_string(nodes_[i]->port()),
                              std::to_string(nodes_[i]->cluster_port())});
    if (!r.ok()) return r.status();
  }
  return AwaitConsistent(kClusterReadyTimeout);
}

Status RedisCluster::AttachReplicas() {
  if (replicas_per_primary_ == 0) return Status::OK();
  // A node learns the others by gossip after the MEETs: CLUSTER REPLICATE
  // says "Unknown node" until the replica has heard of its primary.
  for (size_t p = 0; p < primaries_; ++p) {
    for (int r = 0; r < replicas_per_primary_; ++r) {
      const size_t i = replica(p, r);
      Status s = PollFor(
          [&](std::string* last) {
            auto reply =
                nodes_[i]->Call({"CLUSTER", "REPLICATE", ids_[p]}, 1000);
            if (!reply.ok()) {
              *last = reply.status().message();
              return false;
            }
            return true;
          },
          kClusterReadyTimeout,
          "node " + std::to_string(i) + " CLUSTER REPLICATE node " +
              std::to_string(p));
      if (!s.ok()) return s;
    }
  }
  for (size_t p = 0; p < primaries_; ++p) {
    for (int r = 0; r < replicas_per_primary_; ++r) {
      Status s = nodes_[replica(p, r)]->AwaitReplicaLink(kClusterReadyTimeout);
      if (!s.ok()) return s;
    }
    Status s =
        nodes_[p]->AwaitReplicas(replicas_per_primary_, kClusterReadyTimeout);
    if (!s.ok()) return s;
  }
  // Every node must know each replica's primary: a primary votes for a
  // replica's failover only if it sees it as a replica of the failed node.
  Status known = PollFor(
      [this](std::string* last) {
        for (size_t n = 0; n < nodes_.size(); ++n) {
          auto reply = nodes_[n]->Call({"CLUSTER", "NODES"}, 500);
          if (!reply.ok() || reply->type != RedisReply::Type::kString) {
            *last = "node " + std::to_string(n) + ": no CLUSTER NODES";
            return false;
          }
          const std::string& text = reply->str;
          for (size_t p = 0; p < primaries_; ++p) {
            for (int r = 0; r < replicas_per_primary_; ++r) {
              const size_t i = replica(p, r);
              // "<id> <addr> <flags> <primary id> ...", one line per node.
              size_t at = text.find(ids_[i] + " ");
              if (at != 0 && at != std::string::npos && text[at - 1] != '\n') {
                at = std::string::npos;
              }
              const size_t end = at == std::string::npos ? std::string::npos
                                                         : text.find('\n', at);
              const std::string line =
                  at == std::string::npos ? "" : text.substr(at, end - at);
              if (line.find("slave") == std::string::npos ||
                  line.find(" " + ids_[p] + " ") == std::string::npos) {
                *last = "node " + std::to_string(n) + " on node " +
                        std::to_string(i) + ": '" + line + "'";
                return false;
              }
            }
          }
        }
        return true;
      },
      kClusterReadyTimeout, "every node knowing the replicas");
  if (!known.ok()) return known;
  return AwaitConsistent(kClusterReadyTimeout);
}

size_t RedisCluster::FirstRunning() const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->running()) return i;
  }
  return 0;
}

std::string RedisCluster::url() const {
  std::string out = "cluster://";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i) out.push_back(',');
    out.append("127.0.0.1:" + std::to_string(nodes_[i]->port()));
  }
  return out;
}

Result<size_t> RedisCluster::Owner(uint16_t slot) const {
  auto r = Run(*nodes_[FirstRunning()], {"CLUSTER", "SLOTS"});
  if (!r.ok()) return r.status();
  const std::string id = SlotOwnerId(*r, slot);
  for (size_t n = 0; !id.empty() && n < ids_.size(); ++n) {
    if (ids_[n] == id) return n;
  }
  return Status::NotFound("no node serves slot " + std::to_string(slot));
}

Status RedisCluster::AwaitConsistent(std::chrono::milliseconds timeout) const {
  return PollFor(
      [this](std::string* last) {
        std::string first;
        bool have_first = false;
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (!nodes_[i]->running()) continue;
          const std::string who = "node " + std::to_string(i) + ": ";
          auto info = nodes_[i]->Call({"CLUSTER", "INFO"}, 500);
          std::string state =
              info.ok() && info->type == RedisReply::Type::kString
                  ? InfoField(info->str, "cluster_state")
                  : "no answer";
          if (state != "ok") {
            *last = who + "cluster_state:" + state;
            return false;
          }
          std::string mine = SlotSignature(*nodes_[i]);
          if (!have_first) {
            first = mine;
            have_first = true;
          }
          if (mine.empty() || mine != first) {
            *last = who + "slots " + mine + "; first live node: " + first;
            return false;
          }
        }
        return true;
      },
      timeout, "a consistent cluster");
}

Status RedisCluster::AwaitOwner(uint16_t slot, size_t node,
                                std::chrono::milliseconds timeout) const {
  if (node >= nodes_.size()) return Status::InvalidArgument("no such node");
  return PollFor(
      [&](std::string* last) {
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (!nodes_[i]->running()) continue;
          auto r = nodes_[i]->Call({"CLUSTER", "SLOTS"}, 500);
          if (!r.ok() || r->type != RedisReply::Type::kArray) {
            *last = "node " + std::to_string(i) + ": no CLUSTER SLOTS";
            return false;
          }
          const std::string owner = SlotOwnerId(*r, slot);
          if (owner != ids_[node]) {
            *last = "node " + std::to_string(i) + " says " +
                    (owner.empty() ? "none" : owner);
            return false;
          }
        }
        return true;
      },
      timeout,
      "node " + std::to_string(node) + " owning slot " + std::to_string(slot));
}

Status RedisCluster::BeginMigration(uint16_t slot, size_t to) {
  if (migration_) {
    return Status::InvalidArgument("slot " + std::to_string(migration_->slot) +
                                   " is still being migrated");
  }
  if (to >= nodes_.size()) return Status::InvalidArgument("no such node");
  if (replicas_per_primary() > 0) {
    // FinishMigration's CLUSTER SETSLOT NODE goes to every node, and Redis
    // refuses SETSLOT on a replica.
    return Status::InvalidArgument(
        "slot migration needs a cluster without replicas");
  }
  auto from = Owner(slot);
  if (!from.ok()) return from.status();
  if (*from == to) {
    return Status::InvalidArgument("slot " + std::to_string(slot) +
                                   " is already on node " + std::to_string(to));
  }
  const std::string s = std::to_string(slot);
  auto r =
      Run(*nodes_[to], {"CLUSTER", "SETSLOT", s, "IMPORTING", ids_[*from]});
  if (!r.ok()) return r.status();
  r = Run(*nodes_[*from], {"CLUSTER", "SETSLOT", s, "MIGRATING", ids_[to]});
  if (!r.ok()) return r.status();
  migration_ = Migration{slot, *from, to};
  return Status::OK();
}

Result<int> RedisCluster::MoveKeys(int max) {
  if (!migration_) return Status::InvalidArgument("no migration begun");
  const Migration m = *migration_;
  const RedisServer& source = *nodes_[m.from];
  const std::string password = source.admin_auth().password;
  int moved = 0;
  while (moved < max) {
    const int page = std::min(kMigratePage, max - moved);
    auto keys = Run(source, {"CLUSTER", "GETKEYSINSLOT", std::to_string(m.slot),
                             std::to_string(page)});
    if (!keys.ok()) return keys.status();
    if (keys->elements.empty()) break;
    std::vector<std::string> args = {
        "MIGRATE", "127.0.0.1", std::to_string(nodes_[m.to]->port()),
        "",        "0",         "5000"};
    if (!password.empty()) args.insert(args.end(), {"AUTH", password});
    args.push_back("KEYS");
    for (const RedisReply& key : keys->elements) args.push_back(key.str);
    auto r = Run(source, args);
    if (!r.ok()) return r.status();
    moved += static_cast<int>(keys->elements.size());
  }
  return moved;
}

Status RedisCluster::FinishMigration() {
  auto rest = MoveKeys(INT_MAX);
  if (!rest.ok()) return rest.status();
  const Migration m = *migration_;
  const std::vector<std::string> args = {
      "CLUSTER", "SETSLOT", std::to_string(m.slot), "NODE", ids_[m.to]};
  // The target first (it bumps its config epoch), then the source (which
  // stops answering ASK), then everyone else.
  std::vector<size_t> order = {m.to, m.from};
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i != m.to && i != m.from) order.push_back(i);
  }
  for (size_t i : order) {
    auto r = Run(*nodes_[i], args);
    if (!r.ok()) return r.status();
  }
  migration_.reset();
  return AwaitConsistent(kSlotSettleTimeout);
}

Status RedisCluster::MigrateSlot(uint16_t slot, size_t to) {
  if (Status s = BeginMigration(slot, to); !s.ok()) return s;
  return FinishMigration();
}

std::string RedisCluster::LogTails() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += "--- node " + std::to_string(i) +
           " (127.0.0.1:" + std::to_string(nodes_[i]->port()) + "):\n" +
           nodes_[i]->LogTail();
  }
  return out;
}

}  // namespace yard
