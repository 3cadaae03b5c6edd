#include "security/key_set.h"

#include <filesystem>
#include <fstream>

#include "security/curve_keys.h"

namespace yard {
namespace {

Status LoadDirectory(const std::filesystem::path& dir,
                     std::set<std::string, std::less<>>* keys) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".public") continue;
    if (!entry.is_regular_file(ec)) continue;
    Result<std::string> key = ReadKeyFile(entry.path().string());
    if (!key.ok()) return key.status();
    keys->insert(*key);
  }
  if (ec) {
    return Status::IoError("cannot list " + dir.string() + ": " + ec.message());
  }
  return Status::OK();
}

Status LoadList(const std::string& path,
                std::set<std::string, std::less<>>* keys) {
  std::ifstream in(path);
  if (!in) return Status::IoError("cannot read " + path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    std::string key = line.substr(first, last - first + 1);
    if (!IsZ85Key(key)) {
      return Status::InvalidArgument(path + ":" + std::to_string(n) +
                                     ": not a Z85 CURVE key (40 characters)");
    }
    keys->insert(std::move(key));
  }
  if (in.bad()) return Status::IoError("cannot read " + path);
  return Status::OK();
}

}  // namespace

Result<KeySet> KeySet::Load(const std::string& path) {
  KeySet set;
  set.source_ = path;
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) return Status::IoError("cannot read " + path + ": " + ec.message());
  Status s = std::filesystem::is_directory(status)
                 ? LoadDirectory(path, &set.keys_)
                 : LoadList(path, &set.keys_);
  if (!s.ok()) return s;
  return set;
}

KeySet KeySet::Of(std::initializer_list<std::string> keys) {
  KeySet set;
  set.keys_.insert(keys.begin(), keys.end());
  return set;
}

}  // namespace yard
