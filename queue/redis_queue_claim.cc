// Claims: XREADGROUP on the claim connection, the read-back of this
// consumer's pending entries after a reconnect, per-key locks, the local
// buffer the broker dispatches from, giving records back when draining, and
// the inbox of results other brokers forward here.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/priority_levels.h"
#include "queue/redis_queue_impl.h"

namespace yard::redis_queue_internal {
namespace {

// A field's value in a stream entry's flat [name, value, ...] array (null
// when missing). Non-const: callers may move the value out.
std::string* Field(RedisReply& fields, std::string_view name) {
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    if (fields.elements[i].str == name) return &fields.elements[i + 1].str;
  }
  return nullptr;
}

std::string FieldStr(RedisReply& fields, std::string_view name) {
  const std::string* f = Field(fields, name);
  return f ? *f : std::string();
}

}  // namespace

void RedisQueue::Claim(size_t max, ClaimCallback done) {
  claimed_.clear();
  max = Dispatchable(max);
  while (claimed_.size() < max) {
    Lease* l = nullptr;
    JobId id;
    if (!PopBuffered(&id, &l)) break;
    l->dispatched = true;
    const Entry& e = entries_.at(l->entry);
    claimed_.push_back(ClaimedJob{id, AsBytes(l->blob), e.attempt, e.route,
                                  e.owner == consumer_});
  }
  if (control_.rate > 0) tokens_ -= static_cast<int64_t>(claimed_.size());
  if (!claimed_.empty()) done(claimed_);
}

void RedisQueue::Buffer(const JobId& id, Lease& l, bool front) {
  l.buffered = true;
  ++buffered_;
  auto& q = ready_[entries_.at(l.entry).pri];
  if (front) {
    q.push_front(id);
  } else {
    q.push_back(id);
  }
}

// Strict priority (2 first) with the memory queue's anti-starvation rule
// (queue/priority_levels.h).
bool RedisQueue::PopBuffered(JobId* id, Lease** lease) {
  while (buffered_ > 0) {
    const int level = PickLevel(ready_, kStarvationLimit, &starved_);
    if (level < 0) {
      buffered_ = 0;
      return false;
    }
    JobId next = ready_[level].front();
    ready_[level].pop_front();
    auto it = leases_.find(next);
    if (it == leases_.end() || !it->second.buffered || it->second.dispatched) {
      continue;  // stale: finished, lost or given back
    }
    it->second.buffered = false;
    --buffered_;
    *id = next;
    *lease = &it->second;
    return true;
  }
  return false;
}

void RedisQueue::MaybeClaim() {
  if (!up_ || draining_ || claiming_ || !control_known_ || control_.paused) {
    return;
  }
  if (RereadDue()) {
    RereadPending();
    return;
  }
  size_t room = want_ > buffered_ ? want_ - buffered_ : 0;
  if (room == 0) return;
  // Records, not jobs: a record holds a producer's batch. Claim a few
  // records at a time; the buffer refills as soon as workers take jobs.
  const size_t count = std::clamp<size_t>(room / 64, 4, o_.claim_batch);
  std::vector<std::string> args = {"XREADGROUP", "GROUP",
                                   kRedisGroup,  consumer_,
                                   "COUNT",      std::to_string(count)};
  if (last_claim_empty_) {
    args.push_back("BLOCK");
    args.push_back(std::to_string(kClaimBlockMs));
  }
  args.push_back("STREAMS");
  std::vector<int> levels;
  for (int p = kLevels - 1; p >= 0; --p) {
    if (ready_[p].size() < want_) levels.push_back(p);
  }
  if (levels.empty()) return;
  for (int p : levels) args.push_back(keys_.stream[p]);
  for (size_t i = 0; i < levels.size(); ++i) args.push_back(">");
  claiming_ = true;
  ++c_.commands;
  ++c_.round_trips;
  const int64_t blocks_ms = last_claim_empty_ ? kClaimBlockMs : 0;
  claim_->Command(
      std::move(args),
      [this](Result<RedisReply> r) {
        claiming_ = false;
        if (!r.ok()) return ClaimFailed(r.status(), "claim");
        OnClaimed(*r);
      },
      blocks_ms);
}

// A claim or read-back that Redis refused or lost.
void RedisQueue::ClaimFailed(const Status& st, const char* what) {
  if (st.message().find("NOGROUP") != std::string::npos) {
    // The streams were deleted: reconnecting sets them up again.
    Lost("consumer group missing");
  } else if (st.code() == StatusCode::kUnavailable) {
    Lost(st.message());
  } else {
    spdlog::error("redis: {} failed: {}", what, st.ToString());
  }
}

