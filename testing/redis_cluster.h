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
#ifndef YARD_TESTING_REDIS_CLUSTER_H_
#define YARD_TESTING_REDIS_CLUSTER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "testing/redis_server.h"

namespace yard {

class RedisCluster {
 public:
  // `primaries` >= 1 nodes (3 for tests), each with `replicas_per_primary`
  // >= 0 replicas; `password` not empty: every node's requirepass and
  // masterauth (RedisServer::Options::password). Fails with the nodes' log
  // tails.
  static Result<std::unique_ptr<RedisCluster>> Create(
      int primaries = 3, int replicas_per_primary = 0,
      const std::string& password = "");

  ~RedisCluster();  // stops every node, removes the dirs
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // "cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,..." (all nodes as seeds; no
  // credentials).
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

}  // namespace yard

#endif  // YARD_TESTING_REDIS_CLUSTER_H_
