// What build this is: the CMake project version and the git commit it was
// built from (`git describe --always --dirty`; "unknown" outside a git
// checkout), written at every build by cmake/YardVersion.cmake.
#ifndef YARD_COMMON_VERSION_H_
#define YARD_COMMON_VERSION_H_

#include <string>

namespace yard {

extern const char kVersion[];  // "0.1.0"
extern const char kCommit[];   // "2604b4c1d2e3" or "2604b4c1d2e3-dirty"

// "yard 0.1.0 (commit 2604b4c1d2e3)".
inline std::string VersionLine() {
  return std::string("yard ") + kVersion + " (commit " + kCommit + ")";
}

}  // namespace yard

#endif  // YARD_COMMON_VERSION_H_
