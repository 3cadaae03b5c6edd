// Placeholder until the worker command lands in this session's work.
#include <iostream>

#include "tools/cli.h"

namespace yard {
int RunWorker(int, char**) {
  std::cerr << "yard worker: not built yet\n";
  return 1;
}
}  // namespace yard
