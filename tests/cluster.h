// Cluster: the test-side owner of a local Switchyard cluster made of real
// `yard` processes (broker, workers, push) on 127.0.0.1 with ports the
// kernel picks (tcp://127.0.0.1:* and the broker's `ready` line).
//
// Every child writes its stderr to a file in a per-test temporary directory.
// When the test fails, the destructor prints each child's command line, how
// it ended and the tail of its stderr, and keeps the directory; then it
// SIGKILLs whatever still runs. No child outlives the Cluster. Set
// YARD_TEST_KEEP_LOGS=1 to keep the directory of passing tests too.
//
//   Cluster c;
//   auto broker = c.StartBroker({"--heartbeat-ms", "200"});
//   ASSERT_TRUE(broker);
//   ASSERT_TRUE(c.StartWorker(broker->backend, 2));
//   PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "echo",
//                            "--count", "100", "--size", "64"}, 30s);
//   ExpectPushSucceeded(run, 100);
//
// Thread-safety: none; use from the test's main thread.
#ifndef YARD_TESTS_CLUSTER_H_
#define YARD_TESTS_CLUSTER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loadtest/local_cluster.h"  // ParseReadyLine
#include "testing/process.h"

namespace yard {

using Millis = std::chrono::milliseconds;

// The path of the yard binary under test (from CMake).
const char* YardBinary();

struct BrokerHandle {
  Process* process = nullptr;
  std::string frontend;  // resolved, e.g. tcp://127.0.0.1:40123
  std::string backend;
};

// One finished `yard push --json` run.
struct PushRun {
  std::optional<ExitInfo> exit;  // nullopt: did not finish in time (killed)
  std::string out;               // all of stdout
  nlohmann::json report;         // stdout parsed; null when it is not JSON
  // report[key] as an integer; -1 when missing or not a number.
  int64_t Count(const char* key) const;
  std::string Describe() const;  // exit and stdout, for failure messages
};

// Checks exit 0 and submitted == completed == n, failed == lost == 0.
void ExpectPushSucceeded(const PushRun& run, int64_t n);

// Resident memory of a process, from /proc (kB); -1 when unreadable.
int64_t ResidentKb(pid_t pid);

// Polls `done` every 20 ms until it holds or `bound` passes.
bool PollUntil(const std::function<bool()>& done, Millis bound);

// A broker's stats, as it answers a StatsRequest on its frontend (queue,
// workers with their outstanding jobs, counters); null when it does not
// answer within `timeout`.
nlohmann::json BrokerStats(const std::string& frontend,
                           Millis timeout = Millis(5000));

// The entry of `workers` (a BrokerStats "workers" array) named `name`; null
// when there is none.
nlohmann::json WorkerNamed(const nlohmann::json& workers,
                           const std::string& name);

class Cluster {
 public:
  Cluster();
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& dir() const { return dir_; }

  // Starts `yard <args...>` with stderr in dir()/<name>-<n>.stderr. On
  // failure records a test failure and returns nullptr.
  Process* Start(const std::string& name, std::vector<std::string> args);

  // `yard broker --frontend tcp://127.0.0.1:* --backend tcp://127.0.0.1:*
  // <extra>`, then waits up to 10 s for the ready line (which must be the
  // first line on stdout). nullopt (and a test failure) otherwise.
  std::optional<BrokerHandle> StartBroker(std::vector<std::string> extra = {});

  // `yard worker --connect <backends> --concurrency <n> <extra>`.
  Process* StartWorker(const std::string& backends, int concurrency,
                       std::vector<std::string> extra = {});

  // `yard push <args> --json`, started; finish with FinishPush.
  Process* StartPush(std::vector<std::string> args);
  // Reads stdout to end of file and waits for exit, both within `timeout`;
  // a push still running then is killed (exit stays nullopt).
  PushRun FinishPush(Process* push, Millis timeout);
  PushRun RunPush(std::vector<std::string> args, Millis timeout);

  // Each child's command line, state and stderr tail.
  std::string Describe(size_t tail_bytes = 4000);

 private:
  std::string dir_;
  int next_id_ = 0;
  std::vector<std::pair<std::string, std::unique_ptr<Process>>> children_;
};

}  // namespace yard

#endif  // YARD_TESTS_CLUSTER_H_
