// The queue's connections: commands on the main and registry connections,
// connecting (and reconnecting) to the primary, and what losing Redis does.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/redis_queue_impl.h"
#include "registry/registry.h"

namespace yard::redis_queue_internal {
namespace {

// A redirect or refusal that a slot migration (or a failover) causes.
bool IsSlotMoving(std::string_view why) {
  for (std::string_view w : {"ASK ", "MOVED ", "TRYAGAIN", "CLUSTERDOWN",
                             "UNBLOCKED", "non local key"}) {
    if (why.find(w) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

// A command on the main connection. An Unavailable answer (the
// connection broke, or in a Cluster the slot moved) marks it lost before
// `done` (if any) sees the answer.
void RedisQueue::Send(std::vector<std::string> args,
                      RedisClient::Callback done) {
  ++c_.commands;
  main_->Command(
      std::move(args), [this, done = std::move(done)](Result<RedisReply> r) {
        if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
          Lost(r.status().message());
        }
        if (done) done(std::move(r));
      });
}

// Where the registry (registry/registry.h, the "{yard}" slot) is: the main
// connection, or in a Cluster a connection of its own (null while down).
RedisClient* RedisQueue::Registry() const {
  return registry_target_ ? registry_.get() : main_.get();
}

// A registry command. In a Cluster the registry's slot may be on another
// primary than the shard's: its failure only makes the registry
// connection reconnect (TickRegistry); the shard serves on. Meanwhile the
// record is not refreshed (a live broker still touches its leases, so no
// leader reaps it) and this leader reaps no one.
void RedisQueue::RegistrySend(std::vector<std::string> args,
                              RedisClient::Callback done) {
  if (!registry_target_) return Send(std::move(args), std::move(done));
  if (!registry_ || !registry_->connected()) {
    registry_lost_ = true;
    if (done) done(Status::Unavailable("registry connection down"));
    return;
  }
  ++c_.commands;
  registry_->Command(
      std::move(args), [this, done = std::move(done)](Result<RedisReply> r) {
        if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
          registry_lost_ = true;
        }
        if (done) done(std::move(r));
      });
}

// Cluster: (re)connects the registry's connection, with its own backoff.
void RedisQueue::TickRegistry(int64_t now) {
  if (registry_ && registry_->connected() && !registry_lost_) return;
  if (now < next_registry_connect_ms_) return;
  registry_.reset();  // answers its pending commands
  registry_lost_ = false;
  auto c = ConnectRedisTarget(*registry_target_, ReconnectBudgetMs());
  if (!c.ok()) {
    if (registry_backoff_ms_ == kReconnectMinMs) {
      spdlog::warn("redis: the registry's slot ({}) is unreachable: {}",
                   registry_target_->key, c.status().ToString());
    }
    registry_backoff_ms_ = std::min(kReconnectMaxMs, registry_backoff_ms_ * 2);
    next_registry_connect_ms_ = now + registry_backoff_ms_;
    return;
  }
  registry_ = std::move(c).value();
  registry_backoff_ms_ = kReconnectMinMs;
  WriteRecord(now);
}

// A connection whose oldest command is past its deadline counts as lost:
// a Redis that stopped answering (hung, paused, overloaded, a partition
// that dropped packets silently) is treated as one that closed.
void RedisQueue::CheckDeadlines(int64_t now) {
  for (RedisClient* c : {main_.get(), claim_.get(), inbox_.get()}) {
    if (c != nullptr && c->Overdue(now)) {
      Lost("no reply within " + std::to_string(c->command_timeout_ms()) +
           " ms");
      break;
    }
  }
  if (registry_target_ && registry_ && registry_->Overdue(now)) {
    registry_lost_ = true;
  }
}

int64_t RedisQueue::ReconnectBudgetMs() const {
  return std::min(kReconnectBudgetMs, RedisTimeoutMs());
}

// Marks the connection lost; Tick tears it down (not from inside a
// callback, where the clients are still in use).
void RedisQueue::Lost(const std::string& why) {
  if (!lost_) lost_reason_ = why;
  lost_ = true;
}

void RedisQueue::Down(const std::string& why, int64_t now) {
  // In a Cluster, a slot on the move makes a shard reconnect every
  // backoff until the move ends: say so once per move, not every time.
  const bool moving =
      target_.kind == RedisTarget::Kind::kCluster && IsSlotMoving(why);
  if (!moving) {
    spdlog::warn(
        "redis down: {}:{} ({}); submits get Unavailable until it is back",
        address_.host, address_.port, why);
  } else if (now - last_moving_log_ms_ > kMovingLogEveryMs) {
    spdlog::warn(
        "redis {}:{}: the slot of {{{}}} is moving ({}); this shard "
        "reconnects until it has settled, and its submits go to the others",
        address_.host, address_.port, keys_.tag, why);
  }
  if (moving) last_moving_log_ms_ = now;
  up_ = false;
  down_reason_ = why;
  leader_ = false;
  // Destroying the clients answers their pending commands (Unavailable):
  // push batches report it, write batches go to replay_.
  main_.reset();
  claim_.reset();
  inbox_.reset();
  claiming_ = reading_inbox_ = stats_pending_ = dedupe_pending_ = false;
  lost_ = false;
  lost_reason_.clear();
  reconnect_backoff_ms_ = kReconnectMinMs;
  next_connect_ms_ = now + reconnect_backoff_ms_;
}

// While Redis is down: true once it is connected again. A direct target is
// probed first without blocking (a PING on a connection the loop drives,
// one at most every backoff): only a Redis that answered gets the blocking
// Connect, so one that hangs or is unreachable costs the loop nothing.
// Sentinel and Cluster targets go straight to Connect, whose resolution
// finds where the primary is now (blocking, bounded by the budget).
bool RedisQueue::Reconnect(int64_t now) {
  if (target_.kind == RedisTarget::Kind::kDirect && !probe_answered_) {
    if (!probe_) {
      if (now < next_connect_ms_) return false;
      auto begun = RedisClient::Begin(address_);
      if (!begun.ok()) {
        BackOff();
        return false;
      }
      probe_ = std::move(begun).value();
      probe_deadline_ms_ = now + probe_->command_timeout_ms();
      // Any answer but a lost connection (a NOAUTH or LOADING too) says
      // the server is awake.
      probe_->Command({"PING"}, [this](Result<RedisReply> r) {
        if (r.ok() || r.status().code() != StatusCode::kUnavailable ||
            r.status().message().find("LOADING") != std::string::npos) {
          probe_answered_ = true;
        }
      });
      return false;
    }
    if (now > probe_deadline_ms_ || probe_->fd() < 0) {
      probe_.reset();
      BackOff();
    }
    return false;
  }
  if (!probe_answered_ && now < next_connect_ms_) return false;
  probe_.reset();
  probe_answered_ = false;
  if (!Connect(ReconnectBudgetMs()).ok()) {
    BackOff();
    return false;
  }
  return true;
}

// The next reconnect attempt, counted from the end of this one: the loop
// gets its turns in between.
void RedisQueue::BackOff() {
  reconnect_backoff_ms_ = std::min(kReconnectMaxMs, reconnect_backoff_ms_ * 2);
  next_connect_ms_ = MonoMillis() + reconnect_backoff_ms_;
}

// Resolves, connects the three clients and sets the queue up, all within
// timeout_ms.
Status RedisQueue::Connect(int64_t timeout_ms) {
  const int64_t deadline = MonoMillis() + timeout_ms;
  auto left = [deadline] {
    return std::max<int64_t>(1, deadline - MonoMillis());
  };
  auto primary = ResolveRedisTarget(target_, timeout_ms);
  if (!primary.ok()) return primary.status();
  if (primary->host != address_.host || primary->port != address_.port) {
    if (target_.kind == RedisTarget::Kind::kSentinel) {
      spdlog::warn("redis primary of {} is {}:{}{}", target_.ToString(),
                   primary->host, primary->port,
                   address_.host.empty()
                       ? std::string()
                       : " (was " + address_.host + ":" +
                             std::to_string(address_.port) + ")");
    }
    address_ = std::move(primary).value();
  }
  auto main = RedisClient::Connect(address_, left());
  if (!main.ok()) return main.status();
  if (auto s = EnsureQueue(**main, keys_, left()); !s.ok()) return s;
  auto claim = RedisClient::Connect(address_, left());
  if (!claim.ok()) return claim.status();
  auto inbox = RedisClient::Connect(address_, left());
  if (!inbox.ok()) return inbox.status();
  main_ = std::move(main).value();
  claim_ = std::move(claim).value();
  inbox_ = std::move(inbox).value();
  if (!down_reason_.empty()) {
    ++c_.reconnects;
    // A claim whose reply died with the connection left its records in
    // this consumer's pending list; read them back now rather than wait a
    // lease for the leader to reap them.
    for (std::string& from : reread_from_) from = "0";
  }
  up_ = true;
  connected_at_ms_ = MonoMillis();
  last_claim_empty_ = false;
  last_bucket_ = -1;
  if (registry_target_) {
    next_registry_connect_ms_ = 0;
    TickRegistry(MonoMillis());  // writes the record once connected
  }
  WriteRecord(MonoMillis());
  ReadInbox();
  return Status::OK();
}

Status RedisQueue::CheckFsync() {
  auto r = RedisCall(*main_, {"CONFIG", "GET", "append*"}, 2000);
  if (!r.ok()) {
    return Status::InvalidArgument(
        "--require-fsync: cannot read Redis's AOF settings: " +
        r.status().message());
  }
  std::string appendonly, appendfsync;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    if (r->elements[i].str == "appendonly") {
      appendonly = r->elements[i + 1].str;
    }
    if (r->elements[i].str == "appendfsync") {
      appendfsync = r->elements[i + 1].str;
    }
  }
  if (appendonly != "yes" || appendfsync != "always") {
    return Status::InvalidArgument(
        "--require-fsync: Redis has appendonly " + appendonly +
        ", appendfsync " + appendfsync +
        "; accepted jobs are fsynced only with appendonly yes and "
        "appendfsync always");
  }
  return Status::OK();
}

// Whether a slot move was logged within the last kMovingLogEveryMs.
bool RedisQueue::now_moving() const {
  return MonoMillis() - last_moving_log_ms_ <= kMovingLogEveryMs;
}

}  // namespace yard::redis_queue_internal
