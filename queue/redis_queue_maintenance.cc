// Maintenance, run from Tick: lease touches, the leader's work (promoting
// delayed jobs, reaping expired leases, requeueing what dead brokers held),
// this broker's registry record, and the cached queue stats.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "queue/redis_queue_impl.h"
#include "registry/registry.h"

namespace yard::redis_queue_internal {

void RedisQueue::Touch(int64_t now) {
  // Often enough that a live broker's records never look idle for a
  // registry TTL (FindDeadConsumers), and at least thrice per lease.
  next_touch_ms_ = now + std::max<int64_t>(1, std::min(o_.lease_ms / 3,
                                                       o_.registry_ttl_ms / 2));
  if (entries_.empty()) return;
  // The lease holder finds cancels recorded by other brokers.
  if (cancels_recorded_) {
    std::vector<JobId> ids;
    ids.reserve(leases_.size());
    for (const auto& [id, lease] : leases_) ids.push_back(id);
    CheckCancels(std::move(ids));
  }
  std::array<std::vector<EntryId>, kLevels> held;
  std::vector<std::string> locks;
  for (const auto& [eid, e] : entries_) {
    held[e.pri].push_back(eid);
    if (!e.lock_key.empty() && !e.locking) {
      locks.push_back(e.lock_key);
      locks.push_back(keys_.stream[e.pri] + "|" + eid.ToString());
    }
  }
  for (int p = 0; p < kLevels; ++p) {
    for (size_t i = 0; i < held[p].size(); i += kTouchChunk) {
      auto chunk = std::make_shared<std::vector<EntryId>>(
          held[p].begin() + i,
          held[p].begin() + std::min(held[p].size(), i + kTouchChunk));
      std::vector<std::string> args = {"XCLAIM", keys_.stream[p], kRedisGroup,
                                       consumer_, "0"};
      for (const EntryId& e : *chunk) args.push_back(e.ToString());
      args.push_back("JUSTID");
      Send(std::move(args), [this, chunk](Result<RedisReply> r) {
        if (r.ok()) OnTouched(*chunk, *r);
      });
    }
  }
  if (!locks.empty()) {
    std::vector<std::string> args = keys_.Fcall("yard_touch_locks");
    args.push_back(std::to_string(o_.lease_ms));
    args.insert(args.end(), locks.begin(), locks.end());
    Send(std::move(args), nullptr);
  }
}

void RedisQueue::OnTouched(const std::vector<EntryId>& sent,
                           const RedisReply& reply) {
  // One chunk is one stream's entries.
  const uint8_t stream = sent.empty() ? 0 : sent.front().stream;
  std::vector<EntryId> kept;
  kept.reserve(reply.elements.size());
  for (const RedisReply& e : reply.elements) {
    if (auto id = EntryId::Parse(e.str)) {
      id->stream = stream;
      kept.push_back(*id);
    }
  }
  std::sort(kept.begin(), kept.end());
  for (const EntryId& entry : sent) {
    if (std::binary_search(kept.begin(), kept.end(), entry)) continue;
    auto e = entries_.find(entry);
    if (e == entries_.end()) continue;  // acked meanwhile
    // Reclaimed by the leader (this broker was too slow): its jobs run
    // again under a new entry id; forget this copy.
    ++c_.leases_lost;
    Forget(e);
  }
}

void RedisQueue::Lead(int64_t now) {
  next_lead_ms_ = now + std::max<int64_t>(1, o_.lease_ms / 6);
  auto args = keys_.Fcall("yard_lead");
  args.push_back(token_);
  args.push_back(std::to_string(std::max<int64_t>(2, o_.lease_ms / 2)));
  Send(std::move(args), [this](Result<RedisReply> r) {
    if (!r.ok()) return;
    const bool lead = r->integer > 0;
    if (lead && !leader_) {
      spdlog::info("this broker leads maintenance of queue '{}' (fence {})",
                   o_.queue, r->integer);
    } else if (!lead && leader_) {
      spdlog::warn("lost the maintenance lead of queue '{}'", o_.queue);
    }
    leader_ = lead;
    if (lead) fence_ = r->integer;
  });
}

void RedisQueue::Promote(int64_t now) {
  next_promote_ms_ = now + kPromoteEveryMs;
  auto args = keys_.Fcall("yard_promote");
  args.push_back(std::to_string(kMaintenanceBatch));
  Send(std::move(args), [this](Result<RedisReply> r) {
    if (r.ok()) c_.promoted += static_cast<uint64_t>(r->integer);
  });
}

void RedisQueue::Reap(int64_t now) {
  next_reap_ms_ = now + std::max<int64_t>(1, o_.lease_ms / 4);
  auto args = keys_.Fcall("yard_reap");
  args.push_back(kRedisGroup);
  args.push_back(std::to_string(o_.lease_ms));
  args.push_back(std::to_string(kMaintenanceBatch));
  args.push_back(std::to_string(o_.max_expiries));
  Send(std::move(args), [this](Result<RedisReply> r) {
    if (!r.ok() || r->elements.size() != 3) return;
    int64_t requeued = r->elements[0].integer, dead = r->elements[1].integer,
            vanished = r->elements[2].integer;
    c_.reclaimed += static_cast<uint64_t>(requeued);
    if (requeued || dead || vanished) {
      spdlog::warn(
          "expired leases: {} records requeued, {} dead-lettered, {} "
          "vanished",
          requeued, dead, vanished);
    }
  });
  // Result buckets past the TTL are gone (EXPIRE); drop them from the list.
  const int64_t oldest =
      (UnixMillis() / 1000 - o_.result_ttl_s) / kResultBucketSeconds - 1;
  Send({"ZREMRANGEBYSCORE", keys_.result_buckets, "-inf",
        std::to_string(oldest)},
       nullptr);
}

void RedisQueue::Advertise(const nlohmann::json& record) {
  nlohmann::json r = record;
  r["id"] = consumer_;
  r["queue"] = o_.queue;
  // (Worker names and labels come from the network: invalid UTF-8 is
  // replaced, not thrown.)
  record_ = r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  WriteRecord(MonoMillis());
}

// This broker's record in the registry (registry/registry.h): written on
// connect (before the first claim, so the leader never takes a live
// broker for a dead one), on every Advertise and at least every third of
// its TTL.
void RedisQueue::WriteRecord(int64_t now) {
  if (!up_) return;
  next_record_ms_ = now + std::max<int64_t>(1, o_.registry_ttl_ms / 3);
  if (record_.empty()) {
    record_ = nlohmann::json{{"id", consumer_}, {"queue", o_.queue}}.dump();
  }
  RegistrySend({"SET", RegistryKey(consumer_), record_, "PX",
                std::to_string(o_.registry_ttl_ms)},
               nullptr);
  RegistrySend({"SADD", kRegistrySet, consumer_}, nullptr);
}

// Leader: consumers of the group that hold records but have no registry
// record (their broker died or was cut off for a whole TTL) and have not
// touched Redis for a TTL either: requeue what they hold now.
void RedisQueue::FindDeadConsumers(int64_t now) {
  next_dead_ms_ = now + std::max<int64_t>(1, o_.registry_ttl_ms / 3);
  // After an outage every record may have expired: give the other brokers
  // time to reconnect (their backoff) and write theirs first.
  if (now - connected_at_ms_ < o_.registry_ttl_ms + kReconnectMaxMs) return;
  if (dead_check_pending_) return;
  dead_check_pending_ = true;
  struct Acc {
    int left = kLevels;
    bool failed = false;
    std::map<std::string, int64_t> idle;  // holders -> least idle ms
  };
  auto acc = std::make_shared<Acc>();
  for (int p = 0; p < kLevels; ++p) {
    Send({"XINFO", "CONSUMERS", keys_.stream[p], kRedisGroup},
         [this, acc](Result<RedisReply> r) {
           if (!r.ok()) {
             acc->failed = true;
           } else {
             for (const RedisReply& c : r->elements) {
               std::string name;
               int64_t pending = 0, idle = 0;
               for (size_t i = 0; i + 1 < c.elements.size(); i += 2) {
                 const std::string& k = c.elements[i].str;
                 const RedisReply& v = c.elements[i + 1];
                 if (k == "name") name = v.str;
                 if (k == "pending") pending = v.integer;
                 if (k == "idle") idle = v.integer;
               }
               if (pending == 0 || name.empty() || name == consumer_ ||
                   name.starts_with("__")) {
                 continue;
               }
               auto [it, fresh] = acc->idle.emplace(name, idle);
               if (!fresh) it->second = std::min(it->second, idle);
             }
           }
           if (--acc->left > 0) return;
           if (acc->failed || acc->idle.empty()) {
             dead_check_pending_ = false;
             return;
           }
           CheckRegistered(std::move(acc->idle));
         });
  }
}

void RedisQueue::CheckRegistered(std::map<std::string, int64_t> holders) {
  std::vector<std::string> args = {"MGET"};
  std::vector<std::string> names;
  for (const auto& [name, idle] : holders) {
    if (idle < o_.registry_ttl_ms) continue;  // active: alive
    args.push_back(RegistryKey(name));
    names.push_back(name);
  }
  if (names.empty()) {
    dead_check_pending_ = false;
    return;
  }
  RegistrySend(std::move(args), [this, names](Result<RedisReply> r) {
    dead_check_pending_ = false;
    if (!r.ok() || r->elements.size() != names.size()) return;
    for (size_t i = 0; i < names.size(); ++i) {
      if (r->elements[i].is_nil()) ReapConsumer(names[i]);
    }
  });
}

void RedisQueue::ReapConsumer(const std::string& who) {
  auto args = keys_.Fcall("yard_reap_consumer");
  args.push_back(kRedisGroup);
  args.push_back(who);
  args.push_back(std::to_string(kMaintenanceBatch));
  args.push_back(std::to_string(o_.max_expiries));
  // Only records nobody touched for a TTL (a live broker touches its own
  // every TTL/2): a broker that is back takes its records with it.
  args.push_back(std::to_string(o_.registry_ttl_ms));
  Send(std::move(args), [this, who](Result<RedisReply> r) {
    if (!r.ok() || r->elements.size() != 4) {
      if (!r.ok()) {
        spdlog::warn("requeueing the records of dead broker {}: {}", who,
                     r.status().ToString());
      }
      return;
    }
    const int64_t requeued = r->elements[0].integer,
                  dead = r->elements[1].integer,
                  vanished = r->elements[2].integer,
                  left = r->elements[3].integer;
    c_.reclaimed += static_cast<uint64_t>(requeued);
    ++c_.dead_brokers;
    spdlog::warn(
        "broker {} is gone from the registry: {} of its records requeued "
        "now, {} dead-lettered, {} vanished{}",
        who, requeued, dead, vanished, left ? " (more to come)" : "");
    if (left) next_dead_ms_ = 0;  // the next page at the next turn
  });
}

void RedisQueue::RefreshStats(int64_t now) {
  next_stats_ms_ = now + kStatsEveryMs;
  if (stats_pending_) return;
  stats_pending_ = true;
  // len, pending, delayed, dead, queued
  auto acc = std::make_shared<std::array<int64_t, 5>>();
  for (int p = 0; p < kLevels; ++p) {
    Send({"XLEN", keys_.stream[p]}, [acc](Result<RedisReply> r) {
      if (r.ok()) (*acc)[0] += r->integer;
    });
    Send({"XPENDING", keys_.stream[p], kRedisGroup},
         [acc](Result<RedisReply> r) {
           if (r.ok() && !r->elements.empty()) {
             (*acc)[1] += r->elements[0].integer;
           }
         });
  }
  Send({"ZCARD", keys_.delayed}, [acc](Result<RedisReply> r) {
    if (r.ok()) (*acc)[2] = r->integer;
  });
  Send({"XLEN", keys_.dead}, [acc](Result<RedisReply> r) {
    if (r.ok()) (*acc)[3] = r->integer;
  });
  Send({"HGET", keys_.stats, "queued"}, [this, acc](Result<RedisReply> r) {
    stats_pending_ = false;
    if (r.ok() && r->type == RedisReply::Type::kString) {
      int64_t q = 0;
      std::from_chars(r->str.data(), r->str.data() + r->str.size(), q);
      (*acc)[4] = q;
    }
    cached_ready_ = std::max<int64_t>(0, (*acc)[0] - (*acc)[1]);
    cached_running_ = (*acc)[1];
    cached_delayed_ = (*acc)[2];
    cached_dead_ = (*acc)[3];
    cached_queued_ = static_cast<size_t>(std::max<int64_t>(0, (*acc)[4]));
  });
  ++c_.round_trips;
}

}  // namespace yard::redis_queue_internal