// XREADGROUP from an id returns this consumer's own pending entries after
// it (its history), fields included, a page at a time. OnClaimed skips the
// ones this broker holds, and the ones it finished (acked or forgot) while
// a page was in flight: Redis read those before it saw the ack.
void RedisQueue::RereadPending() {
  rereading_ = true;
  std::vector<std::string> args = {"XREADGROUP", "GROUP",
                                   kRedisGroup,  consumer_,
                                   "COUNT",      std::to_string(kRereadPage),
                                   "STREAMS"};
  std::vector<int> levels;
  for (int p = kLevels - 1; p >= 0; --p) {
    if (!reread_from_[p].empty()) levels.push_back(p);
  }
  for (int p : levels) args.push_back(keys_.stream[p]);
  for (int p : levels) args.push_back(reread_from_[p]);
  claiming_ = true;
  ++c_.commands;
  ++c_.round_trips;
  // On the main connection, after the write batches Flush() resent: an
  // entry acked there is not read back as pending.
  main_->Command(std::move(args), [this](Result<RedisReply> r) {
    claiming_ = false;
    if (!r.ok()) {
      ClaimFailed(r.status(), "reading pending entries back");
      return EndReread();  // a reconnect starts it again
    }
    // The next page of each stream that filled this one.
    for (std::string& from : reread_from_) from.clear();
    if (r->type == RedisReply::Type::kArray) {
      for (const RedisReply& stream : r->elements) {
        if (stream.elements.size() != 2) continue;
        const int pri = LevelOf(stream.elements[0].str);
        const auto& items = stream.elements[1].elements;
        if (pri >= 0 && items.size() >= kRereadPage &&
            !items.back().elements.empty()) {
          reread_from_[pri] = items.back().elements[0].str;
        }
      }
    }
    const size_t before = entries_.size();
    OnClaimed(*r, &reread_skip_);
    if (entries_.size() > before) {
      spdlog::log(
          now_moving() ? spdlog::level::debug : spdlog::level::warn,
          "redis: {} claimed records whose reply was lost are back in hand",
          entries_.size() - before);
    }
    if (!RereadDue()) EndReread();
  });
}

// A page of the read-back is to be read (MaybeClaim sends it).
bool RedisQueue::RereadDue() const {
  return std::any_of(reread_from_.begin(), reread_from_.end(),
                     [](const std::string& f) { return !f.empty(); });
}

void RedisQueue::EndReread() {
  rereading_ = false;
  for (std::string& from : reread_from_) from.clear();
  reread_skip_.clear();
}

int RedisQueue::LevelOf(const std::string& key) const {
  for (int p = 0; p < kLevels; ++p) {
    if (keys_.stream[p] == key) return p;
  }
  return -1;
}

// The record jobs and the commands one claim reply yields.
struct RedisQueue::ClaimPass {
  std::vector<std::string> bury;  // FCALL yard_bury: undecodable records
  std::vector<std::string> lock;  // FCALL yard_lock: records with a lock key
  size_t bury_base = 0, lock_base = 0;  // their arguments before any record
  std::shared_ptr<std::vector<EntryId>> locking;  // the records in `lock`
  std::vector<RecordJob> jobs;  // the jobs of the record being taken
  std::vector<JobId> leased;    // while cancels are recorded: to check
};

// `skip`: entries not to take (see RereadPending); null for new claims.
void RedisQueue::OnClaimed(RedisReply& reply, const EntrySet* skip) {
  last_claim_empty_ = true;
  if (reply.type != RedisReply::Type::kArray) return;
  ClaimPass pass;
  pass.bury = keys_.Fcall("yard_bury");
  pass.bury.push_back(kRedisGroup);
  pass.lock = keys_.Fcall("yard_lock");
  pass.lock.push_back(kRedisGroup);
  pass.lock.push_back(std::to_string(o_.lease_ms));
  pass.bury_base = pass.bury.size();
  pass.lock_base = pass.lock.size();
  pass.locking = std::make_shared<std::vector<EntryId>>();
  for (RedisReply& stream : reply.elements) {
    if (stream.elements.size() != 2) continue;
    const int pri = LevelOf(stream.elements[0].str);
    if (pri < 0) continue;
    for (RedisReply& item : stream.elements[1].elements) {
      TakeItem(pri, item, skip, pass);
    }
  }
  if (pass.bury.size() > pass.bury_base) Send(std::move(pass.bury), nullptr);
  CheckCancels(std::move(pass.leased));
  if (pass.lock.size() > pass.lock_base) {
    Send(std::move(pass.lock),
         [this, locking = pass.locking](Result<RedisReply> r) {
           OnLocked(*locking, r);
         });
  }
}

