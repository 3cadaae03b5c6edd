// KeySet: the public keys of one role (producers, workers or admins), as a
// broker's --producer-keys/--worker-keys/--admin-keys name them:
//
//   - a directory: every `*.public` file in it holds one key (the format of
//     curve_keys.h; other files are ignored, so secret files may sit there
//     too, though they should not);
//   - a file: one Z85 key per line; '#' starts a comment line, blank lines
//     are allowed.
//
// Any malformed key fails the whole load (naming the file and line): a
// typo must not silently shut a peer out, nor a half-read set replace a
// good one on reload.
//
// Thread-safety: immutable after Load; share freely.
#ifndef YARD_SECURITY_KEY_SET_H_
#define YARD_SECURITY_KEY_SET_H_

#include <set>
#include <string>
#include <string_view>

#include "common/status.h"

namespace yard {

class KeySet {
 public:
  KeySet() = default;
  static Result<KeySet> Load(const std::string& path);
  static KeySet Of(std::initializer_list<std::string> keys);

  bool Contains(std::string_view z85) const {
    return keys_.find(z85) != keys_.end();
  }
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  const std::string& source() const { return source_; }

 private:
  std::set<std::string, std::less<>> keys_;
  std::string source_;  // the path it was loaded from
};

}  // namespace yard

#endif  // YARD_SECURITY_KEY_SET_H_
