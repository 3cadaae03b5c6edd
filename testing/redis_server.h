// RedisServer: a real redis-server on a free 127.0.0.1 port, for
// `yard loadtest --redis local`, the tests and the Redis benchmark.
//
// Runs Debian's /usr/bin/redis-server (override: $YARD_REDIS_SERVER) with its
// data in a fresh temp dir: AOF on (appendfsync everysec unless
// Options::appendfsync_always), no RDB snapshots, log in <dir>/redis.log,
// a replica's full sync at once (repl-diskless-sync-delay 0); a replica of
// another server with Options::replica_of; a Redis Cluster node with
// Options::cluster (RedisCluster below sets up a whole cluster); the
// default user behind a password with Options::password (requirepass, and
// masterauth for replicas and cluster nodes), ACL users with AddAclUser.
// The fixture's own connections (Call, the PING waits) authenticate as the
// default user.
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
#ifndef YARD_TESTING_REDIS_SERVER_H_
#define YARD_TESTING_REDIS_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "redis/redis_client.h"
#include "testing/process.h"

struct redisContext;

namespace yard {

class RedisServer {
 public:
  struct Options {
    bool appendfsync_always = false;
    // Not 0: start as a replica of 127.0.0.1:replica_of (--replicaof).
    uint16_t replica_of = 0;
    // A cluster node: --cluster-enabled yes, <dir>/nodes.conf, node timeout
    // cluster_node_timeout_ms, the cluster bus on a second free port
    // (cluster_port()).
    bool cluster = false;
    // --cluster-node-timeout: how long a node may not answer before the
    // others flag it as failing (a replica takes over about 1.5-3 of these
    // after its primary dies).
    int cluster_node_timeout_ms = 2000;
    // Not empty: --requirepass and --masterauth.
    std::string password;
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
  uint16_t cluster_port() const { return cluster_port_; }  // 0: not a node
  std::string url() const;  // "redis://127.0.0.1:<port>", no credentials
  // 127.0.0.1:<port> with the default user's credentials (admin_auth()).
  RedisAddress address() const;
  RedisCredentials admin_auth() const { return {"", options_.password}; }
  // One command as the default user, on a connection of its own.
  Result<RedisReply> Call(std::vector<std::string> args,
                          int64_t timeout_ms = 2000) const;
  // ACL SETUSER `user` reset on >`password` `rules...` (e.g. "~{yard}*",
  // "+@all"): a user that must authenticate as itself.
  Status AddAclUser(const std::string& user, const std::string& password,
                    const std::vector<std::string>& rules) const;
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
  // SIGSTOP / SIGCONT: a server that hangs with its connections open (the
  // kernel still accepts new ones into the listen backlog). Stop, Shutdown,
  // Kill and the destructor resume it first.
  void Pause();
  void Resume();
  // The tail of redis.log, for failure messages.
  std::string LogTail() const;

 private:
  RedisServer(std::string binary, std::string dir, uint16_t port,
              uint16_t cluster_port, Options options);
  // AUTH on a blocking hiredis connection (true when no password is set).
  bool Authenticate(redisContext* c) const;

  std::string binary_;
  std::string dir_;
  uint16_t port_;
  uint16_t cluster_port_;
  Options options_;
  std::unique_ptr<Process> process_;
};

// A port on 127.0.0.1 that was free a moment ago (bind to port 0, close).
Result<uint16_t> PickFreeLoopbackPort();

}  // namespace yard

#endif  // YARD_TESTING_REDIS_SERVER_H_
