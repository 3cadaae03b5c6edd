// RedisSentinel: a real Redis Sentinel (redis-server --sentinel) on a free
// 127.0.0.1 port watching one primary, with a generated config in a fresh
// temp dir (Sentinel rewrites it): quorum 2, down-after 1000 ms, failover
// timeout 5000 ms, resolve-hostnames no, protected-mode off, log in
// <dir>/sentinel.log. Every wait is bounded; the destructor stops it and
// removes the dir. Three of them and a primary with one replica make the
// smallest set that fails over (tests/redis_sentinel_test.cc).
//
//   auto s = RedisSentinel::Create("mymaster", primary->port());
//   (*s)->address();       // "127.0.0.1:<port>"
//   (*s)->MasterPort();    // what it answers for get-master-addr-by-name
#ifndef YARD_TESTING_REDIS_SENTINEL_H_
#define YARD_TESTING_REDIS_SENTINEL_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "testing/process.h"

namespace yard {

class RedisSentinel {
 public:
  // `auth_pass` not empty: the primary and its replicas want that password
  // (sentinel auth-pass); the Sentinel itself takes none.
  static Result<std::unique_ptr<RedisSentinel>> Create(
      const std::string& master_name, uint16_t primary_port,
      const std::string& auth_pass = "");

  ~RedisSentinel();  // Stop(), then remove the dir
  RedisSentinel(const RedisSentinel&) = delete;
  RedisSentinel& operator=(const RedisSentinel&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  const std::string& dir() const { return dir_; }
  bool running() const { return process_ != nullptr; }

  // Starts it (again; the config it rewrote is kept) and waits up to 10 s
  // for PING.
  Status Start();
  // SIGTERM, SIGKILL after 10 s.
  Status Stop();

  // The primary's port as this Sentinel sees it now (get-master-addr-by-name
  // with a 1 s timeout); Unavailable when it does not answer.
  Result<uint16_t> MasterPort() const;
  // Waits up to `timeout` until it knows `replicas` replicas and
  // `other_sentinels` other Sentinels of the primary (SENTINEL MASTER): a
  // set can fail over only once its Sentinels have found each other.
  Status AwaitTopology(int replicas, int other_sentinels,
                       std::chrono::milliseconds timeout) const;
  std::string LogTail() const;

 private:
  RedisSentinel(std::string binary, std::string dir, uint16_t port,
                std::string master_name);

  std::string binary_;
  std::string dir_;
  uint16_t port_;
  std::string master_name_;
  std::unique_ptr<Process> process_;
};

}  // namespace yard

#endif  // YARD_TESTING_REDIS_SENTINEL_H_
