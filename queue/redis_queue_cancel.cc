// Cancels across brokers (P cx, queue/redis_layout.h): a broker that does
// not hold a job records the cancel there (yard_cancel), and the broker
// that holds or claims the job finds it when it claims and when it renews
// its leases, checks the owner on the record, and finishes the job
// Cancelled: a job still buffered here is finished at once; a dispatched one
// goes to the broker (CancelSink), which recalls it from its worker. The
// owner gets the Cancelled result (stored for yard result, forwarded to the
// accepting broker) and the canceller a copy.
//
// Cost when nobody cancels: the hash's length is read with the controls
// (one more pipelined command every kControlEveryMs, no extra round trip);
// while it is 0, claims and lease renewals send nothing more.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "queue/redis_queue_impl.h"

namespace yard::redis_queue_internal {
namespace {

// A cancel record's value is a few short strings: anything longer is not
// one of ours.
constexpr size_t kMaxCancelRecordBytes = 4096;

std::optional<CancelRecord> ParseCancelRecord(std::string_view value) {
  if (value.empty() || value.size() > kMaxCancelRecordBytes) {
    return std::nullopt;
  }
  const nlohmann::json j = nlohmann::json::from_msgpack(
      value, /*strict=*/true, /*allow_exceptions=*/false);
  if (!j.is_array() || j.size() < 4) return std::nullopt;
  for (size_t i = 0; i < 4; ++i) {
    if (!j[i].is_string()) return std::nullopt;
  }
  CancelRecord r;
  r.admin = j[0].get_ref<const std::string&>() == "1";
  r.key = j[1].get<std::string>();
  r.broker = j[2].get<std::string>();
  r.route = j[3].get<std::string>();
  return r;
}

// The rule of may_cancel in redis_functions.lua.
bool MayCancel(const CancelRecord& c, const Entry& e) {
  if (c.admin) return true;
  if (!e.owner_key.empty()) return !c.key.empty() && c.key == e.owner_key;
  return !c.broker.empty() && c.broker == e.owner && c.route == e.route;
}

}  // namespace

void RedisQueue::SetCancelSink(CancelSink sink) {
  cancel_sink_ = std::move(sink);
}

std::string_view RedisQueue::OwnerKey(const JobId& id) const {
  auto l = leases_.find(id);
  if (l == leases_.end()) return {};
  auto e = entries_.find(l->second.entry);
  return e == entries_.end() ? std::string_view()
                             : std::string_view(e->second.owner_key);
}

void RedisQueue::RequestCancel(std::span<const JobId> ids, const Canceller& who,
                               CancelCallback done) {
  if (!up_) {
    std::vector<CancelAnswer> out(ids.size(), CancelAnswer::kUnavailable);
    done(out);
    return;
  }
  std::vector<std::string> args = keys_.Fcall("yard_cancel");
  args.push_back(std::to_string(kMaxCancels));
  args.push_back(std::to_string(kCancelTtlMs));
  args.push_back(who.admin ? "1" : "0");
  args.push_back(who.key);
  args.push_back(consumer_);
  args.push_back(who.route);
  for (const JobId& id : ids) args.push_back(id.ToString());
  cancels_recorded_ = true;  // check our own leases without waiting
  ++c_.commands;
  Send(std::move(args),
       [n = ids.size(), done = std::move(done)](Result<RedisReply> r) {
         std::vector<CancelAnswer> out(n, CancelAnswer::kUnavailable);
         if (r.ok() && r->elements.size() == n) {
           for (size_t i = 0; i < n; ++i) {
             const std::string& s = r->elements[i].str;
             out[i] = s == "REQUESTED"   ? CancelAnswer::kRequested
                      : s == "FORBIDDEN" ? CancelAnswer::kForbidden
                      : s == "FULL"      ? CancelAnswer::kFull
                                         : CancelAnswer::kUnavailable;
           }
         } else if (!r.ok()) {
           spdlog::warn("redis: recording a cancel failed: {}",
                        r.status().ToString());
         }
         done(out);
       });
}

void RedisQueue::CheckCancels(std::vector<JobId> ids) {
  if (!cancels_recorded_ || ids.empty() || !up_) return;
  for (size_t i = 0; i < ids.size(); i += kTouchChunk) {
    auto chunk = std::make_shared<std::vector<JobId>>(
        ids.begin() + static_cast<ptrdiff_t>(i),
        ids.begin() +
            static_cast<ptrdiff_t>(std::min(ids.size(), i + kTouchChunk)));
    std::vector<std::string> args = {"HMGET", keys_.cancels};
    for (const JobId& id : *chunk) args.push_back(id.ToString());
    Send(std::move(args), [this, chunk](Result<RedisReply> r) {
      if (r.ok() && r->elements.size() == chunk->size()) {
        OnCancelRecords(*chunk, *r);
      }
    });
  }
}

void RedisQueue::OnCancelRecords(const std::vector<JobId>& ids,
                                 const RedisReply& reply) {
  std::vector<std::string> done = {"HDEL", keys_.cancels};
  for (size_t i = 0; i < ids.size(); ++i) {
    const RedisReply& v = reply.elements[i];
    if (v.type != RedisReply::Type::kString) continue;
    auto l = leases_.find(ids[i]);
    if (l == leases_.end()) continue;  // finished meanwhile
    auto e = entries_.find(l->second.entry);
    if (e == entries_.end()) continue;
    done.push_back(ids[i].ToString());
    const std::optional<CancelRecord> c = ParseCancelRecord(v.str);
    if (!c || !MayCancel(*c, e->second)) {
      ++c_.cancels_refused;
      spdlog::warn("redis: a recorded cancel of {} is not its owner's{}",
                   ids[i].ToString(), c ? "" : " (unreadable)");
      continue;
    }
    CancelLeased(l, *c);
  }
  if (done.size() > 2) Send(std::move(done), nullptr);
}

// Finishes a job this broker holds as Cancelled, and tells the canceller.
void RedisQueue::CancelLeased(LeaseMap::iterator l, const CancelRecord& c) {
  const JobId id = l->first;
  const Entry& entry = entries_.at(l->second.entry);
  const bool canceller_owns = c.broker == entry.owner && c.route == entry.route;
  const uint16_t attempt = entry.attempt;
  if (l->second.dispatched) {
    // The broker recalls it from its worker and completes it Cancelled.
    if (!cancel_sink_ || !cancel_sink_(id)) return;
  } else {
    const std::string route = entry.route;
    const bool local = entry.inbox.empty();
    Bytes r = writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                                   "cancelled before it started", attempt, 0);
    const std::string result(AsView(r));  // the writer's buffer is reused
    FinishJob(l, AsBytes(result), Outcome::kCancelled, 0);
    if (local && sink_) sink_(route, AsBytes(result));
  }
  ++c_.cancelled;
  if (canceller_owns || c.route.empty()) return;
  Bytes copy = writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                                    "cancelled", attempt, 0);
  if (c.broker == consumer_) {
    if (sink_) sink_(c.route, copy);
    return;
  }
  auto& fw = batch_.forwards[keys_.Inbox(c.broker)];
  fw.push_back("r");
  fw.push_back(c.route);
  fw.push_back("p");
  fw.emplace_back(AsView(copy));
}

}  // namespace yard::redis_queue_internal