// One stream entry of a claim reply: its jobs are leased and buffered, or
// (a record with a lock key) wait for the lock; an entry gone from the
// stream is acked, an undecodable one buried.
void RedisQueue::TakeItem(int pri, RedisReply& item, const EntrySet* skip,
                          ClaimPass& pass) {
  if (item.elements.size() != 2) return;
  last_claim_empty_ = false;
  const std::string& eid_text = item.elements[0].str;
  auto eid = EntryId::Parse(eid_text);
  if (eid) eid->stream = static_cast<uint8_t>(pri);
  // Held already (a read-back), or finished while it was read.
  if (!eid || entries_.contains(*eid) || (skip && skip->count(*eid))) {
    return;
  }
  RedisReply& fields = item.elements[1];
  if (fields.type != RedisReply::Type::kArray) {
    // A pending entry deleted from the stream reads back without
    // fields: nothing to run; take it off the pending list.
    batch_.acks[pri].push_back(eid_text);
    return;
  }
  // The payloads move out of the reply: no copy of the batch.
  std::string* p = Field(fields, "p");
  auto packed = std::make_shared<const std::string>(p ? std::move(*p) : "");
  std::string why = DecodeRecord(FieldStr(fields, "n"), *packed, &pass.jobs);
  if (!why.empty()) {
    ++c_.undecodable;
    spdlog::warn("redis: record {} of {} is undecodable ({}): dead-lettered",
                 eid_text, keys_.stream[pri], why);
    pass.bury.push_back(std::to_string(pri));
    pass.bury.push_back(eid_text);
    pass.bury.push_back(why);
    return;
  }
  auto e = entries_.try_emplace(*eid).first;  // new: checked above
  Entry& entry = e->second;
  FillEntry(entry, pri, fields);
  entry.packed = std::move(packed);
  LeaseJobs(*eid, entry, pass.jobs);
  if (cancels_recorded_) {
    pass.leased.insert(pass.leased.end(), entry.jobs.begin(), entry.jobs.end());
  }
  if (entry.open == 0) {
    AckEntry(e);
    return;
  }
  if (entry.locking) {
    pass.lock.push_back(std::to_string(pri));
    pass.lock.push_back(eid_text);
    pass.lock.push_back(entry.lock_key);
    pass.locking->push_back(*eid);
  }
}

// A new entry's record fields: attempt, lock key, owner, producer.
void RedisQueue::FillEntry(Entry& entry, int pri, RedisReply& fields) {
  entry.pri = static_cast<uint8_t>(pri);
  int a = 0;
  std::string a_text = FieldStr(fields, "a");
  std::from_chars(a_text.data(), a_text.data() + a_text.size(), a);
  entry.attempt = static_cast<uint16_t>(std::clamp(a + 1, 1, 65535));
  entry.lock_key = FieldStr(fields, "k");
  entry.owner = FieldStr(fields, "b");
  if (!entry.owner.empty() && entry.owner != consumer_) {
    entry.inbox = keys_.Inbox(entry.owner);
  }
  entry.route = FieldStr(fields, "r");
  entry.owner_key = FieldStr(fields, "o");
  entry.locking = !entry.lock_key.empty();
}

// Leases the record's jobs to this broker, and buffers them unless the
// record waits for its lock.
void RedisQueue::LeaseJobs(const EntryId& eid, Entry& entry,
                           const std::vector<RecordJob>& jobs) {
  entry.jobs.reserve(jobs.size());
  for (const RecordJob& job : jobs) {
    c_.claimed++;
    const JobId id = FromWire(job.job->id());
    auto [it, inserted] = leases_.try_emplace(id);
    if (!inserted) {
      // A second copy of a job this broker holds (its producer resent
      // it): count it finished rather than run it twice here.
      ++c_.dup_dropped;
      ++batch_.finished;
      continue;
    }
    ++entry.open;
    entry.jobs.push_back(id);
    it->second.entry = eid;
    it->second.blob = job.blob;
    if (!entry.locking) Buffer(id, it->second, /*front=*/false);
  }
}

