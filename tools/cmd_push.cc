// Placeholder until the push command lands in this session's work.
#include <iostream>

#include "tools/cli.h"

namespace yard {
int RunPush(int, char**) {
  std::cerr << "yard push: not built yet\n";
  return 1;
}
}  // namespace yard
