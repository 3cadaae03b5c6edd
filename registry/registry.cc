#include "registry/registry.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "redis/redis_call.h"

namespace yard {

std::string RegistryKey(std::string_view broker_id) {
  return "{yard}:broker:" + std::string(broker_id);
}

Result<std::unique_ptr<RedisClient>> ConnectRegistry(RedisTarget& target,
                                                     int64_t timeout_ms) {
  target.key = kRegistryHashTag;
  return ConnectRedisTarget(target, timeout_ms);
}

namespace {

// Reads j[key] into *out when present; false when it has another type.
bool Field(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}
bool Field(const nlohmann::json& j, const char* key, bool* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_boolean()) return false;
  *out = it->get<bool>();
  return true;
}
bool Field(const nlohmann::json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number_integer()) return false;
  *out = it->get<int64_t>();
  return true;
}
bool Field(const nlohmann::json& j, const char* key,
           std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_array()) return false;
  for (const auto& e : *it) {
    if (!e.is_string()) return false;
    out->push_back(e.get<std::string>());
  }
  return true;
}
bool Field(const nlohmann::json& j, const char* key,
           std::map<std::string, int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_object()) return false;
  for (const auto& [k, v] : it->items()) {
    if (!v.is_number_integer()) return false;
    (*out)[k] = v.get<int64_t>();
  }
  return true;
}

}  // namespace

Result<BrokerRecord> ParseBrokerRecord(std::string_view id,
                                       std::string_view text) {
  const std::string who = "the record of broker '" + std::string(id) + "'";
  const nlohmann::json j =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Status::InvalidArgument(who + " is not a JSON object");
  }
  BrokerRecord b;
  b.id = std::string(id);
  auto bad = [&](const char* field) {
    return Status::InvalidArgument(who + ": '" + field +
                                   "' does not have the type it should");
  };
  if (!Field(j, "queue", &b.queue)) return bad("queue");
  if (!Field(j, "frontend", &b.frontend)) return bad("frontend");
  if (!Field(j, "backend", &b.backend)) return bad("backend");
  if (!Field(j, "curve_public_key", &b.curve_public_key)) {
    return bad("curve_public_key");
  }
  if (!Field(j, "draining", &b.draining)) return bad("draining");
  if (!Field(j, "held", &b.held)) return bad("held");
  if (!Field(j, "counters", &b.counters)) return bad("counters");
  if (auto it = j.find("workers"); it != j.end()) {
    if (!it->is_array()) return bad("workers");
    for (const auto& w : *it) {
      RegisteredWorker rw;
      if (!w.is_object() || !Field(w, "name", &rw.name) ||
          !Field(w, "capacity", &rw.capacity) ||
          !Field(w, "outstanding", &rw.outstanding) ||
          !Field(w, "tags", &rw.tags) || !Field(w, "taints", &rw.taints)) {
        return bad("workers");
      }
      b.workers.push_back(std::move(rw));
    }
  }
  return b;
}

Result<std::vector<BrokerRecord>> ReadRegistry(RedisClient& client,
                                               int64_t timeout_ms) {
  auto ids = RedisCall(client, {"SMEMBERS", kRegistrySet}, timeout_ms);
  if (!ids.ok()) return ids.status();
  std::vector<BrokerRecord> out;
  if (ids->elements.empty()) return out;
  std::vector<std::string> mget = {"MGET"};
  for (const RedisReply& id : ids->elements)
    mget.push_back(RegistryKey(id.str));
  auto records = RedisCall(client, std::move(mget), timeout_ms);
  if (!records.ok()) return records.status();
  if (records->elements.size() != ids->elements.size()) {
    return Status::Internal(
        "registry: MGET answered " + std::to_string(records->elements.size()) +
        " values for " + std::to_string(ids->elements.size()) + " keys");
  }
  std::vector<std::string> gone = {"SREM", kRegistrySet};
  for (size_t i = 0; i < ids->elements.size(); ++i) {
    const std::string& id = ids->elements[i].str;
    const RedisReply& r = records->elements[i];
    if (r.type != RedisReply::Type::kString) {
      gone.push_back(id);
      continue;
    }
    Result<BrokerRecord> b = ParseBrokerRecord(id, r.str);
    if (!b.ok()) {
      spdlog::warn("registry: skipping a record: {}", b.status().message());
      continue;
    }
    out.push_back(std::move(b).value());
  }
  // Only members whose record expired; a broker that registers again in
  // between adds itself back on its next refresh.
  if (gone.size() > 2) (void)RedisCall(client, std::move(gone), timeout_ms);
  std::sort(
      out.begin(), out.end(),
      [](const BrokerRecord& a, const BrokerRecord& b) { return a.id < b.id; });
  return out;
}

