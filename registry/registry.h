// The broker registry: how brokers, workers and producers find each other
// through Redis ("Discovery" in the README).
//
// Every durable broker keeps one record in Redis, refreshed every heartbeat
// with a TTL of three heartbeats (RedisQueue::Advertise):
//
//   {yard}:broker:<id>   STRING, PX ttl: a JSON object
//                          {"id", "queue", "frontend", "backend",
//                           "curve_public_key", "draining", "started_ms",
//                           "heartbeat_ms", "host", "pid", "workers": [...],
//                           "counters"}
//   {yard}:brokers       SET of ids (an index; members whose record has
//                        expired are removed by whoever reads them)
//
// The id is the broker's consumer name in the queue's group, so the queue's
// leader can tell a consumer that died (its record expired) from one that
// is alive, and requeue the dead one's jobs at once instead of a lease
// later. A broker that stops cleanly removes its record; one that dies
// drops out when the TTL runs out. All keys share the hash tag {yard}, so a
// Redis Cluster keeps them in one slot.
//
// Discovery reads the registry every interval from a thread of its own and
// reports the endpoints (frontends for producers, backends for workers) of
// the live brokers that are not draining, optionally of one queue only.
// Redis being unreachable is not taken as every broker being gone: the last
// known set stands until Redis answers again.
//
// CURVE: a broker with CURVE on puts its public key in its record
// ("curve_public_key", Z85; "" without CURVE), and Discovery keeps the key of
// every broker it saw (CurveKeyLookup), so clients need no --broker-key. Redis
// is then part of the trust base: whoever can write the registry can point
// clients at a broker of their own, with its own key.
#ifndef YARD_REGISTRY_REGISTRY_H_
#define YARD_REGISTRY_REGISTRY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "redis/redis_client.h"
#include "redis/redis_target.h"

namespace yard {

// The hash tag every registry key (and every queue's shard count,
// redis_layout.h) carries: on a Redis Cluster they share one slot.
inline constexpr char kRegistryHashTag[] = "{yard}";
inline constexpr char kRegistrySet[] = "{yard}:brokers";
std::string RegistryKey(std::string_view broker_id);

// A connection to the server of the registry's slot (on a Redis Cluster,
// the primary serving kRegistryHashTag; any other target has one server
// for every key): sets target.key, then ConnectRedisTarget (which may
// reorder target.addresses, so a caller that keeps the target reconnects
// to the seed or Sentinel that answered first).
Result<std::unique_ptr<RedisClient>> ConnectRegistry(RedisTarget& target,
                                                     int64_t timeout_ms);

// A worker as a broker's record lists it.
struct RegisteredWorker {
  std::string name;
  int64_t capacity = 0;
  int64_t outstanding = 0;
  std::vector<std::string> tags;
  std::vector<std::string> taints;
};

// One broker's record, verified (ParseBrokerRecord): every field has its
// type; absent fields keep these defaults.
struct BrokerRecord {
  std::string id;
  std::string queue;
  std::string frontend;
  std::string backend;
  std::string curve_public_key;  // Z85; empty: the broker runs without CURVE
  bool draining = false;
  std::vector<RegisteredWorker> workers;
  std::map<std::string, int64_t> held;      // jobs by state
  std::map<std::string, int64_t> counters;  // accepted, dispatched, ...
};

// Parses and checks one record's text; InvalidArgument naming the first
// field that is not what the layout above says.
Result<BrokerRecord> ParseBrokerRecord(std::string_view id,
                                       std::string_view text);

// Blocking: the brokers registered now, sorted by id. Records that do not
// parse are skipped with a warning; set members whose record expired are
// removed.
Result<std::vector<BrokerRecord>> ReadRegistry(RedisClient& client,
                                               int64_t timeout_ms = 2000);

// "tcp://*:5555" or "tcp://0.0.0.0:5555" with host "h" -> "tcp://h:5555";
// an empty host keeps a concrete bound address as it is and replaces a
// wildcard with this machine's host name.
std::string AdvertisedEndpoint(std::string_view bound, std::string_view host);

class Discovery {
 public:
  enum class Side : uint8_t { kFrontend, kBackend };
  struct Options {
    std::string url;  // redis://HOST:PORT[/DB] or sentinel://...
    Side side = Side::kFrontend;
    std::string queue;  // only brokers of this queue; empty: all
    int64_t interval_ms = 1000;
    // Create waits this long for at least one live broker.
    int64_t wait_ms = 10000;
  };
  using Callback = std::function<void(const std::vector<std::string>&)>;

  // Connects and reads the registry until it lists at least one live broker
  // (up to options.wait_ms). InvalidArgument for a bad URL; Unavailable when
  // Redis cannot be reached or no broker shows up in time, at once when
  // Redis refuses the credentials (IsRedisAuthFailure).
  static Result<std::unique_ptr<Discovery>> Create(Options options);
  ~Discovery();  // stops the thread
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // The endpoints found by the latest read, sorted.
  std::vector<std::string> endpoints() const;
  // endpoint -> the CURVE public key its broker advertised ("" when none),
  // for CurveClientOptions::server_key_for. Thread-safe; stays valid after
  // the Discovery is gone.
  std::function<std::string(const std::string&)> CurveKeyLookup() const;
  // Starts the polling thread; `on_change` runs on it with the new set
  // whenever the set changes. Never with an empty set: when the registry
  // lists no live broker (Redis restarted, or every broker draining), the
  // set known stands; brokers in it that stop answering are dropped anyway.
  void Start(Callback on_change);

 private:
  explicit Discovery(Options options) : options_(std::move(options)) {}
  // One read: OK when it succeeded (*out filled), else why not.
  Status ReadOnce(std::vector<std::string>* out);
  void Loop();

  const Options options_;
  RedisTarget target_;
  std::unique_ptr<RedisClient> client_;  // the polling thread's
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                   // guarded by mu_
  std::vector<std::string> endpoints_;  // guarded by mu_
  // Keys by endpoint, shared with the lookups handed out.
  struct KeyBook {
    std::mutex mu;
    std::map<std::string, std::string> keys;  // guarded by mu
  };
  std::shared_ptr<KeyBook> key_book_ = std::make_shared<KeyBook>();
  Callback on_change_;
  std::thread thread_;
};

}  // namespace yard

#endif  // YARD_REGISTRY_REGISTRY_H_
