// LocalCluster: the brokers, workers and (optionally) redis-server that
// `yard loadtest` starts on 127.0.0.1 and breaks on purpose.
//
// Brokers bind tcp://127.0.0.1:* and report the ports they got on their
// ready line; a restarted broker binds the same ports again, so producers
// and workers reconnect to it by themselves. Every worker connects to every
// broker. With `redis` = "local" the cluster starts its own redis-server
// (AOF on, appendfsync everysec) in a temporary directory; any other
// non-empty value is passed to the brokers as --redis. With `redis_cluster`
// = N it starts a Redis Cluster of N primaries instead (RedisCluster) and
// passes its cluster:// URL; redis_cluster() then allows slot migrations.
//
// Every child's stderr goes to a file under dir(). The destructor stops
// everything that still runs: workers first (SIGTERM, so they drain), then
// brokers, then Redis, each waited for a bounded time and SIGKILLed after
// it; children also die with this process (PR_SET_PDEATHSIG).
//
//   auto cluster = LocalCluster::Start(options);
//   producer_options.brokers = (*cluster)->frontends();
//   std::string what = (*cluster)->KillWorker();   // SIGKILL + a new worker
//
// Thread-safety: none. Use from the main thread only: children are tied to
// the thread that forks them.
#ifndef YARD_LOADTEST_LOCAL_CLUSTER_H_
#define YARD_LOADTEST_LOCAL_CLUSTER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "security/curve_keys.h"
#include "testing/process.h"
#include "testing/redis_cluster.h"
#include "testing/redis_server.h"

namespace yard {

struct LocalClusterOptions {
  std::string yard_binary;  // the `yard` executable
  int brokers = 1;
  int workers = 2;
  int concurrency = 2;  // per worker
  std::string redis;    // "": memory mode; "local"; or a URL
  // As in LoadtestOptions (loadtest.h): the URL with its password for our
  // own reads, and the file the children read it from.
  std::string redis_with_password;
  std::string redis_password_file;
  int redis_cluster = 0;  // > 0: a Redis Cluster of N primaries (no `redis`)
  bool redis_fsync_always = false;       // local: appendfsync always
  int64_t heartbeat_ms = 500;            // brokers' and workers' heartbeats
  std::vector<std::string> broker_args;  // extra flags
  std::vector<std::string> worker_args;
  // Workers find brokers with --discover (needs redis) instead of a fixed
  // --connect list, so they also follow brokers added later (AddBroker).
  bool discover = false;
  // CURVE everywhere: generates a broker key pair and one producer, worker
  // and admin key pair in dir()/keys (all brokers share the broker pair);
  // brokers and workers get the flags, producers curve_client().
  bool curve = false;
  std::string dir;  // logs; "": a new directory under $TMPDIR or /tmp
};

class LocalCluster {
 public:
  // Starts Redis (if local), the brokers (waiting for each ready line) and
  // the workers. Unavailable, with the failing child's stderr tail, when a
  // part does not start.
  static Result<std::unique_ptr<LocalCluster>> Start(
      LocalClusterOptions options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  std::vector<std::string> frontends() const;
  const std::string& dir() const { return dir_; }
  // The URL brokers use; empty in memory mode.
  // The URL the loadtest itself reads Redis at (it may hold a password:
  // log it through RedactRedisUrl).
  const std::string& redis_url() const { return redis_url_; }
  // With options.curve: a producer's CURVE settings (producer key pair,
  // the brokers' key), and an admin's; disabled otherwise.
  const CurveClientOptions& curve_client() const { return curve_producer_; }
  const CurveClientOptions& curve_admin() const { return curve_admin_; }
  // A redis-server or a Redis Cluster started here.
  bool owns_redis() const { return redis_ || redis_cluster_; }
  // The Redis Cluster started here (redis_cluster > 0), else null.
  RedisCluster* redis_cluster() const { return redis_cluster_.get(); }

  // SIGKILLs the next worker (round robin) and starts a replacement at once.
  // Returns what happened, for the report's event list.
  Result<std::string> KillWorker();
  // SIGKILLs broker i.
  Result<std::string> KillBroker(size_t i);
  // Starts broker i again on its ports (after KillBroker).
  Result<std::string> RestartBroker(size_t i);
  // Starts one more broker on fresh ports (workers and producers find it
  // only through discovery).
  Result<std::string> AddBroker();
  // SIGKILLs the local redis-server and starts it on the same port and
  // directory (it replays its AOF). InvalidArgument without a local one.
  Result<std::string> RestartRedis();

  // Children that exited on their own (not killed by this class), with
  // their stderr tails; empty when all is well.
  std::string Casualties(size_t tail_bytes = 800);
  // Every child's command line, state and stderr tail.
  std::string Describe(size_t tail_bytes = 2000);

  // Stops everything (what the destructor does); idempotent.
  void Stop();
  // Keep dir() when it was made here (the destructor removes it otherwise);
  // the Redis logs are copied there (redis.log for `redis` "local",
  // redis-node-I.log for a Redis Cluster's nodes: their own directories go
  // with the servers).
  void KeepLogs();

 private:
  struct Broker {
    std::unique_ptr<Process> process;
    std::string frontend, backend;
    int starts = 0;
  };
  struct Worker {
    std::unique_ptr<Process> process;
    int starts = 0;
  };

  explicit LocalCluster(LocalClusterOptions options);
  // options.curve: writes the key pairs, fills the flags and clients.
  Status MakeCurveKeys();
  Status StartBroker(size_t i);
  Status StartWorker(size_t i);
  Result<std::unique_ptr<Process>> Spawn(const std::string& name,
                                         std::vector<std::string> args);
  std::string BackendList() const;

  LocalClusterOptions options_;
  std::string dir_;
  bool own_dir_ = false;
  std::string redis_url_;
  // `--redis URL [--redis-password-file FILE]` for brokers, or `--discover
  // ...` for workers, without the password.
  std::vector<std::string> RedisArgs(const char* flag) const;
  std::string child_redis_url_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<RedisCluster> redis_cluster_;
  std::vector<std::string> curve_broker_args_, curve_worker_args_;
  CurveClientOptions curve_producer_, curve_admin_;
  std::vector<Broker> brokers_;
  std::vector<Worker> workers_;
  size_t next_victim_ = 0;
  int spawned_ = 0;
  std::vector<std::unique_ptr<Process>> dead_;  // killed on purpose
};

// Parses "yard broker ready frontend=<ep> backend=<ep>" with resolved
// tcp://127.0.0.1:<port> endpoints; false otherwise.
bool ParseReadyLine(const std::string& line, std::string* frontend,
                    std::string* backend);

// True for endpoints on this machine only: tcp://127.0.0.1, tcp://localhost,
// tcp://[::1], ipc:// and inproc://.
bool IsLoopbackEndpoint(const std::string& endpoint);
// The same for redis://HOST:PORT[/DB] URLs.
bool IsLoopbackRedisUrl(const std::string& url);

// The path of the running executable (/proc/self/exe).
Result<std::string> SelfExecutable();

}  // namespace yard

#endif  // YARD_LOADTEST_LOCAL_CLUSTER_H_
