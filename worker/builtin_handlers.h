// The handlers `yard worker` ships, by task name, for registering with a
// Worker or serving from an isolated child process (worker/isolate_child.h).
#ifndef YARD_WORKER_BUILTIN_HANDLERS_H_
#define YARD_WORKER_BUILTIN_HANDLERS_H_

#include <string>
#include <utility>
#include <vector>

#include "worker/worker.h"

namespace yard {

using NamedHandlers = std::vector<std::pair<std::string, Handler>>;

// echo, sleep, sha256, fail (RegisterBuiltinHandlers registers these).
NamedHandlers BuiltinHandlers();

// Handlers that misbehave on purpose, to exercise the isolate pool's limits;
// never run them inside a worker process:
//   spin   burns CPU for the payload's milliseconds (default: an hour);
//   alloc  allocates and touches memory in 16 MiB steps until the payload's
//          MiB (default: 1 TiB) or an allocation fails; refuses to start
//          without an address-space limit (RLIMIT_AS);
//   segv   dies of SIGSEGV.
NamedHandlers MisbehavingHandlers();

}  // namespace yard

#endif  // YARD_WORKER_BUILTIN_HANDLERS_H_
