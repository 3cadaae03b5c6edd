// Process: a child process (fork + exec), for `yard loadtest`'s local
// cluster and the integration tests; or a forked part of the test itself
// (Fork), for a test that must kill it for real.
//
// The child runs in a process group of its own. Its stdout is a pipe the test
// reads line by line with a timeout; its stderr goes to a file (so a failing
// test can show the child's logs) or is inherited; its stdin is /dev/null. The
// child gets PR_SET_PDEATHSIG SIGKILL, and the destructor SIGKILLs and reaps a
// child that is still running, so no child outlives its parent, even when the
// parent crashes.
//
//   auto p = Process::Spawn({YARD_BIN, "broker", ...}, dir + "/broker.err");
//   std::optional<std::string> line = (*p)->ReadLine(std::chrono::seconds(10));
//   (*p)->Signal(SIGTERM);
//   std::optional<ExitInfo> exit = (*p)->Wait(std::chrono::seconds(10));
//
//   auto q = Process::Fork("queue", [] { ...; std::printf("ready\n");
//                                          std::fflush(stdout); ...; });
//   (*q)->ReadLine(...);  // "ready"
//   (*q)->Kill();         // SIGKILL: no destructor runs in the child
//
// Thread-safety: none; one Process per thread. Spawn from the main thread
// (the death signal is tied to the thread that forks).
#ifndef YARD_TESTING_PROCESS_H_
#define YARD_TESTING_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

// How a child ended.
struct ExitInfo {
  bool exited = false;  // exited normally: `code` is valid
  int code = -1;
  int signal = 0;  // killed by this signal (exited == false)

  bool ExitedWith(int c) const { return exited && code == c; }
  bool KilledBy(int s) const { return !exited && signal == s; }
  // "exit 0" or "signal 9 (Killed)".
  std::string ToString() const;
};

class Process {
 public:
  using Millis = std::chrono::milliseconds;

  // Starts args[0] (a path) with args. stderr_path: the child's stderr is
  // written (truncated) there; empty: inherited. Fails when the program
  // cannot be executed.
  static Result<std::unique_ptr<Process>> Spawn(std::vector<std::string> args,
                                                std::string stderr_path);
  // Forks a child that runs `body` (this program, no exec) with stdout and
  // stderr set up as for Spawn, then exits with body's return value (126 if
  // it throws) without running destructors or atexit handlers. The child
  // has only the forking thread: `body` must use only what it creates
  // itself (not the parent's connections, sockets or threads). Write to
  // stdout with printf + fflush. `name` stands in for the command line.
  static Result<std::unique_ptr<Process>> Fork(std::string name,
                                               std::function<int()> body,
                                               std::string stderr_path = "");

  ~Process();  // SIGKILL and reap when still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<std::string>& args() const { return args_; }
  const std::string& stderr_path() const { return stderr_path_; }
  // The command line, for messages.
  std::string CommandLine() const;

  // The next line of stdout without its '\n'; nullopt on timeout, or at end
  // of file with no partial line left.
  std::optional<std::string> ReadLine(Millis timeout);
  // Everything on stdout until end of file (the child closed it, normally by
  // exiting); nullopt on timeout (what was read so far stays buffered).
  std::optional<std::string> ReadAll(Millis timeout);

  // Sends a signal; false when the child is already reaped.
  bool Signal(int sig);
  // True while the child has not exited (reaps it when it has).
  bool Running();
  // Waits up to `timeout` for the child to exit; nullopt if it is still
  // running. Once reaped, returns the same ExitInfo every time.
  std::optional<ExitInfo> Wait(Millis timeout);
  // SIGKILL (if running) and reap.
  ExitInfo Kill();

  // The whole stderr file (empty when stderr is inherited or unreadable).
  std::string Stderr() const;
  // Its last `max_bytes` bytes.
  std::string StderrTail(size_t max_bytes) const;

 private:
  Process(pid_t pid, int stdout_fd, std::vector<std::string> args,
          std::string stderr_path);
  // Spawn (body null: exec args[0]) or Fork (run *body).
  static Result<std::unique_ptr<Process>> Launch(
      std::vector<std::string> args, std::string stderr_path,
      const std::function<int()>* body);
  // Reads what is available on stdout into buffer_, waiting up to
  // `timeout_ms`. False on timeout; sets eof_ at end of file.
  bool Fill(int timeout_ms);
  bool TryReap(int flags);

  pid_t pid_;
  int stdout_fd_;
  std::vector<std::string> args_;
  std::string stderr_path_;
  std::string buffer_;
  bool eof_ = false;
  std::optional<ExitInfo> exit_;
};

// Reads a whole file; empty when missing.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace yard

#endif  // YARD_TESTING_PROCESS_H_