void RedisQueue::OnLocked(const std::vector<EntryId>& entries,
                          const Result<RedisReply>& r) {
  // (Unavailable, e.g. the slot is migrating: Send has marked the
  // connection lost, and the reconnect reads the records forgotten below
  // back instead of waiting out their leases.)
  for (size_t i = 0; i < entries.size(); ++i) {
    auto e = entries_.find(entries[i]);
    if (e == entries_.end()) continue;
    int64_t got = -1;
    if (r.ok() && i < r->elements.size()) got = r->elements[i].integer;
    if (got == 1) {
      e->second.locking = false;
      for (const JobId& id : e->second.jobs) {
        auto l = leases_.find(id);
        if (l != leases_.end()) Buffer(id, l->second, /*front=*/false);
      }
      continue;
    }
    // Parked behind the lock's holder (0: it left the stream), lease lost
    // (-1), or unknown (Redis lost: the leader reclaims it).
    if (got == 0) ++c_.parked;
    Forget(e);
  }
}

// Drops an entry and its jobs without acking it (someone else owns it
// now, or it left the stream).
void RedisQueue::Forget(EntryMap::iterator e) {
  for (const JobId& id : e->second.jobs) {
    auto l = leases_.find(id);
    if (l == leases_.end() || !(l->second.entry == e->first)) continue;
    if (l->second.buffered) --buffered_;
    leases_.erase(l);
    if (!progress_.empty()) EndProgress(id, /*write_held=*/false);
  }
  if (rereading_) reread_skip_.insert(e->first);
  entries_.erase(e);
}

void RedisQueue::BeginDrain() {
  draining_ = true;
  // Give back records none of whose jobs has started or finished here, so
  // other brokers take them now instead of after a lease.
  std::vector<std::string> args = keys_.Fcall("yard_unclaim");
  args.push_back(kRedisGroup);
  size_t n = 0;
  for (auto e = entries_.begin(); e != entries_.end();) {
    const Entry& entry = e->second;
    bool started = entry.open < entry.jobs.size();
    for (const JobId& id : entry.jobs) {
      auto l = leases_.find(id);
      started |= l != leases_.end() && l->second.dispatched;
    }
    if (started) {
      ++e;
      continue;
    }
    args.push_back(std::to_string(entry.pri));
    args.push_back(e->first.ToString());
    ++n;
    auto next = std::next(e);
    Forget(e);
    e = next;
  }
  if (n && up_) {
    ++writes_;
    ++c_.commands;
    main_->Command(std::move(args), [this, n](Result<RedisReply> r) {
      --writes_;
      // On failure their leases expire and the leader requeues them.
      if (r.ok()) spdlog::info("draining: gave back {} claimed records", n);
    });
  }
}

bool RedisQueue::Drained() const {
  return leases_.empty() && entries_.empty() && batch_.empty() &&
         replay_.empty() && (writes_ == 0 || !up_);
}

void RedisQueue::ReadInbox() {
  if (!up_ || reading_inbox_) return;
  reading_inbox_ = true;
  ++c_.commands;
  inbox_->Command(
      {"XREAD", "COUNT", "512", "BLOCK", std::to_string(kInboxBlockMs),
       "STREAMS", keys_.Inbox(consumer_), inbox_last_},
      [this](Result<RedisReply> r) {
        reading_inbox_ = false;
        if (!r.ok()) {
          if (r.status().code() == StatusCode::kUnavailable) {
            Lost(r.status().message());
          }
          return;
        }
        OnInbox(*r);
        ReadInbox();
      },
      kInboxBlockMs);
}

// Each inbox entry holds results for this broker's producers as pairs of
// fields r (route) and p (JobResult blob).
void RedisQueue::OnInbox(const RedisReply& reply) {
  if (reply.elements.empty() || reply.elements[0].elements.size() != 2) {
    return;
  }
  std::string last;
  for (const RedisReply& entry : reply.elements[0].elements[1].elements) {
    if (entry.elements.size() != 2) continue;
    last = entry.elements[0].str;
    const auto& f = entry.elements[1].elements;
    for (size_t i = 0; i + 3 < f.size(); i += 4) {
      if (f[i].str != "r" || f[i + 2].str != "p" ||
          !VerifiedRoot<wire::JobResult>(f[i + 3].str)) {
        spdlog::warn("redis: inbox entry {} holds a bad result; skipped", last);
        continue;
      }
      if (sink_) sink_(f[i + 1].str, AsBytes(f[i + 3].str));
    }
  }
  if (last.empty()) return;
  inbox_last_ = last;
  if (auto e = EntryId::Parse(last)) {
    EntryId next{e->ms, e->seq + 1, 0};
    Send({"XTRIM", keys_.Inbox(consumer_), "MINID", next.ToString()}, nullptr);
  }
}

}  // namespace yard::redis_queue_internal
