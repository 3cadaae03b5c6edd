// RedisServer: a real redis-server on a free 127.0.0.1 port, for
// `yard loadtest --redis local`, the tests and the Redis benchmark.
//
// Runs Debian's /usr/bin/redis-server (override: $YARD_REDIS_SERVER) with its
// data in a fresh temp dir: AOF on (appendfsync everysec unless
// Options::appendfsync_always), no RDB snapshots, log in <dir>/redis.log,
// a replica's full sync at once (repl-diskless-sync-delay 0); a replica of
// another server with Options::replica_of.
// Create() fails (it does not skip) when redis-server is missing, so a
// machine without Redis fails the `redis` tests with a clear message. Every
// wait is bounded. The destructor stops the server and removes the dir.
//
//   auto server = RedisServer::Create();
//   ASSERT_TRUE(server.ok()) << server.status().ToString();
//   (*server)->url();   // "redis://127.0.0.1:<port>"
//   (*server)->Kill();  // SIGKILL: the AOF is what survives
//   (*server)->Shutdown();  // SHUTDOWN: the AOF is written and fsynced
//   (*server)->Start(); // same port and dir: replays the AOF
//
// Thread-safety: none. Create/Start from the main thread (tests/process.h).
#ifndef YARD_LOADTEST_REDIS_SERVER_H_
#define YARD_LOADTEST_REDIS_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "loadtest/process.h"

namespace yard {

class RedisServer {
 public:
  struct Options {
    bool appendfsync_always = false;
    // Not 0: start as a replica of 127.0.0.1:replica_of (--replicaof).
    uint16_t replica_of = 0;
  };

  // Picks a port, makes the dir and starts the server (waits for PING).
  static Result<std::unique_ptr<RedisServer>> Create(Options options);
  static Result<std::unique_ptr<RedisServer>> Create() {
    return Create(Options());
  }

  ~RedisServer();  // Stop(), then remove the dir
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const;  // "redis://127.0.0.1:<port>"
  const std::string& dir() const { return dir_; }
  bool running() const { return process_ != nullptr; }

  // Starts the server (again) on the same port and dir, and waits up to 10 s
  // until it answers PING (after replaying its AOF).
  Status Start();
  // The next Start() makes it a replica of 127.0.0.1:port (0: a primary),
  // e.g. to bring an old primary back under the one Sentinel promoted.
  void set_replica_of(uint16_t port) { options_.replica_of = port; }
  // Waits up to `timeout` until INFO replication says role:slave with
  // master_link_status:up (a replica in sync with its primary).
  Status AwaitReplicaLink(std::chrono::milliseconds timeout);
  // Waits up to `timeout` until this primary counts `replicas` replicas
  // online (INFO replication slaveN state=online): only those acknowledge
  // WAIT, and a replica's link is up a moment before its primary says so.
  Status AwaitReplicas(int replicas, std::chrono::milliseconds timeout);
  // SIGTERM (redis flushes the AOF and exits; resent every 500 ms, since
  // redis ignores one while it writes its initial AOF), SIGKILL after 10 s.
  Status Stop();
  // The SHUTDOWN command over a connection of its own (redis writes and
  // fsyncs the AOF, then exits), then waits up to 10 s for the exit (SIGKILL
  // after that). Not OK when redis refuses, or does not exit 0 in time.
  Status Shutdown();
  // SIGKILL, no flush; reaps the process.
  void Kill();
  // The tail of redis.log, for failure messages.
  std::string LogTail() const;

 private:
  RedisServer(std::string binary, std::string dir, uint16_t port,
              Options options);

  std::string binary_;
  std::string dir_;
  uint16_t port_;
  Options options_;
  std::unique_ptr<Process> process_;
};

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
class RedisSentinel {
 public:
  static Result<std::unique_ptr<RedisSentinel>> Create(
      const std::string& master_name, uint16_t primary_port);

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

// A port on 127.0.0.1 that was free a moment ago (bind to port 0, close).
Result<uint16_t> PickFreeLoopbackPort();

}  // namespace yard

#endif  // YARD_LOADTEST_REDIS_SERVER_H_