std::string AdvertisedEndpoint(std::string_view bound, std::string_view host) {
  // tcp://HOST:PORT: replace HOST.
  const size_t scheme = bound.find("://");
  const size_t colon = bound.rfind(':');
  if (scheme == std::string_view::npos || colon == std::string_view::npos ||
      colon <= scheme + 3) {
    return std::string(bound);
  }
  std::string_view bound_host = bound.substr(scheme + 3, colon - scheme - 3);
  const bool wildcard = bound_host == "*" || bound_host == "0.0.0.0" ||
                        bound_host == "[::]" || bound_host == "::";
  std::string use(host);
  if (use.empty()) {
    if (!wildcard) return std::string(bound);
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
      return std::string(bound);
    }
    use = name;
  }
  return std::string(bound.substr(0, scheme + 3)) + use +
         std::string(bound.substr(colon));
}

// ---------------------------------------------------------------- Discovery

Result<std::unique_ptr<Discovery>> Discovery::Create(Options options) {
  auto target = ParseRedisTarget(options.url);
  if (!target.ok()) return target.status();
  if (options.interval_ms <= 0) {
    return Status::InvalidArgument("the discovery interval must be positive");
  }
  std::unique_ptr<Discovery> d(new Discovery(std::move(options)));
  d->target_ = *target;
  const int64_t deadline =
      MonoMillis() + std::max<int64_t>(0, d->options_.wait_ms);
  std::string last_error = "no broker is registered";
  for (;;) {
    std::vector<std::string> found;
    Status read = d->ReadOnce(&found);
    if (read.ok()) {
      if (!found.empty()) {
        std::lock_guard<std::mutex> lock(d->mu_);
        d->endpoints_ = std::move(found);
        return d;
      }
      last_error = "no live broker is registered" +
                   (d->options_.queue.empty()
                        ? std::string()
                        : " for queue '" + d->options_.queue + "'");
    } else {
      last_error = "cannot read the broker registry at " +
                   d->target_.ToString() + ": " + read.message();
      // Waiting does not fix a wrong password.
      if (IsRedisAuthFailure(read)) return Status::Unavailable(last_error);
    }
    if (MonoMillis() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::min<int64_t>(200, d->options_.interval_ms)));
  }
  return Status::Unavailable(last_error + " (waited " +
                             std::to_string(d->options_.wait_ms) + " ms)");
}

Discovery::~Discovery() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> Discovery::endpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return endpoints_;
}

std::function<std::string(const std::string&)> Discovery::CurveKeyLookup()
    const {
  return [book = key_book_](const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(book->mu);
    auto it = book->keys.find(endpoint);
    return it == book->keys.end() ? std::string() : it->second;
  };
}

void Discovery::Start(Callback on_change) {
  on_change_ = std::move(on_change);
  thread_ = std::thread([this] { Loop(); });
}

Status Discovery::ReadOnce(std::vector<std::string>* out) {
  if (!client_ || !client_->connected()) {
    client_.reset();
    auto c = ConnectRegistry(target_, RedisTimeoutMs());
    if (!c.ok()) return c.status();
    client_ = std::move(c).value();
  }
  auto records = ReadRegistry(*client_, RedisTimeoutMs());
  if (!records.ok()) {
    client_.reset();  // a timed-out command may still be pending on it
    return records.status();
  }
  out->clear();
  std::lock_guard<std::mutex> keys_lock(key_book_->mu);
  for (const BrokerRecord& b : *records) {
    if (b.draining) continue;
    if (!options_.queue.empty() && b.queue != options_.queue) continue;
    const std::string& ep =
        options_.side == Side::kFrontend ? b.frontend : b.backend;
    if (ep.empty()) continue;
    out->push_back(ep);
    key_book_->keys[ep] = b.curve_public_key;
  }
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
  return Status::OK();
}

void Discovery::Loop() {
  bool redis_down = false;
  bool empty_warned = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms),
                       [this] { return stop_; })) {
        return;
      }
    }
    std::vector<std::string> found;
    if (Status read = ReadOnce(&found); !read.ok()) {
      if (!redis_down) {
        spdlog::warn(
            "discovery: cannot read the broker registry at {} ({}); "
            "keeping the {} brokers known",
            target_.ToString(), read.message(), endpoints().size());
      }
      redis_down = true;
      continue;
    }
    if (redis_down) spdlog::info("discovery: the registry answers again");
    redis_down = false;
    if (found.empty()) {
      // Every record gone at once is more likely Redis restarting (or every
      // broker draining) than every broker dead: keep the set known, whose
      // members are dropped anyway if they stop answering.
      if (!empty_warned) {
        empty_warned = true;
        spdlog::warn(
            "discovery: the registry lists no live broker; keeping "
            "the {} known",
            endpoints().size());
      }
      continue;
    }
    empty_warned = false;
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (found != endpoints_) {
        endpoints_ = found;
        changed = true;
      }
    }
    if (changed) {
      spdlog::info("discovery: {} live broker(s)", found.size());
      if (on_change_) on_change_(found);
    }
  }
}

}  // namespace yard
