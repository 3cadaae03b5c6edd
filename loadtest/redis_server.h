// RedisServer: a real redis-server on a free 127.0.0.1 port, for
// `yard loadtest --redis local`, the tests and the Redis benchmark.
//
// Runs Debian's /usr/bin/redis-server (override: $YARD_REDIS_SERVER) with its
// data in a fresh temp dir: AOF on (appendfsync everysec unless
// Options::appendfsync_always), no RDB snapshots, log in <dir>/redis.log,
// a replica's full sync at once (repl-diskless-sync-delay 0); a replica of
// another server with Options::replica_of; a Redis Cluster node with
// Options::cluster (RedisCluster below sets up a whole cluster).
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
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "loadtest/process.h"

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
              uint16_t cluster_port, Options options);

  std::string binary_;
  std::string dir_;
  uint16_t port_;
  uint16_t cluster_port_;
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

// RedisCluster: a real Redis Cluster of N primaries, each with R replicas
// (default none), each node a RedisServer with Options::cluster on
// 127.0.0.1. Create() gives each primary an equal contiguous share of the
// 16384 slots (CLUSTER ADDSLOTSRANGE), joins all nodes (CLUSTER MEET),
// makes the replicas replicate their primary (CLUSTER REPLICATE) and waits
// until every node says cluster_state:ok with the same slot map, every
// replica is in sync (master_link_status:up, its primary counts it online)
// and every node knows which primary each replica serves (CLUSTER NODES:
// what the primaries' failover votes check). Nodes 0..N-1 are the
// primaries as created, then the replicas (replica(p)); a failover swaps
// the roles, not the indexes. With replicas the node timeout is 1000 ms (a
// SIGKILLed primary's replica takes over in about 2-4 s), else 2000 ms.
// Every wait is bounded; the destructor stops the nodes and removes their
// dirs.
//
//   auto c = RedisCluster::Create(3);
//   (*c)->url();                   // "cluster://127.0.0.1:P1,...:P2,...:P3"
//   (*c)->Owner(KeySlot(key));     // index of the node serving the slot
//   (*c)->MigrateSlot(slot, 2);    // live resharding of one slot
//
//   auto f = RedisCluster::Create(3, 1);  // 3 primaries, 1 replica each
//   (*f)->node(0).Kill();                 // SIGKILL primary 0
//   (*f)->AwaitOwner(slot, (*f)->replica(0), 10s);  // its replica took over
//
// Nodes that are not running (Kill, Stop) are left out of Owner and
// AwaitConsistent (they ask and compare the live ones).
//
// Live resharding of one slot, the steps of `redis-cli --cluster reshard`,
// callable one at a time so a test can run commands in between:
//   BeginMigration(slot, to)  target: CLUSTER SETSLOT slot IMPORTING <src>,
//                             source: CLUSTER SETSLOT slot MIGRATING <dst>;
//                             from here the source answers ASK for keys it
//                             no longer (or never) had, and multi-key
//                             commands over keys on both sides TRYAGAIN;
//   MoveKeys(max)             up to `max` keys: CLUSTER GETKEYSINSLOT, then
//                             MIGRATE 127.0.0.1 <dst> "" 0 5000 KEYS ...
//                             (pages of at most 100 keys);
//   FinishMigration()         moves what is left, then CLUSTER SETSLOT slot
//                             NODE <dst> on the target, the source, then
//                             the others, and waits until all agree.
// One migration at a time. Clusters without replicas only: FinishMigration
// sends SETSLOT NODE to every node, and Redis refuses SETSLOT on a replica.
class RedisCluster {
 public:
  // `primaries` >= 1 nodes (3 for tests), each with `replicas_per_primary`
  // >= 0 replicas. Fails with the nodes' log tails.
  static Result<std::unique_ptr<RedisCluster>> Create(
      int primaries = 3, int replicas_per_primary = 0);

  ~RedisCluster();  // stops every node, removes the dirs
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // "cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,..." (all nodes as seeds).
  std::string url() const;
  size_t size() const { return nodes_.size(); }
  RedisServer& node(size_t i) { return *nodes_[i]; }
  // Primaries as created (nodes 0..primaries()-1), replicas of each.
  size_t primaries() const { return primaries_; }
  int replicas_per_primary() const { return replicas_per_primary_; }
  // The node index of the r-th replica created for primary `primary`.
  size_t replica(size_t primary, int r = 0) const {
    return primaries_ + primary * replicas_per_primary_ + r;
  }

  // The node serving `slot` as the first running node sees it (CLUSTER
  // SLOTS).
  Result<size_t> Owner(uint16_t slot) const;
  // Waits up to `timeout` until every running node says cluster_state:ok
  // and all give the same slot -> node assignment.
  Status AwaitConsistent(std::chrono::milliseconds timeout) const;
  // Waits up to `timeout` until every running node's CLUSTER SLOTS names
  // node `node` as the primary of `slot` (e.g. a replica after the
  // failover of its primary).
  Status AwaitOwner(uint16_t slot, size_t node,
                    std::chrono::milliseconds timeout) const;

  // InvalidArgument on a cluster with replicas (see above).
  Status BeginMigration(uint16_t slot, size_t to);
  // How many keys it moved (0: none were left).
  Result<int> MoveKeys(int max);
  Status FinishMigration();
  // BeginMigration + FinishMigration.
  Status MigrateSlot(uint16_t slot, size_t to);

  // Every node's log tail, for failure messages.
  std::string LogTails() const;

 private:
  RedisCluster() = default;
  Status Join();
  // Replicas: CLUSTER REPLICATE, then waits for their sync and until every
  // node knows each replica's primary.
  Status AttachReplicas();
  // The first running node (0 when none is).
  size_t FirstRunning() const;
  // The current migration's slot, source and target.
  struct Migration {
    uint16_t slot = 0;
    size_t from = 0;
    size_t to = 0;
  };

  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::vector<std::string> ids_;  // CLUSTER MYID of each node
  size_t primaries_ = 0;
  int replicas_per_primary_ = 0;
  std::optional<Migration> migration_;
};

// A port on 127.0.0.1 that was free a moment ago (bind to port 0, close).
Result<uint16_t> PickFreeLoopbackPort();

}  // namespace yard

#endif  // YARD_LOADTEST_REDIS_SERVER_H_
