// RedisServer: a real redis-server on a free 127.0.0.1 port, for
// `yard loadtest --redis local`, the tests and the Redis benchmark.
//
// Runs Debian's /usr/bin/redis-server (override: $YARD_REDIS_SERVER) with its
// data in a fresh temp dir: AOF on (appendfsync everysec unless
// Options::appendfsync_always), no RDB snapshots, log in <dir>/redis.log.
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
  // SIGTERM (redis flushes the AOF and exits), SIGKILL after 10 s.
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

// A port on 127.0.0.1 that was free a moment ago (bind to port 0, close).
Result<uint16_t> PickFreeLoopbackPort();

}  // namespace yard

#endif  // YARD_LOADTEST_REDIS_SERVER_H_
