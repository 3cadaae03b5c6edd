// Placeholder until the broker command lands in this session's work.
#include <iostream>

#include "tools/cli.h"

namespace yard {
int RunBroker(int, char**) {
  std::cerr << "yard broker: not built yet\n";
  return 1;
}
}  // namespace yard
