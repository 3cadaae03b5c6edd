// IsolatePool: runs jobs in child processes, so that a handler that burns
// CPU, eats memory, crashes or hangs costs its own job and nothing else.
//
// A group is a kind of child: the built-in handlers (`yard worker-child`, the
// yard binary itself started again) or a command (`--exec TASK=COMMAND`, run
// as /bin/sh -c COMMAND). Each group keeps `slots` long-lived children, one
// per worker slot, started by Start() and spoken to over their stdin and
// stdout in the framing of worker/exec_frame.h (docs/exec-protocol.md).
// Children are started with posix_spawn (safe from a process that already
// has threads), each in its own process group. A child sets RLIMIT_AS
// (memory_mb) on itself, for life; the pool sets RLIMIT_CPU (cpu_seconds)
// with prlimit at the spawn and re-arms it as each job starts (before its
// write, or as the answer before it arrives) at the child's CPU time so far
// plus cpu_seconds, so the limit is per job.
// docs/adr/0013-process-isolation.md says why.
//
// Jobs are pipelined: a batch (BatchHandler) is written to a child in one
// writev and answered in order; each job ends as its own answer arrives,
// and the next one counts as started then (its run timeout, its CPU limit,
// the cancel grace all run from that moment). A child killed or dead
// mid-batch fails the job it was running; the jobs behind it, which never
// started, run on its replacement. What is written to a child at once is
// bounded by the child's stdin pipe buffer (raised to 1 MiB where the
// system allows), so a write never waits for a child that is itself
// waiting for its answers to be read.
//
// A job fails (Failed, or Cancelled) and its child is killed (the whole
// process group) and replaced when: the child died ("crashed: SIGSEGV",
// "crashed: exit status 1"; SIGXCPU: "cpu limit"), it reported running out
// of memory ("memory limit"), it outlived the job's run timeout ("timed
// out"), or the job was cancelled and the child did not answer within
// cancel_grace_ms ("cancelled", status Cancelled). The worker and the other
// children carry on; the broker's retry path decides whether a failed job
// runs again.
//
// Thread-safety: Add* and Start before the worker runs; the handlers they
// return may be called from any number of threads at once (each call holds
// one child at a time, and calls `finished` on its own thread); Shutdown
// from any thread.
#ifndef YARD_WORKER_ISOLATE_POOL_H_
#define YARD_WORKER_ISOLATE_POOL_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "worker/worker.h"

namespace yard {

struct IsolateOptions {
  int slots = 1;               // children per group (the worker's concurrency)
  int64_t cpu_seconds = 0;     // CPU seconds per job (RLIMIT_CPU); 0: none
  int64_t memory_mb = 0;       // address space per child (RLIMIT_AS); 0: none
  int64_t run_timeout_ms = 0;  // for jobs that set none; 0: none
  int64_t cancel_grace_ms = 2000;
  size_t max_frame_bytes = 16 << 20;  // largest result frame accepted
  bool misbehaving_handlers = false;  // builtin children also serve spin...
  std::string self_exe;               // empty: /proc/self/exe
};

struct IsolateCounters {
  uint64_t spawned = 0;
  uint64_t replaced = 0;  // children killed or dead mid-job
  uint64_t writes = 0;    // writes of job frames to children
  uint64_t jobs_written =
      0;  // job frames in them (a job sent again counts again)
};

// A group's handlers: `handler` runs one job; `batch` pipelines several
// (Worker::Register takes both).
struct IsolateHandlers {
  Handler handler;
  std::shared_ptr<const BatchHandler> batch;
};

class IsolatePool {
 public:
  explicit IsolatePool(IsolateOptions options);
  ~IsolatePool();  // Shutdown()
  IsolatePool(const IsolatePool&) = delete;
  IsolatePool& operator=(const IsolatePool&) = delete;

  // Handlers that run jobs (any task) in children of the built-in kind.
  IsolateHandlers AddBuiltin();
  // Handlers that run jobs in children running `command`.
  IsolateHandlers AddExec(const std::string& task, const std::string& command);
  // Starts `slots` children of every group. An error when one cannot start.
  [[nodiscard]] Status Start();
  // Kills every child; calls still running fail ("worker stopping").
  void Shutdown();

  IsolateCounters counters() const;

 private:
  struct Child;
  struct Group;
  struct Outcome;

  using Jobs = std::span<const JobContext* const>;

  IsolateHandlers HandlersFor(std::unique_ptr<Group> g);
  Result<std::unique_ptr<Child>> Spawn(Group& g);
  Result<std::unique_ptr<Child>> Acquire(Group& g);
  void Release(Group& g, std::unique_ptr<Child> c);
  // Runs `jobs` in g's children, in order, calling finished(i, answer) as
  // each ends; returns when all have.
  void RunBatch(Group& g, Jobs jobs, const BatchHandler::Finished& finished);
  // Runs jobs[first..] in c until they are done or c has to go; returns
  // how far it got and whether c may be kept.
  Outcome Drive(Child& c, Jobs jobs, size_t first,
                const BatchHandler::Finished& finished);
  // Writes the job frames of `jobs` to c in one writev (more when it writes
  // part).
  bool SendJobs(Child& c, Jobs jobs);
  bool ArmCpu(Child& c);
  // Kills c's process group and reaps c; returns how c ended (the reason,
  // when the pool did not kill it first).
  std::string Reap(Child& c);

  const IsolateOptions options_;
  std::string exe_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> spawned_{0};
  std::atomic<uint64_t> replaced_{0};
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> jobs_written_{0};
  std::mutex live_mu_;
  std::unordered_set<pid_t> live_;  // guarded by live_mu_: unreaped children
};

// The reason a child's wait status gives: "cpu limit" for SIGXCPU,
// "crashed: SIGSEGV", "crashed: exit status 3". An exit status above 128 is
// read as the shell's report of a command killed by signal (status - 128).
std::string ChildDeathReason(int wait_status);

}  // namespace yard

#endif  // YARD_WORKER_ISOLATE_POOL_H_
