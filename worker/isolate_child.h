// The child side of the isolate pool (worker/isolate_pool.h): what
// `yard worker-child` does in a freshly started process. It ties its life to
// the worker's (PR_SET_PDEATHSIG), sets RLIMIT_AS (the pool sets RLIMIT_CPU
// from outside, with prlimit), then either becomes
// `/bin/sh -c COMMAND` (an --exec handler) or serves the built-in handlers
// over stdin and stdout in the framing of worker/exec_frame.h until end of
// file.
#ifndef YARD_WORKER_ISOLATE_CHILD_H_
#define YARD_WORKER_ISOLATE_CHILD_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "worker/builtin_handlers.h"

namespace yard {

struct ChildOptions {
  pid_t parent_pid = 0;      // exit at once if the parent is already gone
  int64_t memory_mb = 0;     // RLIMIT_AS (soft and hard); 0: none
  std::string exec;          // the command to become; empty: built-ins
  bool misbehaving = false;  // also serve MisbehavingHandlers()
  size_t max_frame_bytes = 16 << 20;
};

// Returns the process's exit code (it does not return when it execs).
int RunIsolatedChild(const ChildOptions& options);

// Serves `handlers` on in_fd/out_fd until end of file: 0; 1 on a read or
// write error or a malformed frame. Out of memory in a handler is reported
// as ResultCode::kOutOfMemory.
int ServeFrames(const NamedHandlers& handlers, int in_fd, int out_fd,
                size_t max_frame_bytes);

// The shell command that runs `command`: "exec COMMAND" when it is one
// simple command (no ; & | ( ) { } ` or newline, no leading keyword), so the
// handler replaces the shell and the pool's signals and limits reach it;
// `command` unchanged otherwise.
std::string ShellCommandFor(const std::string& command);

}  // namespace yard

#endif  // YARD_WORKER_ISOLATE_CHILD_H_
